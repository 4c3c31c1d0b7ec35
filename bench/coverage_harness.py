"""Issue 22's fast experiments on the real Ped2 frames: coverage, spatial MIL over regions, video
centring, sparsity, decided on TEVAD's split (3 seeds) before any change reached pipeline.train.

    python bench/coverage_harness.py maps [STRIDE]        # Inception-I3D Mixed_5c maps (time-averaged,
                                                          # (clips, 1024, 8, 12) float16) of the 28 videos
    python bench/coverage_harness.py run VIEWS REDUCES SEEDS [RANDOM_SPLITS] [key=value ...]
    python bench/coverage_harness.py run full,center,grid2x2 max 3 0 center=cat_median sparsity=1.0
    python bench/coverage_harness.py maps8                # stride-8 maps (the clips between the stride-16 ones)
    python bench/coverage_harness.py loc OUT.json 3 10 default=center:cat_median,proximity:gated \
        nl10=center:cat_nl10,proximity:gated              # issue 22 second round: configs x (TEVAD x 3 seeds,
                                                          # 10 random splits), clip scores kept, every smoother
    python bench/coverage_harness.py report OUT.json default/none none,mean3,med3,mean5   # the table, paired

VIEWS: full (the whole map averaged), center (the map's middle 8 of 12 columns: about the centre
224 crop), gridRxC (regions, spatial MIL with REDUCE max/mean/lse/randomcrop). It re-implements the
training loop of pipeline.train with the same model (pipeline.model.network.AnomalyGCN), batches and k-max
loss, in-process, so one configuration x 3 seeds takes a minute; the figures it gave are in the
README's "Choices" (issue 22). What became the defaults was then measured through the CLI by
bench/ped2_benchmark.py. Maps go to bench/out/maps_s<STRIDE> (git-ignored).
"""
import sys, json, math
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO)); sys.path.insert(0, str(REPO / "bench"))
from sklearn.metrics import roc_auc_score, average_precision_score
from pipeline.model.network import AnomalyGCN
from pipeline.model.losses import kmax_k
from pipeline.model.data import resample
import ped2_benchmark as PB
torch.set_num_threads(1)
DATA = REPO / ".." / "shared" / "realdata" / "ucsd_ped2"
OUT = REPO / "bench" / "out"
truth = PB.read_truth(DATA / "videos.json")
MAPS = {}
def maps(name, s=16):
    k = (name, s)
    if k not in MAPS:
        MAPS[k] = np.load(OUT / f"maps_s{s}" / f"{name}.npy").astype(np.float32)   # (clips, 1024, 8, 12)
    return MAPS[k]

def regions(m, gh, gw):
    """(clips, C, H, W) -> (clips, gh*gw, C) region means."""
    n, C, H, W = m.shape
    hs = np.linspace(0, H, gh + 1).round().astype(int); ws = np.linspace(0, W, gw + 1).round().astype(int)
    out = [m[:, :, hs[i]:hs[i+1], ws[j]:ws[j+1]].mean((2, 3)) for i in range(gh) for j in range(gw)]
    return np.stack(out, 1)

def feats(name, view, stride=16):
    m = maps(name, stride)
    if view == "full": return m.mean((2, 3))[:, None]
    if view == "center":   # 224/384 of width centre, all height: cols 12*(80/384).. approx
        return m[:, :, :, 2:10].mean((2, 3))[:, None]
    if view.startswith("grid"):
        gh, gw = int(view[4]), int(view[6]); return regions(m, gh, gw)
    if view.startswith("fullgrid"):   # global + regions
        gh, gw = int(view[8]), int(view[10]); r = regions(m, gh, gw)
        return np.concatenate([m.mean((2, 3))[:, None], r], 1)
    raise ValueError(view)

