"""``pipeline.watch`` speed and memory: end-to-end latency, real-time factor, RSS over a long stream.

    python bench/bench_watch.py latency --out /tmp/bw                # every profile x crop, CPU (or --device cuda)
    python bench/bench_watch.py latency --profiles 32x2 --crops 224 --device cuda
    python bench/bench_watch.py rss --seconds 3600 --out /tmp/bw     # one hour, RSS sampled every 10 s

Checkpoints: an untrained model saved with the extractor record of each profile / crop (random
I3D weights): speed and memory do not depend on what the weights are.

latency: a generated 320x240 25 fps video (tests/videogen.py) is watched twice per profile and crop
(``--short-side`` = the crop, one crop): (1) as a replay (no ``--realtime``; nothing dropped) to get
the **real-time factor** RTF = scoring wall time / video duration (below 1: keeps up with one
camera; 1/RTF cameras of this kind could share the machine); (2) with ``--realtime`` (frames
released at 25 fps, as a camera sends them) to get the **end-to-end latency** of each scored clip
(its last frame decoded -> its score computed; ``latency_s`` of the JSON lines): p50, p95, max, and
the fraction of clips dropped to keep it bounded (``--max-pending 1``, one clip per forward).

live: a real checkpoint (``--checkpoint``, e.g. trained on real Ped2 features) on a video made of the
real UCSD Ped2 frames (``--frames``: the test folders back to back, looped to ``--seconds``, H.264
at 25 fps), on the runtime / precision of ``--runtime`` / ``--precision`` (passed to watch): (1) a
replay of the first ``--replay-seconds`` -> RTF, from first to last score (model loading excluded);
(2) the whole video with ``--realtime`` (``--max-pending 2``, watch's default) -> clips scored and
dropped, latency p50 / p95 / max. The machine's dense peak and load average are measured before
and after (bench/machine.py).

rss: one watch process on a long 64x48 25 fps video played with ``--realtime`` (short side 48,
crop 48: cheap per clip, so it keeps up and every clip goes through decode, I3D, the causal window
and the interval tracker; ``--save-clips`` on, so alert recordings are included), VmRSS of the
process read from /proc every ``--every`` seconds. Prints first / mid / last RSS and the slope.
Results: bench/RESULTS.md ("Watch a camera").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def make_checkpoint(path: Path, profile: str, short_side: int, crop: int) -> Path:
    """An untrained AnomalyGCN with the extractor record of a random-weight I3D ``profile``."""
    import torch
    from pipeline.features.extractor import FeatureExtractor
    from pipeline.model.network import AnomalyGCN

    if path.exists():
        return path
    fx = FeatureExtractor(profile=profile, random_init=True, seed=0, crops=1, short_side=short_side,
                          crop_size=crop, device="cpu")
    torch.manual_seed(0)
    m = AnomalyGCN(in_dim=2048, dropout=0.0)
    cfg = {"dropout": 0.0, "similarity": m.similarity, "graph_features": m.graph_features, "proximity": m.proximity}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": m.state_dict(), "config": cfg, "in_dim": 2048, "epoch": 0, "extractor": fx.meta}, path)
    return path


def make_video(path: Path, seconds: float, width: int, height: int, fps: int = 25) -> Path:
    """A cheap moving pattern (tests/videogen.py's frames, looped) of ``seconds``."""
    import av
    from videogen import frame_image

    if path.exists():
        return path
    loop = [frame_image(i, width, height) for i in range(50)]
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), "w") as out:
        st = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.gop_size = 50
        for i in range(int(seconds * fps)):
            for p in st.encode(av.VideoFrame.from_ndarray(loop[i % len(loop)], format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    tmp.replace(path)
    return path


def run_watch(args: list[str], out: Path, env: dict) -> tuple[list[dict], float]:
    if out.exists():
        out.unlink()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pipeline.watch", *args, "--jsonl", str(out), "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode:
        raise SystemExit(f"watch failed ({r.returncode}): {r.stderr[-2000:]}")
    return [json.loads(l) for l in out.read_text().splitlines()], wall


def machine(device: str) -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return f"{cpu}, {os.cpu_count()} CPUs" + (f", {gpu}" if gpu else "") + f", torch {torch.__version__}"


def latency(a) -> None:
    out = Path(a.out)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    video_rt = make_video(out / f"cam_{a.seconds:g}s.mp4", a.seconds, 320, 240)
    video_rep = make_video(out / f"cam_{a.replay_seconds:g}s.mp4", a.replay_seconds, 320, 240)
    rows = []
    for profile in a.profiles.split(","):
        for crop in [int(c) for c in a.crops.split(",")]:
            ck = make_checkpoint(out / f"ck_{profile}_{crop}.pt", profile, crop, crop)
            base = ["--checkpoint", str(ck), "--device", a.device]
            lines, wall = run_watch([str(video_rep), *base, "--batch-size", str(a.batch_size)], out / "rep.jsonl", env)
            sc = [l for l in lines if l["event"] == "score"]
            t_first = min(l["wall"] for l in sc)
            # RTF from the scoring loop: first score -> last score, over the stream time scored
            # (model loading excluded); clips are 16/25 s of stream
            from datetime import datetime
            ts = sorted(datetime.fromisoformat(l["wall"].replace("Z", "+00:00")).timestamp() for l in sc)
            per_clip = (ts[-1] - ts[0]) / max(1, len(ts) - 1)
            rtf = per_clip / (16 / 25)
            lines, _ = run_watch([str(video_rt), *base, "--realtime", "--max-pending", "1", "--batch-size", "1"],
                                 out / "rt.jsonl", env)
            sc = [l for l in lines if l["event"] == "score"]
            end = [l for l in lines if l["event"] == "end"][0]
            lat = np.array([l["latency_s"] for l in sc])
            row = dict(profile=profile, crop=crop, device=a.device, rtf=round(rtf, 3), clip_s=round(per_clip, 4),
                       scored=end["scored"], dropped=end["dropped"], clips=end["clips"],
                       latency_p50=round(float(np.percentile(lat, 50)), 3),
                       latency_p95=round(float(np.percentile(lat, 95)), 3), latency_max=round(float(lat.max()), 3))
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = dict(machine=machine(a.device), seconds_realtime=a.seconds, replay_seconds=a.replay_seconds,
               threads=os.environ.get("OMP_NUM_THREADS"), rows=rows)
    (out / f"latency_{a.device.replace(':', '')}.json").write_text(json.dumps(res, indent=2))
    print(f"{'profile':8} {'crop':>5} {'RTF':>6} {'s/clip':>7} {'p50 s':>6} {'p95 s':>6} {'max s':>6} {'dropped':>9}")
    for r in rows:
        print(f"{r['profile']:8} {r['crop']:>5} {r['rtf']:>6.2f} {r['clip_s']:>7.3f} {r['latency_p50']:>6.2f} "
              f"{r['latency_p95']:>6.2f} {r['latency_max']:>6.2f} {r['dropped']:>4}/{r['clips']}")


def ped2_video(path: Path, frames: Path, seconds: float, fps: int = 25) -> Path:
    """The Ped2 test frame folders back to back (looped) as one H.264 video of ``seconds`` (CRF 12)."""
    import av

    if path.exists():
        return path
    images = [im for f in sorted(p for p in frames.iterdir() if p.is_dir() and p.name.startswith("Test"))
              for im in sorted(f.glob("*.jpg"))]
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), "w") as out:
        st = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        for i in range(int(seconds * fps)):
            with av.open(str(images[i % len(images)])) as c:
                img = next(c.decode(video=0)).to_ndarray(format="rgb24")
            if i == 0:
                st.width, st.height, st.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    tmp.replace(path)
    return path


