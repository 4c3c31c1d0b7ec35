"""Stage 1 throughput: the Ray backend with 1 and 2 actors vs the local backend, same videos,
same run, this machine's CPU (random weights, tiny frames: it measures scheduling, not the GPU).

    unshare -n -p -f --mount-proc sh -c 'ip link set lo up && python bench/bench_ray.py'
    python bench/bench_ray.py --gpu      # GPU machine (bench/gpu_extract.sh): 224 crops,
                                         # local backend vs Ray with one actor per GPU

(as root: Ray then binds to 127.0.0.1 only, and everything it starts ends with the namespace.)
Each configuration runs the CLI once on a fresh folder. wall = the whole command (Python, Ray,
actors building the model, extraction); busy = from the first video's start to the last video's
end, from the manifest (``end_unix - seconds`` per row), so start-up is excluded. videos/s and
clips/s are over busy. Prints one JSON line each.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from videogen import make_video  # noqa: E402

TINY = ["--random-init", "--short-side", "32", "--crop-size", "32", "--batch-size", "4", "--no-progress"]


def timed(cmd, tmp: Path, extra_env=None) -> float:
    # Ray's session files and auth token go to this run's folder, not /tmp/ray and ~/.ray
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(tmp / "home"), RAY_TMPDIR=str(tmp),
               **(extra_env or {}))
    (tmp / "home").mkdir(exist_ok=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=480)
    ap.add_argument("--json", default=None, help="append the JSON lines to this file")
    ap.add_argument("--gpu", action="store_true",
                    help="short side 256, crop 224, 320x240 videos; local (8 decode workers) vs "
                         "Ray with one actor per GPU")
    a = ap.parse_args(argv)
    global TINY
    size = (160, 120)
    if a.gpu:
        TINY = ["--random-init", "--batch-size", "16", "--no-progress"]
        size = (320, 240)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray"))
    src = tmp / "videos"
    for i in range(a.videos):
        make_video(src / f"v{i}.mp4", a.frames, *size, seed=i)
    # torch threads: the local backend uses torch's default (all cores); a Ray actor gets 1 CPU
    # and Ray sets OMP_NUM_THREADS=1 in it, so local-w0-1t is the like-for-like single worker
    configs = [("local", ["--workers", "1"]),
               ("local-w0", ["--workers", "0"]),
               ("local-w0-1t", ["--workers", "0"]),
               ("ray-1", ["--backend", "ray", "--ray-actors", "1"]),
               ("ray-2", ["--backend", "ray", "--ray-actors", "2"])]
    if a.gpu:
        configs = [("local", ["--workers", str(min(8, os.cpu_count() or 1))]),
                   ("ray-1-actor-per-gpu", ["--backend", "ray"])]
    rows, base = [], None
    for name, flags in configs:
        out = tmp / name
        cmd = [sys.executable, "-m", "pipeline.extract", str(src), "--out", str(out), *TINY, *flags]
        wall = timed(cmd, tmp, {"OMP_NUM_THREADS": "1"} if name.endswith("-1t") else None)
        man = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        busy = max(r["end_unix"] for r in man) - min(r["end_unix"] - r["seconds"] for r in man)
        n_clips = sum(r["clips"] for r in man)
        steady = n_clips / busy
        base = base or steady
        row = dict(bench="ray", backend=name, videos=len(man), clips=n_clips,
                   video=f"{size[0]}x{size[1]} mpeg4", crop=224 if a.gpu else 32,
                   wall_s=round(wall, 1), busy_s=round(busy, 1),
                   videos_per_s=round(len(man) / busy, 2), clips_per_s=round(steady, 1),
                   ratio_to_local=round(steady / base, 2),
                   machine=f"{platform.machine()}, {os.cpu_count()} cpu",
                   load_avg=open("/proc/loadavg").read().split()[0])
        rows.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
