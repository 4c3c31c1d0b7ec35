"""Run inside a private network + pid namespace (see test_ray.py): start a local Ray cluster on
127.0.0.1 (a head with 2 CPUs and a second worker node with 2), extract with --backend ray (an
actor with a decode process on each node), kill -9 an actor process in the middle of a video,
rerun (1-CPU actors decoding in-process), and write what happened to a JSON file.

    python tests/raycluster.py VIDEOS OUT RESULT.json RAY_TMP
    python tests/raycluster.py detect VIDEOS CHECKPOINT OUT RESULT.json RAY_TMP   (pipeline.detect)
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PORT = 6390
# the ray command of this Python's environment, even when its bin/ is not on PATH
RAY = str(Path(sys.executable).parent / "ray") if (Path(sys.executable).parent / "ray").exists() else "ray"


def sh(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")


def extract(videos: Path, out: Path, log: Path, address: str, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.extract", str(videos), "--out", str(out), *flags,
           "--backend", "ray", "--address", address, "--random-init",
           "--short-side", "32", "--crop-size", "32", "--batch-size", "1", "--no-progress"]
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def start_cluster(tmp: Path) -> dict:
    """A head (2 CPUs) and a worker node (2 CPUs) on 127.0.0.1:PORT; returns the result dict."""
    env = ["--temp-dir", str(tmp), "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    # Ray's token authentication, with a token of this test only (not the user's ~/.ray)
    os.environ["HOME"] = str(tmp / "home")
    os.environ["RAY_AUTH_MODE"] = "token"
    (tmp / "home").mkdir()
    t0 = time.time()
    sh(RAY, "get-auth-token", "--generate")
    sh(RAY, "start", "--head", "--num-cpus", "2", "--include-dashboard=false",
       "--port", str(PORT), *env)
    sh(RAY, "start", "--address", f"127.0.0.1:{PORT}", "--num-cpus", "2", *env)
    return {"cluster_s": round(time.time() - t0, 1)}


def main_detect() -> None:
    """``detect VIDEOS CHECKPOINT OUT RESULT.json RAY_TMP``: python -m pipeline.detect --backend ray
    on the cluster, then again with --overwrite and --address auto (the features are reused)."""
    videos, ckpt, out, result, tmp = map(Path, sys.argv[2:7])
    res = start_cluster(tmp)
    for run, address, extra in (("run1", f"127.0.0.1:{PORT}", []), ("run2", "auto", ["--overwrite"])):
        log = out.parent / f"detect_{run}.log"
        cmd = [sys.executable, "-m", "pipeline.detect", str(videos), "--checkpoint", str(ckpt),
               "--out", str(out), "--backend", "ray", "--address", address, "--batch-size", "1",
               "--device", "cpu", "--quiet", *extra]
        rc = subprocess.run(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, timeout=400).returncode
        res[run] = dict(rc=rc, log=log.read_text()[-4000:],
                        mtimes={p.name: p.stat().st_mtime_ns for p in (out / "features").glob("*.npy")})
    Path(result).write_text(json.dumps(res))


def main() -> None:
    if sys.argv[1] == "detect":
        return main_detect()
    videos, out, result, tmp = map(Path, sys.argv[1:5])
    res: dict = start_cluster(tmp)

    # run 1: two actors of 2 CPUs (one per node), each with a decode process; kill -9 the actor
    # process that is writing a video, once
    proc = extract(videos, out, out.parent / "run1.log", f"127.0.0.1:{PORT}", "--ray-decode-workers", "1")
    killed = None
    deadline = time.time() + 400
    while proc.poll() is None and time.time() < deadline:
        if killed is None and out.exists():
            for t in out.glob(".*.npy.*.tmp"):
                m = re.search(r"-(\d+)\.tmp$", t.name)
                if m:
                    pid = int(m[1])
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed = dict(pid=pid, video=t.name.split(".npy.")[0][1:])
                    except ProcessLookupError:
                        continue
                    break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.kill()
    res["run1"] = dict(rc=proc.wait(), killed=killed, log=(out.parent / "run1.log").read_text()[-4000:])
    res["mtimes"] = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    res["temps_left"] = [p.name for p in out.glob(".*.tmp")]

    # run 2 (--address auto): everything finished -> skipped, nothing rewritten
    proc = extract(videos, out, out.parent / "run2.log", "auto")
    res["run2"] = dict(rc=proc.wait(timeout=300), log=(out.parent / "run2.log").read_text()[-4000:])
    res["mtimes2"] = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    Path(result).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
