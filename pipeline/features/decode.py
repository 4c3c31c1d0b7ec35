"""Stage 1 decoding side: one video -> a stream of uint8 clip batches, in this process or in
decode worker processes that feed a bounded queue.

Messages (what the model side consumes):
    ("clips", vid, (B, 16, H, W, 3) uint8)*  then  ("end", vid, info)  or  ("error", vid, message)

Decode workers die with their parent: on Linux each asks the kernel for SIGKILL when the parent
exits (``prctl(PR_SET_PDEATHSIG)``), and every worker also checks its parent's pid while it waits
on the queues, so a main process killed by SIGTERM or SIGKILL leaves no worker behind.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

from pipeline.features.video import (CLIP_LEN, DEFAULT_IMAGE_FPS, FrameStream, VideoError, iter_clip_batches,
                                     iter_clips)

log = logging.getLogger("pipeline.extract")

#: Seconds without a message from any decode worker after which the workers count as stuck (a clip
#: batch takes well under a second to decode; a slow disk or a huge frame a few seconds).
STALL_S = 300.0

#: A decode stopping before this fraction of the frames the header announces is a truncated file.
TRUNCATED_BELOW = 0.9


def decode_messages(vid: int, path: str, cfg: Dict[str, Any]) -> Iterator[tuple]:
    """Decode one video into messages for the model side (never raises for a bad video).

    cfg: short_side, crop_size, tail, batch_size, threads, image_fps (frame folders). The final
    info's ``status`` is "partial" when decoding stopped on an error after some frames, when far
    fewer frames decoded than the header announces (a truncated file), or when the video is shorter
    than one clip (its only clip is mostly padding); ``error`` then says why. A display rotation
    that could not be applied is a ``warning``. ``times`` (each frame's time in seconds) is in the
    info only for a variable frame rate (:func:`variable_rate`); otherwise frame i is at i / fps.
    """
    t0 = time.time()
    stream = FrameStream(path, short_side=cfg["short_side"], threads=cfg.get("threads", 0),
                         image_fps=cfg.get("image_fps") or DEFAULT_IMAGE_FPS)
    n = 0
    try:
        for batch in iter_clip_batches(iter_clips(iter(stream), cfg["tail"]), cfg["batch_size"]):
            if n == 0:
                h, w = batch.shape[2:4]
                if min(h, w) < cfg["crop_size"]:
                    raise VideoError(f"{path}: frames {w}x{h} after resizing are smaller "
                                     f"than the crop {cfg['crop_size']}")
            n += len(batch)
            yield ("clips", vid, batch)
    except VideoError as exc:
        yield ("error", vid, str(exc))
        return
    except Exception as exc:  # anything else from FFmpeg / numpy: report, never crash
        yield ("error", vid, f"{path}: {type(exc).__name__}: {exc}")
        return
    if n == 0:
        yield ("error", vid, f"{path}: {stream.frames} frames, fewer than {CLIP_LEN}: "
                             f"no clip with --tail {cfg['tail']}")
        return
    src_w, src_h = stream.src_size or (0, 0)
    error = stream.error
    if error is None and stream.truncated(TRUNCATED_BELOW):
        error = (f"{path}: decoded {stream.frames} frames, the header announces about "
                 f"{stream.frames_expected}: truncated file")
    if error is None and stream.frames < CLIP_LEN:
        error = (f"{path}: only {stream.frames} frame(s), shorter than one {CLIP_LEN}-frame clip: "
                 f"its one clip is mostly padding, so its features (and any score) mean little")
    vfr = variable_rate(stream.times, stream.fps)
    info = dict(video=Path(path).stem, path=str(path), frames=stream.frames,
                fps=round(stream.fps, 6), clips=n, width=src_w, height=src_h,
                status="partial" if error else "ok", error=error,
                frames_expected=stream.frames_expected, vfr=vfr,
                duration_s=round(video_duration(stream.times, stream.fps), 6),
                rotation=stream.rotation, rotation_applied=stream.rotation_applied,
                decode_s=round(time.time() - t0, 3))
    if stream.frame_folder:
        info.update(frame_folder=True, fps_source="--fps (images carry no timestamps)")
    if vfr:
        info["times"] = stream.times
    warnings = [stream.warning] if stream.warning else []
    if not stream.rotation_applied:
        warnings.append(f"{path}: display matrix (rotation {stream.rotation} degrees, or a mirror) "
                        f"not applied: frames are used as stored")
    if warnings:
        info["warning"] = "; ".join(warnings)
    yield ("end", vid, info)


def variable_rate(times, fps: float) -> bool:
    """True when some frame's timestamp is more than a quarter of a frame period away from
    ``frame / fps`` (a variable frame rate, or a gap in the stream)."""
    if len(times) < 2 or not fps:
        return False
    import numpy as np

    t = np.asarray(times, np.float64)
    return bool(np.abs(t - np.arange(len(t)) / fps).max() > 0.25 / fps)


def video_duration(times, fps: float) -> float:
    """Seconds from the first frame to the end of the last one (its period: the last step, else 1/fps)."""
    if not len(times):
        return 0.0
    last = times[-1] - times[-2] if len(times) > 1 else 0.0
    if fps and (last <= 0 or len(times) < 2):
        last = 1.0 / fps
    return float(times[-1] + last)


# ----------------------------------------------------------------------------- worker processes

def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _put(q, item, parent: int) -> None:
    """Put on a bounded queue, giving up (exit) when the parent process is gone."""
    while True:
        try:
            q.put(item, timeout=1.0)
            return
        except queue.Full:
            if os.getppid() != parent:
                os._exit(1)


def _worker_main(wid: int, parent: int, paths: Sequence[str], tasks, out, cfg: Dict[str, Any]) -> None:
    """Decode worker: take video indices from ``tasks`` until None, send their messages."""
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the main process handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            vid = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                os._exit(1)
            continue
        if vid is None:
            break
        _put(out, ("start", vid, wid), parent)
        for msg in decode_messages(vid, paths[vid], cfg):
            _put(out, msg, parent)
    _put(out, ("worker-done", -1, wid), parent)


class DecodePool:
    """Messages for a list of videos: decoded in this process (workers=0) or by worker processes.

    Worker processes feed a bounded queue (``queue_size`` messages), so decoding runs ahead of
    the model by at most that many clip batches. A worker that dies (crash in FFmpeg, OOM kill)
    fails its current video and is replaced. Nothing waits forever: when no worker sends anything
    for ``stall_s`` seconds, the workers are stopped, the videos they were decoding fail with that
    reason, and the videos not started yet are decoded in this process; the same happens when the
    operating system refuses to start a worker (fork or spawn failing).

    Workers are spawned (a fresh interpreter: 0.2 s and 30 MB to import what a worker needs), never
    forked: a child forked from this process inherits the locks of its threads (the network
    runtime's thread pools, FFmpeg's) held by threads that do not exist in the child. Forked
    workers hung that way behind OpenVINO and onnxruntime, and with PyAV 18.1.1 behind this
    process's own earlier decoding (in ``frame.reformat``) even on the torch runtime.
    """

    def __init__(self, paths: Sequence[str], order: Sequence[int], cfg: Dict[str, Any],
                 workers: int, queue_size: int, stall_s: float = STALL_S):
        self.paths, self.order, self.cfg, self.workers = list(paths), list(order), cfg, workers
        self.queue_size = queue_size
        self.stall_s = stall_s
        self.procs: Dict[int, Any] = {}
        self.warnings: List[str] = []   # why the pool fell back to decoding in this process

    def __iter__(self) -> Iterator[tuple]:
        if self.workers <= 0:
            yield from self._in_process(self.order)
            return
        try:
            yield from self._with_workers()
        finally:
            self.close()

    def _in_process(self, order: Sequence[int]) -> Iterator[tuple]:
        for vid in order:
            yield from decode_messages(vid, self.paths[vid], self.cfg)

    def _fall_back(self, why: str, remaining: set, current: Dict[int, int]) -> Iterator[tuple]:
        """Stop the workers; fail the videos they had begun; decode the others in this process."""
        self.warnings.append(why)
        log.warning("%s: decoding the remaining videos in this process", why)
        self.close()
        begun = set(current.values()) & remaining
        for vid in sorted(begun, key=self.order.index):
            yield ("error", vid, f"{self.paths[vid]}: {why}")
        yield from self._in_process([v for v in self.order if v in remaining - begun])

    def _with_workers(self) -> Iterator[tuple]:
        ctx = mp.get_context("spawn")
        tasks = ctx.Queue()
        out = ctx.Queue(maxsize=self.queue_size)
        for vid in self.order:
            tasks.put(vid)
        nworkers = min(self.workers, max(1, len(self.order)))
        for _ in range(nworkers):
            tasks.put(None)
        parent = os.getpid()
        current: Dict[int, int] = {}      # worker -> video it decodes
        remaining = set(self.order)       # videos without a final message yet
        done_workers = set()

        def start(wid: int) -> None:
            p = ctx.Process(target=_worker_main, args=(wid, parent, self.paths, tasks, out, self.cfg),
                            daemon=True, name=f"decode-{wid}")
            p.start()
            self.procs[wid] = p

        try:
            for wid in range(nworkers):
                start(wid)
        except OSError as exc:
            yield from self._fall_back(f"could not start a decode worker ({exc})", remaining, current)
            return
        last_message = time.monotonic()
        while remaining:
            try:
                msg = out.get(timeout=1.0)
            except queue.Empty:
                if time.monotonic() - last_message > self.stall_s:
                    yield from self._fall_back(f"decode workers sent nothing for {self.stall_s:.0f} s "
                                               f"(stuck)", remaining, current)
                    return
                for wid, p in list(self.procs.items()):
                    if wid in done_workers or p.is_alive():
                        continue
                    vid = current.pop(wid, None)
                    if vid is not None and vid in remaining:
                        remaining.discard(vid)
                        yield ("error", vid, f"{self.paths[vid]}: decoder process died "
                                             f"(exit code {p.exitcode})")
                    done_workers.add(wid)
                    if remaining and not tasks.empty():
                        try:
                            start(max(self.procs) + 1)
                        except OSError as exc:
                            yield from self._fall_back(f"could not start a decode worker ({exc})",
                                                       remaining, current)
                            return
                if all(not p.is_alive() for p in self.procs.values()) and out.empty():
                    for vid in sorted(remaining):
                        yield ("error", vid, f"{self.paths[vid]}: never decoded "
                                             f"(decoder processes exited)")
                    remaining.clear()
                continue
            last_message = time.monotonic()
            kind, vid, payload = msg
            if kind == "start":
                current[payload] = vid
                continue
            if kind == "worker-done":
                done_workers.add(payload)
                continue
            if kind in ("end", "error"):
                remaining.discard(vid)
                current = {w: v for w, v in current.items() if v != vid}
            yield msg

    def close(self) -> None:
        for p in self.procs.values():
            p.join(timeout=0.5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
            if p.is_alive():   # a worker stuck with SIGTERM blocked
                p.kill()
                p.join(timeout=2)