def centre_fn(f, center, name=None, ctx=None):
    """f (clips, R, D) -> the network's input. ``center``:
    None; median / mean (deviation only); cat_median / cat_mean ([x, x - ref]);
    cat_qP ([x, x - q_P(x)], P% per-dimension quantile over the video's clips);
    cat_nlP ([x, x - ref], ref = mean of the P% of the video's clips (per region) nearest the
      training-normal mean, in the training normals' z-space: the video's most normal-like clips);
    cat_nnK ([x, x - ref], ref = mean of the K training-normal clips (same region, other videos)
      nearest the video's median: the normal state that looks most like this video);
    cat3_mu ([x, x - median, x - mu_normal]); cat3_nnK ([x, x - median, x - ref_nnK])."""
    if center is None: return f
    med = np.median(f, 0, keepdims=True) if "median" in center else f.mean(0, keepdims=True)
    if center in ("median", "mean"): return f - med
    if center in ("cat_median", "cat_mean"): return np.concatenate([f, f - med], -1)
    if center.startswith("cat_q"):
        q = np.quantile(f, float(center[5:]) / 100, axis=0, keepdims=True)
        return np.concatenate([f, f - q], -1)
    if center.startswith("cat_nl"):
        frac = float(center[6:]) / 100
        z = (f - ctx["mu"]) / ctx["sd"]                                # (clips, R, D)
        d = (z ** 2).sum(-1)                                           # (clips, R)
        k = max(1, int(round(frac * len(f))))
        idx = np.argsort(d, 0)[:k]                                     # (k, R)
        ref = np.take_along_axis(f, idx[:, :, None], 0).mean(0, keepdims=True)
        return np.concatenate([f, f - ref], -1)
    if center.startswith("cat_nn") or center.startswith("cat3_nn"):
        K = int(center.split("nn")[1])
        ref = nn_reference(f, name, ctx, K)
        if center.startswith("cat3"):
            medv = np.median(f, 0, keepdims=True)
            return np.concatenate([f, f - medv, f - ref], -1)
        return np.concatenate([f, f - ref], -1)
    if center == "cat3_mu":
        medv = np.median(f, 0, keepdims=True)
        return np.concatenate([f, f - medv, f - ctx["mu"]], -1)
    raise ValueError(center)


def normal_context(train, view, stride=16):
    """Training-normal statistics for the references: mean/sd over all their clips and regions, and
    the bank of their clips per region (z-space) with each clip's video."""
    fs = {n: feats(n, view, stride) for n in train if not PB.is_anomalous(truth, n)}
    allf = np.concatenate([f.reshape(-1, f.shape[-1]) for f in fs.values()])
    mu, sd = allf.mean(0), allf.std(0) + 1e-6
    bank = np.concatenate([(f - mu) / sd for f in fs.values()])               # (N, R, D)
    owner = np.concatenate([[n] * len(f) for n, f in fs.items()])
    raw = np.concatenate(list(fs.values()))                                     # (N, R, D)
    return dict(mu=mu, sd=sd, bank=bank, owner=owner, raw=raw)


def nn_reference(f, name, ctx, K):
    """Mean (raw features) of the K bank clips nearest the video's median, region by region,
    the video's own clips left out: (clips, R, D) -> (1, R, D)."""
    zm = (np.median(f, 0) - ctx["mu"]) / ctx["sd"]                             # (R, D)
    keep = ctx["owner"] != name
    bank, raw = ctx["bank"][keep], ctx["raw"][keep]                            # (N, R, D)
    d = ((bank - zm[None]) ** 2).sum(-1)                                       # (N, R)
    idx = np.argsort(d, 0)[:K]                                                 # (K, R)
    return np.take_along_axis(raw, idx[:, :, None], 0).mean(0, keepdims=True)


def smooth(s, how):
    """Test-time smoothing of one video's clip scores: 'none', 'meanW', 'medW' (centred window of W
    clips, shrunk at the ends to the clips that exist)."""
    if how == "none": return s
    if how.startswith("tmean"):                     # trailing (causal) mean: the clips so far
        w = int(how[5:])
        return np.array([np.mean(s[max(0, i - w + 1):i + 1]) for i in range(len(s))])
    w = int(how[3:] if how.startswith("med") else how[4:]); h = w // 2
    f = np.median if how.startswith("med") else np.mean
    return np.array([f(s[max(0, i - h):i + h + 1]) for i in range(len(s))])


