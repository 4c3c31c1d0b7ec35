"""Issue 22's fast experiments on the real Ped2 frames: coverage, spatial MIL over regions, video
centring, sparsity, decided on TEVAD's split (3 seeds) before any change reached pipeline.train.

    python bench/coverage_harness.py maps [STRIDE]        # Inception-I3D Mixed_5c maps (time-averaged,
                                                          # (clips, 1024, 8, 12) float16) of the 28 videos
    python bench/coverage_harness.py run VIEWS REDUCES SEEDS [RANDOM_SPLITS] [key=value ...]
    python bench/coverage_harness.py run full,center,grid2x2 max 3 0 center=cat_median sparsity=1.0

VIEWS: full (the whole map averaged), center (the map's middle 8 of 12 columns: about the centre
224 crop), gridRxC (regions, spatial MIL with REDUCE max/mean/lse/randomcrop). It re-implements the
training loop of pipeline.train with the same model (pipeline.model.network.AnomalyGCN), batches and k-max
loss, in-process, so one configuration x 3 seeds takes a minute; the figures it gave are in the
README's "Choices" (issue 22). What became the defaults was then measured through the CLI by
bench/ped2_benchmark.py. Maps go to bench/out/maps_s<STRIDE> (git-ignored).
"""
import sys, json, math, itertools
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

def feats(name, view):
    m = maps(name)
    if view == "full": return m.mean((2, 3))[:, None]
    if view == "center":   # 224/384 of width centre, all height: cols 12*(80/384).. approx
        return m[:, :, :, 2:10].mean((2, 3))[:, None]
    if view.startswith("grid"):
        gh, gw = int(view[4]), int(view[6]); return regions(m, gh, gw)
    if view.startswith("fullgrid"):   # global + regions
        gh, gw = int(view[8]), int(view[10]); r = regions(m, gh, gw)
        return np.concatenate([m.mean((2, 3))[:, None], r], 1)
    raise ValueError(view)

def centre_fn(f, center):
    if center is None: return f
    med = np.median(f, 0, keepdims=True) if "median" in center else f.mean(0, keepdims=True)
    if center in ("median", "mean"): return f - med
    if center in ("cat_median", "cat_mean"): return np.concatenate([f, f - med], -1)
    raise ValueError(center)

def frame_scores(clip_s, n):
    return np.repeat(clip_s, 16)[:n]

def run(view, train, test, seed=0, epochs=50, T=100, reduce="max", lr=3e-4, wd=5e-4, dropout=0.6,
        adjacency="proximity", center=None, topk_space=1, extra=None, verbose=False, sparsity=0.0, proximity="plain"):
    torch.manual_seed(seed); g = torch.Generator().manual_seed(seed)
    tr = {n: feats(n, view) for n in train}
    tr = {n: centre_fn(f, center) for n, f in tr.items()}
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
    allf, allt, abf, abt, per = [], [], [], [], {}
    with torch.no_grad():
        for n in test:
            f = feats(n, view)
            f = centre_fn(f, center)
            x = torch.tensor(f).permute(1, 0, 2)       # (R, clips, D)
            z = model(x)["logits"]                     # (R, clips)
            if reduce in ("max",): zz = z.max(0).values
            elif reduce in ("mean", "randomcrop"): zz = torch.sigmoid(z).mean(0).logit(eps=1e-7) if reduce == "randomcrop" else z.mean(0)
            elif reduce == "lse": zz = torch.logsumexp(z, 0) - math.log(z.shape[0])
            s = torch.sigmoid(zz).numpy().astype(np.float64)
            fs = frame_scores(s, truth[n]["frames"]); lab = PB.frame_labels(truth, n)
            per[n] = (s, lab)
            allf.append(fs); allt.append(lab)
            if lab.any(): abf.append(fs); abt.append(lab)
    fs, lab = np.concatenate(allf), np.concatenate(allt)
    a, al = np.concatenate(abf), np.concatenate(abt)
    return dict(auc=roc_auc_score(lab, fs), ap=average_precision_score(lab, fs),
                auc_abn=roc_auc_score(al, a) if 0 < al.mean() < 1 else float("nan")), per

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
    torch.set_num_threads(2)
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


if __name__ == "__main__":
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found"); sys.exit(0)
    if sys.argv[1:2] == ["maps"]:
        extract_maps(int(sys.argv[2]) if len(sys.argv) > 2 else 16)
    elif sys.argv[1:2] == ["run"]:
        run_table(sys.argv[2:])
    else:
        print(__doc__); sys.exit(2)
