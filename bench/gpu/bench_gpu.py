"""GPU benchmark of stage 1 (run through bench/gpu_extract.sh on a CUDA machine).

Reports, as JSON lines (and a summary table):
- model clips/s for both profiles at 224x224 (short side 256), 1 and 10 crops, bf16 and
  fp32; the clip batch travels as uint8 through pinned memory, crops/normalisation on
  the GPU, channels_last_3d, all crops of the batch in one forward (FeatureExtractor);
- bf16 vs fp32 feature error (relative L2, max abs, min cosine) on the same clips;
- projected GPU hours for all of UCF-Crime (128 h at 30 fps = 864,000 clips per crop set);
- PyAV decode frames/s on a generated 320x240 video (UCF-Crime's size), per process, and
  an end-to-end run (decode workers -> queue -> GPU -> .npy) with its ratio to the model.
Weights are random (no internet there); speed does not depend on them, and the bf16
error is for this random net (re-check with the real file: --weights PATH).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.features.extractor import FeatureExtractor
from pipeline.features.backends import run  # noqa: E402

UCF_CLIPS = 128 * 3600 * 30 // 16  # 864,000


def log(**kw):
    print(json.dumps(kw), flush=True)
    return kw


def time_features(ext, x, min_s: float):
    for _ in range(3):
        ext.features(x)  # warm-up (cudnn.benchmark picks algorithms)
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        ext.features(x)  # ends with .cpu(): synchronous
        n += 1
    return n * x.shape[0] / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0, help="timing per case")
    ap.add_argument("--weights", default=None, help="real weights for the bf16 check (optional)")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args(argv)
    assert torch.cuda.is_available(), "no CUDA device"
    torch.backends.cudnn.benchmark = True
    dev = torch.cuda.get_device_name(0)
    log(device=dev, torch=torch.__version__, cuda=torch.version.cuda, cpus=os.cpu_count())
    rng = np.random.default_rng(0)
    rows = []
    for profile in ("32x2", "8x8"):
        for crops, bs in ((1, 32), (10, 4)):
            x = rng.integers(0, 256, (bs, 16, 256, 340, 3), dtype=np.uint8)
            feats = {}
            for precision in ("bf16", "fp32"):
                ext = FeatureExtractor(profile=profile, random_init=True, crops=crops, device="cuda",
                                       batch_size=bs, precision=precision)
                rate = time_features(ext, x, args.seconds)
                feats[precision] = ext.features(x)
                rows.append(log(bench="model", profile=profile, crops=crops, precision=precision,
                                batch_clips=bs, crops_per_forward=bs * crops,
                                clips_per_s=round(rate, 1),
                                ucf_crime_gpu_hours=round(UCF_CLIPS / rate / 3600, 2),
                                peak_mem_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2)))
                del ext
                torch.cuda.empty_cache()
            a, b = torch.from_numpy(feats["bf16"]).flatten(0, 1), torch.from_numpy(feats["fp32"]).flatten(0, 1)
            rows.append(log(bench="bf16_vs_fp32", profile=profile, crops=crops,
                            rel_l2=float((a - b).norm() / b.norm()),
                            max_abs=float((a - b).abs().max()), max_fp32=float(b.abs().max()),
                            min_cosine=float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())))
    if args.weights:
        x = rng.integers(0, 256, (4, 16, 256, 340, 3), dtype=np.uint8)
        f = {p: FeatureExtractor(weights=args.weights, crops=10, device="cuda", batch_size=4,
                                 precision=p).features(x) for p in ("bf16", "fp32")}
        a, b = torch.from_numpy(f["bf16"]), torch.from_numpy(f["fp32"])
        rows.append(log(bench="bf16_vs_fp32_real_weights", weights=args.weights,
                        rel_l2=float((a - b).norm() / b.norm())))

    from videogen import make_video
    from pipeline.features.video import FrameStream

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        v = make_video(d / "dec.mp4", 30 * 60, 320, 240, fps=30)
        for threads in (1, 0):
            t0 = time.perf_counter()
            n = sum(1 for _ in FrameStream(v, short_side=256, threads=threads))
            rows.append(log(bench="decode", video="320x240 mpeg4 -> short side 256", threads=threads,
                            frames_per_s=round(n / (time.perf_counter() - t0), 1)))
        if not args.skip_e2e:
            src = d / "videos"
            for i in range(8):
                make_video(src / f"v{i}.mp4", 30 * 40, 320, 240, fps=30, seed=i)
            clips = 8 * 75
            for profile, crops in (("32x2", 10), ("32x2", 1)):
                ext = FeatureExtractor(profile=profile, random_init=True, crops=crops, device="cuda",
                                       batch_size=32 // crops if crops == 1 else 4)
                x = rng.integers(0, 256, (ext.batch_size, 16, 256, 341, 3), dtype=np.uint8)
                alone = time_features(ext, x, args.seconds)
                out = d / f"out_{profile}_{crops}"
                t0 = time.perf_counter()
                counts = run([src], out, ext, workers=min(8, os.cpu_count() or 1), progress=False)
                dt = time.perf_counter() - t0
                rows.append(log(bench="e2e", profile=profile, crops=crops, videos=8, clips=clips,
                                workers=min(8, os.cpu_count() or 1), ok=counts["ok"],
                                clips_per_s=round(clips / dt, 1), model_alone=round(alone, 1),
                                ratio=round(clips / dt / alone, 2)))
    print("\nprofile crops precision  clips/s  UCF-Crime GPU hours")
    for r in rows:
        if r.get("bench") == "model":
            print(f"{r['profile']:>7} {r['crops']:>5} {r['precision']:>9} {r['clips_per_s']:>8} "
                  f"{r['ucf_crime_gpu_hours']:>10}")


if __name__ == "__main__":
    main()
