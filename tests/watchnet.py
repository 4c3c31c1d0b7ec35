"""Run inside a network namespace with only loopback up (see test_watch.py): real streams served by
tests/streamserve.py, watched by ``python -m pipeline.watch``; the JSON lines go to RESULT.json.

    python tests/watchnet.py CHECKPOINT VIDEO WORKDIR RESULT.json

1. restart: one watch on two streams, udp://127.0.0.1:5700 (MPEG-TS over UDP) and
   http://127.0.0.1:5701/live.ts (MPEG-TS over HTTP; the server is not up yet, so watch retries).
   Each publisher is started, SIGKILLed once watch has scored some of its clips, started again,
   and left to play; then watch gets SIGTERM.
2. fast: udp://127.0.0.1:5702 sent at 60x real time to a watch that scores one clip at a time.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVE = str(ROOT / "tests" / "streamserve.py")


def lines(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def wait_for(path: Path, pred, timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred(lines(path)):
            return True
        time.sleep(0.1)
    return False


def scored(stream: str, conn: int, n: int):
    return lambda ls: sum(1 for l in ls if l.get("stream") == stream and l["event"] == "score"
                          and l["conn"] == conn) >= n


def publish(video: str, url: str, speed: float = 1.0, loops: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SERVE, video, url, "--speed", str(speed), "--loops", str(loops)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def watch(ckpt: str, out: Path, sources: list, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.watch", *sources, "--checkpoint", ckpt,
                             "--jsonl", str(out), "--device", "cpu", "--stall-timeout", "1.5",
                             "--open-timeout", "3", "--backoff", "0.2", "--max-backoff", "1", *flags],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".log"), "w"))


def main() -> None:
    ckpt, video, work, result = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    res: dict = {}

    # 1. two streams, each publisher killed mid-way and restarted
    out = work / "restart.jsonl"
    udp, http = "udp://127.0.0.1:5700", "http://127.0.0.1:5701/live.ts"
    (work / "sources.txt").write_text(f"udp {udp}\nhttp {http}\n")
    w = watch(ckpt, out, ["--sources", str(work / "sources.txt")])
    wait_for(out, lambda ls: any(l["event"] == "retry" and l["stream"] == "http" for l in ls), 60)
    pubs = {"udp": publish(video, udp, loops=20), "http": publish(video, http, loops=20)}
    for name in ("udp", "http"):
        ok = wait_for(out, scored(name, 1, 3))
        res[f"{name}_first"] = ok
        pubs[name].kill()                                  # mid-way, no goodbye
        pubs[name].wait()
    time.sleep(3)                                          # stall detected, retries with backoff
    for name, url in (("udp", udp), ("http", http)):
        pubs[name] = publish(video, url, loops=20)
    for name in ("udp", "http"):
        res[f"{name}_second"] = wait_for(out, scored(name, 2, 3))
    w.send_signal(signal.SIGTERM)
    try:
        w.wait(timeout=60)
    except subprocess.TimeoutExpired:
        w.kill()
    for p in pubs.values():
        p.kill()
        p.wait()
    res["restart_rc"] = w.returncode
    res["restart"] = lines(out)
    res["restart_log"] = out.with_suffix(".log").read_text()[-3000:]

    # 2. a stream faster than the model
    out = work / "fast.jsonl"
    url = "udp://127.0.0.1:5702"
    t0 = time.monotonic()
    w = watch(ckpt, out, [url], "--max-pending", "1", "--batch-size", "1")
    wait_for(out, lambda ls: any(l["event"] == "retry" for l in ls), 60)   # model loaded, reader up
    p = publish(video, url, speed=60, loops=60)            # 9600 frames at 960 fps: 60 clips a second
    p.wait(timeout=300)
    time.sleep(3)
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=60)
    res["fast_wall_s"] = time.monotonic() - t0
    res["fast_rc"] = w.returncode
    res["fast"] = lines(out)
    res["fast_log"] = out.with_suffix(".log").read_text()[-3000:]
    result.write_text(json.dumps(res))


if __name__ == "__main__":
    main()