def frame_scores(clip_s, n, stride=16):
    """Clip scores -> frame scores: stride 16, each clip's score on its 16 frames; a smaller stride
    (overlapping clips of 16 frames), a frame's score the mean of the clips that hold it."""
    if stride == 16:
        return np.repeat(clip_s, 16)[:n]
    tot = np.zeros(len(clip_s) * stride + 16); cnt = np.zeros_like(tot)
    for c, v in enumerate(clip_s):
        tot[c * stride:c * stride + 16] += v; cnt[c * stride:c * stride + 16] += 1
    out = tot[:n] / np.maximum(cnt[:n], 1)
    if (cnt[:n] == 0).any(): out[cnt[:n] == 0] = clip_s[-1]
    return out

def run(view, train, test, seed=0, epochs=50, T=100, reduce="max", lr=3e-4, wd=5e-4, dropout=0.6,
        adjacency="proximity", center=None, topk_space=1, extra=None, verbose=False, sparsity=0.0, proximity="plain",
        stride=16, smoothers=("none",)):
    torch.manual_seed(seed); g = torch.Generator().manual_seed(seed)
    ctx = normal_context(train, view, stride) if center and ("nl" in center or "nn" in center or "mu" in center) else None
    tr = {n: feats(n, view, stride) for n in train}
    tr = {n: centre_fn(f, center, n, ctx) for n, f in tr.items()}
    X = np.stack([resample(tr[n], T) for n in train])        # (N, T, R, D)
    y = np.array([1 if PB.is_anomalous(truth, n) else 0 for n in train])
    D = X.shape[-1]
    flat = X.reshape(-1, D); mu, sd = flat.mean(0), flat.std(0) + 1e-6
    model = AnomalyGCN(in_dim=D, dropout=dropout, adjacency=adjacency, similarity="hlnet",
                       graph_features="input", proximity=proximity, residual=True)
    model.feature_mean.copy_(torch.tensor(mu)); model.feature_std.copy_(torch.tensor(sd))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    Xt = torch.tensor(X); yt = torch.tensor(y)
    nor = np.where(y == 0)[0]; abn = np.where(y == 1)[0]; half = max(len(nor), len(abn))
    qn, qa = [], []
    def take(pool, q, n):
        out = []
        while len(out) < n:
            if not q: q.extend(pool[torch.randperm(len(pool), generator=g).numpy()].tolist())
            out.append(q.pop())
        return out
    k = kmax_k(T)
    for ep in range(epochs):
        model.train()
        idx = take(nor, qn, half) + take(abn, qa, half)
        xb = Xt[idx]                                   # (B, T, R, D)
        B, T_, R, _ = xb.shape
        if reduce == "randomcrop":
            c = torch.randint(R, (B,), generator=g); xb2 = xb[torch.arange(B), :, c][:, :, None]; R2 = 1
        else:
            xb2, R2 = xb, R
        z = model(xb2.permute(0, 2, 1, 3).reshape(B * R2, T_, D))["logits"].reshape(B, R2, T_)
        if reduce in ("max", "randomcrop"):
            zz = z.max(1).values                       # (B, T)
        elif reduce == "mean":
            zz = z.mean(1)
        elif reduce == "lse":
            zz = torch.logsumexp(z, 1) - math.log(R2)
        log_s = F.logsigmoid(zz); top, ii = torch.topk(log_s, k, 1)
        top1m = F.logsigmoid(-torch.gather(zz, 1, ii)); yy = yt[idx].float()[:, None]
        loss = -(yy * top + (1 - yy) * top1m).mean()
        if sparsity: loss = loss + sparsity * torch.sigmoid(zz[half:]).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    per = {}
    with torch.no_grad():
        for n in test:
            f = feats(n, view, stride)
            f = centre_fn(f, center, n, ctx)
            x = torch.tensor(f).permute(1, 0, 2)       # (R, clips, D)
            z = model(x)["logits"]                     # (R, clips)
            if reduce in ("max",): zz = z.max(0).values
            elif reduce in ("mean", "randomcrop"): zz = torch.sigmoid(z).mean(0).logit(eps=1e-7) if reduce == "randomcrop" else z.mean(0)
            elif reduce == "lse": zz = torch.logsumexp(z, 0) - math.log(z.shape[0])
            s = torch.sigmoid(zz).numpy().astype(np.float64)
            lab = PB.frame_labels(truth, n)
            per[n] = (s, lab)
    out = {}
    for how in smoothers:
        allf, allt, abf, abt = [], [], [], []
        for n, (s, lab) in per.items():
            fs = frame_scores(smooth(s, how), len(lab), stride)
            allf.append(fs); allt.append(lab)
            if lab.any(): abf.append(fs); abt.append(lab)
        fs, lab = np.concatenate(allf), np.concatenate(allt)
        a, al = np.concatenate(abf), np.concatenate(abt)
        out[how] = dict(auc=roc_auc_score(lab, fs), ap=average_precision_score(lab, fs),
                        auc_abn=roc_auc_score(al, a) if 0 < al.mean() < 1 else float("nan"))
    if len(smoothers) == 1:
        return out[smoothers[0]], per
    return out, per

