"""Benchmarks of stage 1 (extraction) on this machine's CPU, small frames.

    .venv/bin/python bench/bench_extract.py all            # everything below
    .venv/bin/python bench/bench_extract.py decode|model|e2e|memory

decode : PyAV frames/s (decode + RGB + resize) on a generated 320x240 video
model  : I3D clips/s for both profiles (random weights, 1 crop), crop 32 / short side 32
e2e    : clips/s of the whole CLI path (worker decode -> queue -> model -> .npy) on a few
         generated videos, and its ratio to the model alone (1.0 = decode fully hidden)
memory : peak RSS (main + decode workers) extracting generated videos of 6 and 60
         minutes at 64x48, 25 fps (must not grow with length)
Prints one JSON line per measurement (and --json FILE appends them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from videogen import make_hour_video, make_video  # noqa: E402

RESULTS = []


def report(**kw):
    kw.setdefault("machine", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpu")
    kw.setdefault("load_avg", [round(v, 2) for v in os.getloadavg()])
    RESULTS.append(kw)
    print(json.dumps(kw), flush=True)


def bench_decode(tmp: Path, seconds: int = 20):
    from pipeline.features.video import FrameStream

    path = make_video(tmp / "decode.mp4", seconds * 25, 320, 240, fps=25)
    for short in (None, 64):
        t = time.perf_counter()
        s = FrameStream(path, short_side=short, threads=1)
        n = sum(1 for _ in s)
        dt = time.perf_counter() - t
        report(bench="decode", video="320x240 mpeg4", short_side=short, threads=1,
               frames=n, seconds=round(dt, 2), frames_per_s=round(n / dt, 1))


def bench_model(batch: int = 8, reps: int = 3, size: int = 32):
    from pipeline.features.extractor import FeatureExtractor

    out = {}
    for profile in ("32x2", "8x8"):
        ext = FeatureExtractor(profile=profile, random_init=True, short_side=size, crop_size=size,
                               device="cpu", batch_size=batch)
        x = np.random.default_rng(0).integers(0, 255, (batch, 16, size, int(size * 4 / 3), 3),
                                              dtype=np.uint8)
        ext.features(x)  # warm up
        t = time.perf_counter()
        for _ in range(reps):
            ext.features(x)
        dt = time.perf_counter() - t
        out[profile] = batch * reps / dt
        report(bench="model", profile=profile, crop=size, crops=1, batch=batch,
               torch_threads=__import__("torch").get_num_threads(),
               clips_per_s=round(out[profile], 2))
    return out


def bench_e2e(tmp: Path, model_rate: float, n_videos: int = 4, frames: int = 400, size: int = 32):
    src = tmp / "e2e"
    for i in range(n_videos):
        make_video(src / f"v{i}.mp4", frames, 320, 240, seed=i)
    clips = n_videos * -(-frames // 16)
    for workers in (0, 1):
        out = tmp / f"e2e_out_{workers}"
        cmd = [sys.executable, "-m", "pipeline.extract", str(src), "--out", str(out),
               "--random-init", "--short-side", str(size), "--crop-size", str(size),
               "--workers", str(workers), "--batch-size", "8", "--no-progress", "--device", "cpu"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t
        rows = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
        busy = sum(r["seconds"] for r in rows)  # time from first batch to end, per video
        report(bench="e2e", profile="32x2", videos=n_videos, video="320x240 mpeg4",
               crop=size, workers=workers, clips=clips,
               wall_s_incl_startup=round(dt, 1), clips_per_s_steady=round(clips / busy, 2),
               ratio_to_model_alone=round(clips / busy / model_rate, 2))


def _tree_mem_kb(pid: int):
    """(RSS, PSS) of a process and all its descendants (kB), from /proc.

    Summed RSS counts pages shared between processes (libraries) twice; PSS splits them.
    """
    total, pss, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"):
                    total += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
            for t in os.listdir(f"/proc/{p}/task"):
                kids = open(f"/proc/{p}/task/{t}/children").read().split()
                todo.extend(int(k) for k in kids)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return total, pss


def bench_memory(tmp: Path, minutes=(6, 60), size: int = 16):
    for m in minutes:
        t = time.perf_counter()
        path = make_hour_video(tmp / f"long_{m}min.mp4", seconds=60 * m, width=64, height=48, fps=25)
        gen = time.perf_counter() - t
        out = tmp / f"mem_out_{m}"
        cmd = [sys.executable, "-m", "pipeline.extract", str(path), "--out", str(out),
               "--random-init", "--short-side", str(size), "--crop-size", str(size),
               "--workers", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        peak, peak_pss, samples = 0, 0, []
        while proc.poll() is None:
            rss, pss = _tree_mem_kb(proc.pid)
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
            samples.append(pss)
            time.sleep(0.25)
        dt = time.perf_counter() - t
        arr = np.load(out / f"{path.stem}.npy", mmap_mode="r")
        mid = samples[len(samples) // 4: 3 * len(samples) // 4] or samples
        report(bench="memory", video=f"{m} min 64x48 25fps mpeg4", frames=m * 60 * 25,
               clips=int(arr.shape[0]), crop=size, workers=1, generate_s=round(gen, 1),
               extract_s=round(dt, 1), peak_rss_sum_mb=round(peak / 1024, 1),
               peak_pss_mb=round(peak_pss / 1024, 1),
               median_pss_mb=round(float(np.median(mid)) / 1024, 1),
               feature_file_mb=round((out / f"{path.stem}.npy").stat().st_size / 2**20, 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=["all", "decode", "model", "e2e", "memory"])
    ap.add_argument("--json", type=Path, default=None, help="append results to this file")
    ap.add_argument("--minutes", type=int, nargs="+", default=[6, 60], help="memory: video lengths")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import machine
    report(bench="machine", when="start", **machine())      # dense peak in the same run (bench/machine.py)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.what in ("all", "decode"):
            bench_decode(tmp)
        rate = None
        if args.what in ("all", "model", "e2e"):
            rate = bench_model()["32x2"]
        if args.what in ("all", "e2e"):
            bench_e2e(tmp, rate)
        if args.what in ("all", "memory"):
            bench_memory(tmp, tuple(args.minutes))
    report(bench="machine", when="end", **machine())
    if args.json:
        with open(args.json, "a") as f:
            for r in RESULTS:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