def live(a) -> None:
    from datetime import datetime

    sys.path.insert(0, str(ROOT / "bench"))
    from machine import machine as peak

    out = Path(a.out)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = peak()
    print(json.dumps(dict(when="start", **before)), flush=True)
    video = ped2_video(out / f"ped2_{a.seconds:g}s.mp4", Path(a.frames), a.seconds)
    replay = ped2_video(out / f"ped2_{a.replay_seconds:g}s.mp4", Path(a.frames), a.replay_seconds)
    base = ["--checkpoint", a.checkpoint, "--device", "cpu", "--runtime", a.runtime, "--precision", a.precision,
            *a.extra.split()]
    lines, _ = run_watch([str(replay), *base], out / "live_replay.jsonl", env)
    sc = [l for l in lines if l["event"] == "score"]
    ts = sorted(datetime.fromisoformat(l["wall"].replace("Z", "+00:00")).timestamp() for l in sc)
    per_clip = (ts[-1] - ts[0]) / max(1, len(ts) - 1)
    mid = peak()
    lines, wall = run_watch([str(video), *base, "--realtime"], out / "live_rt.jsonl", env)
    sc = [l for l in lines if l["event"] == "score"]
    ends = [l for l in lines if l["event"] == "end"]
    lat = np.array([l["latency_s"] for l in sc])
    after = peak()
    res = dict(checkpoint=a.checkpoint, runtime=a.runtime, precision=a.precision, extra=a.extra,
               video_seconds=a.seconds, replay_seconds=a.replay_seconds, clip_s=round(per_clip, 4),
               rtf=round(per_clip / (16 / 25), 3), scored=sum(e["scored"] for e in ends),
               dropped=sum(e["dropped"] for e in ends), clips=sum(e["clips"] for e in ends),
               drop_events=sum(l["event"] == "drop" for l in lines),
               latency_p50=round(float(np.percentile(lat, 50)), 3),
               latency_p95=round(float(np.percentile(lat, 95)), 3), latency_max=round(float(lat.max()), 3),
               wall_s=round(wall, 1), machine_start=before, machine_mid=mid, machine_end=after,
               threads=os.environ.get("OMP_NUM_THREADS"))
    (out / "live.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


def rss(a) -> None:
    out = Path(a.out)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    video = make_video(out / f"long_{a.seconds:g}s.mp4", a.seconds, 64, 48)
    ck = make_checkpoint(out / "ck_32x2_48.pt", "32x2", 48, 48)
    jl = out / "rss.jsonl"
    if jl.exists():
        jl.unlink()
    p = subprocess.Popen([sys.executable, "-m", "pipeline.watch", str(video), "--realtime", "--checkpoint", str(ck),
                          "--device", a.device, "--jsonl", str(jl), "--quiet", "--save-clips", str(out / "clips"),
                          "--threshold", str(a.threshold)], cwd=ROOT, env=env)
    samples = []
    t0 = time.monotonic()
    while p.poll() is None:
        try:
            kb = next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS"))
            samples.append((round(time.monotonic() - t0, 1), kb))
            (out / "rss_samples.json").write_text(json.dumps(samples))
        except (OSError, StopIteration):
            pass
        time.sleep(a.every)
    lines = [json.loads(l) for l in jl.read_text().splitlines()]
    end = [l for l in lines if l["event"] == "end"][0]
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples]) / 1024
    late = t > 60                                          # after warm-up
    slope = float(np.polyfit(t[late] / 3600, mb[late], 1)[0]) if late.sum() > 2 else float("nan")
    res = dict(machine=machine(a.device), seconds=a.seconds, samples=len(samples), end=end,
               rss_mb_at={f"{int(t[i])}s": round(float(mb[i]), 1) for i in
                          sorted({int(np.argmax(t > 60)), len(t) // 4, len(t) // 2, 3 * len(t) // 4, len(t) - 1})},
               rss_mb_min_after_60s=round(float(mb[late].min()), 1) if late.any() else None,
               rss_mb_max_after_60s=round(float(mb[late].max()), 1) if late.any() else None,
               slope_mb_per_hour=round(slope, 2), clip_files=len(list((out / "clips").glob("*.mp4"))),
               intervals=sum(l["event"] == "interval_close" for l in lines))
    (out / "rss.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("latency")
    l.add_argument("--profiles", default="32x2,8x8")
    l.add_argument("--crops", default="112,160,224")
    l.add_argument("--seconds", type=float, default=30.0, help="length of the --realtime run")
    l.add_argument("--replay-seconds", type=float, default=12.8, help="length of the replay (RTF) run")
    l.add_argument("--batch-size", type=int, default=4)
    v = sub.add_parser("live")
    v.add_argument("--checkpoint", required=True)
    v.add_argument("--frames", default="/work/shared/realdata/ucsd_ped2/frames")
    v.add_argument("--seconds", type=float, default=600.0, help="length of the --realtime run")
    v.add_argument("--replay-seconds", type=float, default=60.0, help="length of the replay (RTF) run")
    v.add_argument("--runtime", default="auto")
    v.add_argument("--precision", default="auto")
    v.add_argument("--extra", default="", help="more watch flags, e.g. '--batch-size 2'")
    r = sub.add_parser("rss")
    r.add_argument("--seconds", type=float, default=3600.0)
    r.add_argument("--every", type=float, default=10.0)
    r.add_argument("--threshold", type=float, default=0.5)
    for q in (l, r, v):
        q.add_argument("--out", default="/tmp/bench_watch")
        q.add_argument("--device", default="cpu")
    a = p.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    {"latency": latency, "rss": rss, "live": live}[a.cmd](a)


if __name__ == "__main__":
    main()