def splits(n_random=10):
    out = {"tevad": PB.tevad_split(DATA / "ped2-i3d.list", DATA / "ped2-i3d-test.list", truth)}
    for k in range(n_random):
        out[f"r{k}"] = PB.random_split(k, truth, 6, 4)
    return out


def extract_maps(stride=16):
    """Mixed_5c of every Ped2 video, the whole frame (short side 256), time-averaged, float16."""
    import time
    from pipeline.features.video import FrameStream, normalize
    from pipeline.features.inception import load_inception
    out = OUT / f"maps_s{stride}"; out.mkdir(parents=True, exist_ok=True)
    import os
    torch.set_num_threads(int(os.environ.get("HARNESS_THREADS", "2")))
    model = load_inception()[0].eval().to(memory_format=torch.channels_last_3d)
    for vd in sorted((DATA / "frames").iterdir()):
        dst = out / f"{vd.name}.npy"
        if dst.exists():
            continue
        t0 = time.time()
        fr = np.stack(list(FrameStream(vd, short_side=256)))          # (N, 256, 384, 3)
        clips, s = [], 0
        while s < len(fr):                                             # the pipeline's pad rule
            c = fr[s:s + 16]
            if len(c) < 16:
                c = np.concatenate([c, np.repeat(c[-1:], 16 - len(c), 0)])
            clips.append(c); s += stride
        maps = []
        with torch.inference_mode():
            for i in range(0, len(clips), 4):
                x = torch.as_tensor(np.stack(clips[i:i + 4])).permute(0, 4, 1, 2, 3)
                x = normalize(x, "minus1to1").contiguous(memory_format=torch.channels_last_3d)
                maps.append(model.mixed_5c(x).float().mean(2).numpy().astype(np.float16))   # (B, 1024, 8, 12)
        np.save(dst, np.concatenate(maps))
        print(vd.name, len(fr), len(clips), f"{time.time() - t0:.0f}s", flush=True)


