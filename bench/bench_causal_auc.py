"""What causal scoring costs: frame AUC of ``pipeline.watch``'s causal windows against offline scoring.

    python bench/bench_causal_auc.py --run demo_run/run --data-root demo_run/data          # the demo
    python bench/bench_causal_auc.py --ped2 /work/shared/realdata/ucsd_ped2 --out /tmp/ped2   # UCSD Ped2

Demo mode: a ``python -m pipeline.demo`` output (run + data root with features and the official
UCF-style annotation). Every test video is scored offline (``pipeline.scoring.checkpoint.score_clips``: one
graph over the whole video) and causally (``pipeline.scoring.causal.causal_scores``: clip t from the model on
the last W clips up to t, the same code ``watch`` runs live) for each ``--windows`` W; frames are
pooled over the videos and the ROC-AUC computed as ``pipeline.evaluate`` does.

Ped2 mode: the real UCSD Ped2 frames (JPEG 360x240, ~10 fps) are read with PyAV in file order, resized
(short side ``--short-side``, libswscale bilinear, as pipeline.features.video does) and cut into 16-frame clips
(last one padded); I3D features with random 32x2 weights (no pretrained ResNet-50 I3D can be fetched
here, see /work/shared/realdata/README.md), a model trained with ``python -m pipeline.train`` on the
weak split (TEVAD's lists: 6 anomalous + 4 normal videos, video labels only), then the same
offline-vs-causal comparison on the 18 test videos against ``videos.json``'s frame truth. Ped2
videos are 120-180 frames (8-12 clips), so any W >= 12 is the same as W = all there.
``--live W`` (Ped2): the 18 test videos are also encoded losslessly and watched *as streams*, all
at once, by ``python -m pipeline.watch --window W`` (a replay), and the AUC of its JSON lines is
reported beside ``causal_W``.
Both modes also score one long "stream": all test videos one after the other, offline (one graph
over all of it) against causal windows, where W is far shorter than the stream.
Prints a table and writes ``--out/causal_auc.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.model import data as D  # noqa: E402
from pipeline.scoring.checkpoint import load_model, score_clips  # noqa: E402
from pipeline.common.metrics import CLIP_LEN, safe_auc  # noqa: E402
from pipeline.scoring.causal import causal_scores  # noqa: E402


def compare(model, videos: list[tuple[str, np.ndarray, np.ndarray]], windows: list[int]) -> dict:
    """videos: (name, feats (clips, crops, D), frame labels (frames,)) -> AUCs offline and per W."""
    def pooled(score_fn):
        s_all, y_all = [], []
        for name, f, y in videos:
            s = np.repeat(score_fn(f), CLIP_LEN)[:len(y)]
            s_all.append(s)
            y_all.append(y[:len(s)])
        return safe_auc(np.concatenate(y_all), np.concatenate(s_all))

    res = {"offline": pooled(lambda f: score_clips(model, f)), "videos": len(videos),
           "frames": int(sum(len(y) for _, _, y in videos)),
           "clips_max": int(max(len(f) for _, f, _ in videos))}
    for w in windows:
        res[f"causal_W{w}"] = pooled(lambda f: causal_scores(model, f, w))
    res["causal_all"] = pooled(lambda f: causal_scores(model, f, 10 ** 9))
    # one long "camera": every test video after the other (offline: one graph over all of it, as
    # pipeline.detect scores a recording up to 2048 clips), against causal windows
    f_all = np.concatenate([f for _, f, _ in videos])
    y_all = np.concatenate([np.pad(y, (0, CLIP_LEN * len(f) - len(y)), mode="edge") for _, f, y in videos])
    res["stream_clips"] = int(len(f_all))
    res["stream_offline"] = safe_auc(y_all, np.repeat(score_clips(model, f_all), CLIP_LEN))
    for w in windows:
        res[f"stream_causal_W{w}"] = safe_auc(y_all, np.repeat(causal_scores(model, f_all, w), CLIP_LEN))
    return res


def demo_videos(data_root: Path, model) -> list:
    ann = D.read_annotations(D.find_file(data_root, "ucf", "annotations"), "ucf")
    out = []
    for v in D.load_split(data_root, "ucf", "test", annotation=ann):
        f = D.load_features(v.paths, dim=model.in_dim)                     # (clips, crops, D)
        out.append((v.name, f, ann.frame_labels(v.name, CLIP_LEN * len(f))))
    return out


def ped2_features(root: Path, out: Path, short_side: int, crop: int) -> dict:
    """Random-weight 32x2 I3D features of every Ped2 video (cached in out/features)."""
    import av
    from pipeline.features.extractor import FeatureExtractor
    from pipeline.features.video import iter_clips, resized_size

    feat_dir = out / "features"
    feat_dir.mkdir(parents=True, exist_ok=True)
    truth = json.loads((root / "videos.json").read_text())
    fx = FeatureExtractor(profile="32x2", random_init=True, seed=0, crops=1, short_side=short_side,
                          crop_size=crop, device="cpu", batch_size=4)
    for name in truth:
        f = feat_dir / f"{name}.npy"
        if f.exists():
            continue
        def frames():
            for jpg in sorted((root / "frames" / name).glob("*.jpg")):
                with av.open(str(jpg)) as c:
                    fr = next(c.decode(video=0))
                w, h = resized_size(fr.width, fr.height, short_side)
                yield fr.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
        clips = list(iter_clips(frames(), "pad"))
        feats = np.concatenate([fx.features(np.stack(clips[i:i + 4])) for i in range(0, len(clips), 4)])
        np.save(f, feats.astype(np.float32))
    return dict(fx.meta, weights=None)


def ped2(root: Path, out: Path, windows: list[int], short_side: int, crop: int, seed: int, epochs: int) -> dict:
    meta = ped2_features(root, out, short_side, crop)
    truth = json.loads((root / "videos.json").read_text())
    dr = out / "data"
    (dr / "features").mkdir(parents=True, exist_ok=True)
    for name in truth:
        dst = dr / "features" / f"{name}.npy"
        if not dst.exists():
            os.symlink(out / "features" / f"{name}.npy", dst)
    def lst(src, dst):                          # TEVAD's lists name .npy files; keep the names, label column
        rows = []
        for line in (root / src).read_text().split():
            name = Path(line).stem.replace("_i3d", "")
            rows.append(f"{name},{1 if truth[name]['intervals'] else 0}")
        (dr / dst).write_text("\n".join(rows) + "\n")
    lst("ped2-i3d.list", "train.list")
    lst("ped2-i3d-test.list", "test.list")
    run = out / f"run_seed{seed}"
    if not (run / "model.pt").exists():
        cmd = [sys.executable, "-m", "pipeline.train", "--dataset", "sht", "--data-root", str(dr), "--out", str(run),
               "--epochs", str(epochs), "--seed", str(seed), "--standardize", "--device", "cpu",
               "--T", "8", "--batch-size", "10", "--val-fraction", "0", "--quiet"]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"training failed:\n{(r.stdout + r.stderr)[-3000:]}")
    model, _ = load_model(run, "cpu")
    videos = []
    for name in [l.split(",")[0] for l in (dr / "test.list").read_text().split()]:
        f = np.load(out / "features" / f"{name}.npy")
        y = np.zeros(truth[name]["frames"], np.int64)
        for a, b in truth[name]["intervals"]:
            y[a:b + 1] = 1
        videos.append((name, f, y))
    return dict(compare(model, videos, windows), extractor=f"32x2 random weights, short side {short_side}, crop {crop}",
                seed=seed)


def ped2_live(root: Path, out: Path, seed: int, window: int, short_side: int, crop: int) -> dict:
    """Ped2's test videos *as streams*: each test folder's JPEGs encoded losslessly (H.264 qp 0,
    yuv444p) to an mp4, all 18 watched at once by ``python -m pipeline.watch`` (replay: nothing
    dropped; one model for all streams), the frame AUC computed from the live JSON lines."""
    import av

    truth = json.loads((root / "videos.json").read_text())
    names = [l.split(",")[0] for l in (out / "data" / "test.list").read_text().split()]
    vids = out / "videos"
    vids.mkdir(exist_ok=True)
    for name in names:
        dst = vids / f"{name}.mp4"
        if dst.exists():
            continue
        with av.open(str(dst), "w") as o:
            st = o.add_stream("libx264", rate=10)
            st.width, st.height, st.pix_fmt = 360, 240, "yuv444p"
            st.options = {"qp": "0", "threads": "1"}
            for jpg in sorted((root / "frames" / name).glob("*.jpg")):
                with av.open(str(jpg)) as c:
                    img = next(c.decode(video=0)).to_ndarray(format="rgb24")
                for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    o.mux(p)
            for p in st.encode():
                o.mux(p)
    (out / "sources.txt").write_text("".join(f"{n} {vids / n}.mp4\n" for n in names))
    jl = out / f"live_seed{seed}.jsonl"
    if jl.exists():
        jl.unlink()
    cmd = [sys.executable, "-m", "pipeline.watch", "--sources", str(out / "sources.txt"), "--checkpoint",
           str(out / f"run_seed{seed}"), "--jsonl", str(jl), "--window", str(window), "--device", "cpu", "--quiet",
           "--profile", "32x2", "--random-init", "--seed", "0", "--short-side", str(short_side),
           "--crop-size", str(crop)]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"watch failed:\n{r.stderr[-3000:]}")
    lines = [json.loads(l) for l in jl.read_text().splitlines()]
    s_all, y_all = [], []
    for name in names:
        sc = [l["score"] for l in lines if l["event"] == "score" and l["stream"] == name]
        y = np.zeros(truth[name]["frames"], np.int64)
        for a, b in truth[name]["intervals"]:
            y[a:b + 1] = 1
        s = np.repeat(sc, CLIP_LEN)[:len(y)]
        s_all.append(s)
        y_all.append(y[:len(s)])
    ends = [l for l in lines if l["event"] == "end"]
    return dict(live_auc=safe_auc(np.concatenate(y_all), np.concatenate(s_all)), window=window,
                streams=len(ends), clips=sum(e["scored"] for e in ends), dropped=sum(e["dropped"] for e in ends),
                seconds=round(time.time() - t0, 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="demo run directory (demo mode)")
    p.add_argument("--data-root", help="demo data root (demo mode)")
    p.add_argument("--ped2", help="UCSD Ped2 folder (Ped2 mode)")
    p.add_argument("--out", default="/tmp/bench_causal_auc")
    p.add_argument("--windows", default="1,2,4,8,16,32", help="causal windows W to try (clips)")
    p.add_argument("--short-side", type=int, default=112)
    p.add_argument("--crop-size", type=int, default=112)
    p.add_argument("--seeds", default="0", help="Ped2: training seeds")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--live", type=int, default=None, metavar="W",
                   help="Ped2: also watch the test videos as streams with --window W (first seed's model)")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    windows = [int(x) for x in a.windows.split(",")]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if a.ped2:
        res = {f"seed{s}": ped2(Path(a.ped2), out, windows, a.short_side, a.crop_size, int(s), a.epochs)
               for s in a.seeds.split(",")}
        if a.live:
            seed = int(a.seeds.split(",")[0])
            res[f"live_seed{seed}"] = ped2_live(Path(a.ped2), out, seed, a.live, a.short_side, a.crop_size)
    else:
        model, _ = load_model(a.run, "cpu")
        res = {"demo": compare(model, demo_videos(Path(a.data_root), model), windows)}
    res["seconds"] = round(time.time() - t0, 1)
    (out / "causal_auc.json").write_text(json.dumps(res, indent=2))
    for k, r in res.items():
        if isinstance(r, dict):
            print(k, " ".join(f"{n}={v:.4f}" if isinstance(v, float) else f"{n}={v}" for n, v in r.items()))


if __name__ == "__main__":
    main()