def extract_maps8():
    """Stride-8 maps without recomputing the stride-16 ones: the clips that start at 16k are the
    stride-16 clips (same frames, same pad rule), so only those at 8 + 16k are run through the
    network; the two sets are interleaved into bench/out/maps_s8."""
    import os, time
    from pipeline.features.video import FrameStream, normalize
    from pipeline.features.inception import load_inception
    out = OUT / "maps_s8"; out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("HARNESS_THREADS", "1")))
    model = load_inception()[0].eval().to(memory_format=torch.channels_last_3d)
    for vd in sorted((DATA / "frames").iterdir()):
        dst = out / f"{vd.name}.npy"
        if dst.exists():
            continue
        t0 = time.time()
        fr = np.stack(list(FrameStream(vd, short_side=256)))          # (N, 256, 384, 3)
        clips, s = [], 8
        while s < len(fr):                                             # the pipeline's pad rule
            c = fr[s:s + 16]
            if len(c) < 16:
                c = np.concatenate([c, np.repeat(c[-1:], 16 - len(c), 0)])
            clips.append(c); s += 16
        odd = []
        with torch.inference_mode():
            for i in range(0, len(clips), 4):
                x = torch.as_tensor(np.stack(clips[i:i + 4])).permute(0, 4, 1, 2, 3)
                x = normalize(x, "minus1to1").contiguous(memory_format=torch.channels_last_3d)
                odd.append(model.mixed_5c(x).float().mean(2).numpy().astype(np.float16))
        odd = np.concatenate(odd) if odd else np.zeros((0, 1024, 8, 12), np.float16)
        even = np.load(OUT / "maps_s16" / f"{vd.name}.npy")
        assert len(even) == -(-len(fr) // 16) and len(odd) == len(range(8, len(fr), 16)), (vd.name, len(even), len(odd))
        m = np.empty((len(even) + len(odd),) + even.shape[1:], np.float16)
        m[0::2] = even; m[1::2] = odd
        np.save(dst, m)
        print(vd.name, len(fr), len(m), f"{time.time() - t0:.0f}s", flush=True)


def run_table(argv):
    import time
    views = argv[0].split(","); reduces = argv[1].split(","); seeds = range(int(argv[2]))
    sp = splits(int(argv[3]) if len(argv) > 3 else 0)
    extra = dict(a.split("=") for a in argv[4:]) if len(argv) > 4 else {}
    for k, v in list(extra.items()):
        try: extra[k] = float(v) if "." in v or "e" in v else int(v)
        except ValueError: pass
    for view in views:
        for red in reduces:
            res = {}
            t0 = time.time()
            for sname, (tr, te) in sp.items():
                for s in seeds:
                    r, _ = run(view, tr, te, seed=s, reduce=red, **extra)
                    res.setdefault(sname, []).append(r)
            def agg(keys):
                rows = [r for k in keys for r in res[k]]
                return " ".join(f"{m} {np.mean([r[m] for r in rows]):.3f}±{np.std([r[m] for r in rows]):.3f}" for m in ("auc", "ap", "auc_abn"))
            rand = [k for k in res if k != "tevad"]
            print(f"{view:12s} {red:10s} {extra} TEVAD: {agg(['tevad'])}" + (f" | random({len(rand)}): {agg(rand)}" if rand else "") + f"  [{time.time()-t0:.0f}s]", flush=True)


SMOOTHERS = ("none", "mean3", "mean5", "med3", "med5")


def parse_config(text):
    """'name=key:val,key:val' -> (name, run() keyword arguments)."""
    name, _, rest = text.partition("=")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, v = item.split(":")
        try: v = float(v) if "." in v or "e" in v else int(v)
        except ValueError: pass
        kw[k] = v
    return name, kw


def run_loc(argv):
    """loc OUT.json SEEDS NRANDOM CONFIG...: every config on TEVAD x SEEDS seeds, then NRANDOM random
    splits x seed 0, each model scored with every smoother in SMOOTHERS; results (metrics and clip
    scores per video) appended to OUT.json as they come (a rerun skips what is there)."""
    import time
    out = Path(argv[0]); seeds = int(argv[1]); nrand = int(argv[2])
    configs = [parse_config(c) for c in argv[3:]]
    done = json.loads(out.read_text()) if out.exists() else []
    have = {(r["config"], r["split"], r["seed"]) for r in done}
    sp = splits(nrand)
    jobs = [("tevad", s) for s in range(seeds)] + [(f"r{k}", 0) for k in range(nrand)]
    for sname, seed in jobs:
        tr, te = sp[sname]
        for cname, kw in configs:
            if (cname, sname, seed) in have: continue
            kw = dict(kw); view = kw.pop("view", "grid2x2"); red = kw.pop("reduce", "max")
            t0 = time.time()
            res, per = run(view, tr, te, seed=seed, reduce=red, smoothers=SMOOTHERS, **kw)
            done.append(dict(config=cname, split=sname, seed=seed, kw=kw, metrics=res,
                             clips={n: [round(float(v), 4) for v in s] for n, (s, _) in per.items()}))
            out.write_text(json.dumps(done))
            r = res["none"]
            print(f"{cname:14s} {sname:5s} s{seed} auc {r['auc']:.3f} ap {r['ap']:.3f} abn {r['auc_abn']:.3f} "
                  f"| mean3 {res['mean3']['auc']:.3f}/{res['mean3']['auc_abn']:.3f} "
                  f"[{time.time() - t0:.0f}s]", flush=True)


def metrics_from_clips(clips, how, stride=16):
    """Frame AUC, AP and AUC within anomalous videos from stored clip scores, smoothed by ``how``."""
    allf, allt, abf, abt = [], [], [], []
    for n, s in clips.items():
        lab = PB.frame_labels(truth, n)
        fs = frame_scores(smooth(np.asarray(s, np.float64), how), len(lab), stride)
        allf.append(fs); allt.append(lab)
        if lab.any(): abf.append(fs); abt.append(lab)
    fs, lab = np.concatenate(allf), np.concatenate(allt)
    a, al = np.concatenate(abf), np.concatenate(abt)
    return dict(auc=roc_auc_score(lab, fs), ap=average_precision_score(lab, fs), auc_abn=roc_auc_score(al, a))


def loc_report(argv):
    """report OUT.json[,MORE.json] [BASE] [SMOOTHERS]: mean ± sd per (config, smoother) on TEVAD and
    the random splits, recomputed from the stored clip scores, and paired differences against BASE
    (default 'default/none') on the same split and seed."""
    rows = [r for f in argv[0].split(",") for r in json.loads(Path(f).read_text())]
    base = argv[1] if len(argv) > 1 else "default/none"
    smoothers = argv[2].split(",") if len(argv) > 2 else SMOOTHERS
    for r in rows:
        r["m"] = {sm: metrics_from_clips(r["clips"], sm, r["kw"].get("stride", 16)) for sm in set(smoothers) | {base.split("/")[1]}}
    bc, bs = base.split("/")
    B = {(r["split"], r["seed"]): r["m"][bs] for r in rows if r["config"] == bc}
    cfgs = list(dict.fromkeys(r["config"] for r in rows))
    ms = ("auc", "ap", "auc_abn")
    print("| idea | TEVAD AUC | AP | AUC within anomalous | random AUC | AP | AUC within anomalous | "
          "paired TEVAD (AUC / AP / within) | paired random (AUC / AP / within) | random wins (AUC) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in cfgs:
        for sm in smoothers:
            cell = []
            for part in ("tevad", "random"):
                rs = [r for r in rows if r["config"] == c and (r["split"] == "tevad") == (part == "tevad")]
                if not rs: cell += ["-"] * 3; continue
                cell += [f"{100*np.mean([r['m'][sm][m] for r in rs]):.1f} ± {100*np.std([r['m'][sm][m] for r in rs]):.1f}" for m in ms]
            pd = []
            wins = "-"
            for part in ("tevad", "random"):
                rs = [r for r in rows if r["config"] == c and (r["split"] == "tevad") == (part == "tevad") and (r["split"], r["seed"]) in B]
                if not rs: pd.append("-"); continue
                d = {m: [100 * (r["m"][sm][m] - B[(r["split"], r["seed"])][m]) for r in rs] for m in ms}
                pd.append(" / ".join(f"{np.mean(d[m]):+.1f} ± {np.std(d[m]):.1f}" for m in ms))
                if part == "random": wins = f"{sum(x > 0 for x in d['auc'])}/{len(rs)}"
            print(f"| {c} {sm} | " + " | ".join(cell) + " | " + " | ".join(pd) + f" | {wins} (n={len(rs)}) |")


def curves(argv):
    """curves OUT.json CONFIG SPLIT SEED [VIDEOS]: one model's clip scores per video, with the truth per clip."""
    rows = json.loads(Path(argv[0]).read_text())
    r = next(r for r in rows if r["config"] == argv[1] and r["split"] == argv[2] and r["seed"] == int(argv[3]))
    st = r["kw"].get("stride", 16)
    names = argv[4].split(",") if len(argv) > 4 else list(r["clips"])
    for n in names:
        lab = PB.frame_labels(truth, n)
        t = "".join(str(int(lab[c * st:c * st + 16].mean() >= 0.5)) for c in range(len(r["clips"][n])))
        print(f"{n:9s} {'A' if lab.any() else 'N'} " + " ".join(f"{v:.2f}" for v in r["clips"][n]) + f"   truth {t}")


if __name__ == "__main__":
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found"); sys.exit(0)
    if sys.argv[1:2] == ["maps8"]:
        extract_maps8()
    elif sys.argv[1:2] == ["maps"]:
        extract_maps(int(sys.argv[2]) if len(sys.argv) > 2 else 16)
    elif sys.argv[1:2] == ["run"]:
        run_table(sys.argv[2:])
    elif sys.argv[1:2] == ["loc"]:
        run_loc(sys.argv[2:])
    elif sys.argv[1:2] == ["report"]:
        loc_report(sys.argv[2:])
    elif sys.argv[1:2] == ["curves"]:
        curves(sys.argv[2:])
    else:
        print(__doc__); sys.exit(2)
