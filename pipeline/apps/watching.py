"""Live cameras (what ``python -m pipeline.watch`` runs): streams in, causal scores, intervals that
open and close as they happen, alerts, saved clips, one JSON line per event.
"""
from __future__ import annotations

import collections
import datetime as _dt
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Sequence

import numpy as np
import torch

from pipeline.scoring.causal import CausalWindow, DEFAULT_WINDOW
from pipeline.common.cli import check_device
from pipeline.scoring.timeline import (DEFAULT_MERGE_GAP, DEFAULT_MIN_DURATION, DEFAULT_THRESHOLD,
                                       find_intervals)
from pipeline.features.reproduce import CheckpointError, check_extractor, resolve_extractor
from pipeline.scoring.checkpoint import load_model
from pipeline.common.metrics import CLIP_LEN
from pipeline.features.video import coverage_text
from pipeline.apps import stream as S

DEFAULT_MAX_INTERVAL = 600.0    # seconds: longer intervals are closed and reopened (bounded memory)


# ----------------------------------------------------------------------------- live intervals

class IntervalTracker:
    """``find_intervals`` on a score that arrives in pieces, with bounded memory.

    Holds the per-frame scores since the last point where nothing can merge any more; a stretch
    of at least ``ceil(merge_gap * fps)`` frames below the threshold is such a point (find_intervals
    joins runs only across shorter gaps), so running find_intervals on the pieces between those
    points gives exactly its result on the whole score. ``push`` returns events: ``("open", iv)``
    once an interval has reached its minimum duration, ``("close", iv)`` once it is final.
    Frame numbers are absolute (since ``reset``); ``start_s``/``end_s`` are the frames' times.
    """

    def __init__(self, fps: float, threshold: float = DEFAULT_THRESHOLD, min_duration: float = DEFAULT_MIN_DURATION,
                 merge_gap: float = DEFAULT_MERGE_GAP, max_interval: float = DEFAULT_MAX_INTERVAL):
        self.fps, self.threshold, self.min_duration, self.merge_gap = fps, threshold, min_duration, merge_gap
        self.gap_frames = max(1, math.ceil(merge_gap * fps - 1e-9))
        self.max_frames = max(self.gap_frames + 1, int(max_interval * fps))
        self.reset()

    def reset(self, base: int = 0) -> None:
        self.scores: List[float] = []
        self.times: List[float] = []
        self.base = base               # absolute frame number of scores[0]
        self.opened: Optional[int] = None   # absolute start frame of the announced interval

    def push(self, scores: Sequence[float], times: Sequence[float]) -> List[tuple]:
        self.scores.extend(float(s) for s in scores)
        self.times.extend(float(t) for t in times)
        s = np.asarray(self.scores)
        above = s >= self.threshold
        if not above.any():
            return self._cut(len(s), [])
        # the end of the last run of >= gap_frames frames below the threshold
        below = np.concatenate([~above, [False]])
        edges = np.diff(np.concatenate([[0], below.astype(np.int8)]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)   # below runs [start, end)
        long = [(a, b) for a, b in zip(starts, ends) if b - a >= self.gap_frames]
        events: List[tuple] = []
        if long:
            cut = int(long[-1][1])
            events = self._cut(cut, self._final(s[:cut], 0))
            s = np.asarray(self.scores)
        if len(s) > self.max_frames:                    # an endless interval: close it, start another
            return events + self._cut(len(s), self._final(s, 0, split=True))
        ivs = self._intervals(s, 0)
        if ivs and self.opened != ivs[-1]["start_frame"]:
            self.opened = ivs[-1]["start_frame"]
            events.append(("open", ivs[-1]))
        return events

    def flush(self, reason: str) -> List[tuple]:
        """Close whatever is pending (end of a connection, shutdown): the frames so far are final."""
        s = np.asarray(self.scores)
        events = self._cut(len(s), self._final(s, 0, cut=reason)) if len(s) else []
        return events

    def _intervals(self, s: np.ndarray, offset: int) -> List[dict]:
        out = []
        for iv in find_intervals(s, self.fps, self.threshold, self.min_duration, self.merge_gap):
            a, b = iv["start_frame"] + offset, iv["end_frame"] + offset
            iv = dict(iv, start_frame=self.base + a, end_frame=self.base + b, peak_frame=self.base + offset + iv["peak_frame"],
                      start_s=round(self.times[a], 6), end_s=round(self.times[b] + 1.0 / self.fps, 6))
            out.append(iv)
        return out

    def _final(self, s: np.ndarray, offset: int, **extra) -> List[tuple]:
        events = []
        for iv in self._intervals(s, offset):
            if self.opened != iv["start_frame"]:
                events.append(("open", iv))
            events.append(("close", dict(iv, **{k: v for k, v in extra.items() if v})))
        return events

    def _cut(self, n: int, events: List[tuple]) -> List[tuple]:
        """Forget the first ``n`` frames (their intervals are final)."""
        if n:
            self.base += n
            del self.scores[:n], self.times[:n]
            if any(e == "close" for e, _ in events) or not self.scores:
                self.opened = None
        return events


# ----------------------------------------------------------------------------- outputs

def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: Seconds ``watch --duration`` may run past its duration while it stops readers and writes the end rows.
GRACE_S = 0.5


class JsonLines:
    """One JSON object a line, written and flushed under a lock (reader threads emit events too)."""

    def __init__(self, path: Optional[str] = None):
        self.lock = threading.Lock()
        self.path = path
        self.f = open(path, "a", buffering=1, encoding="utf-8") if path else sys.stdout
        self.counts: Dict[str, int] = collections.Counter()
        self.broken = False                      # the output pipe was closed: watch stops
        self.closed = False

    def write(self, obj: dict) -> None:
        line = json.dumps(obj, separators=(",", ":"))
        with self.lock:
            self.counts[obj.get("event", "?")] += 1
            if self.broken or self.closed:      # a reader left behind by --duration may still emit
                return
            try:
                self.f.write(line + "\n")
                self.f.flush()
            except BrokenPipeError:              # e.g. `watch ... | head`: the reader is gone; stop
                self.broken = True

    def close(self) -> None:
        with self.lock:
            self.closed = True
            try:
                self.f.flush()
            except BrokenPipeError:
                self.broken = True
            if self.path:
                self.f.close()
            elif self.broken:                        # no "Exception ignored" when Python flushes at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class AlertCommand:
    """``--on-alert CMD``: CMD (a shell command) runs for every interval event with its JSON on stdin.
    Never waited for while scoring; finished ones are reaped, running ones waited for at shutdown."""

    def __init__(self, cmd: Optional[str], log: JsonLines):
        self.cmd, self.log = cmd, log
        self.running: List[subprocess.Popen] = []

    def __call__(self, obj: dict) -> None:
        if not self.cmd:
            return
        self.reap()
        try:
            p = subprocess.Popen(self.cmd, shell=True, stdin=subprocess.PIPE)
            p.stdin.write((json.dumps(obj) + "\n").encode())
            p.stdin.close()
            self.running.append(p)
        except OSError as e:
            self.log.write(dict(event="error", stream=obj.get("stream"), error=f"--on-alert {self.cmd}: {e}"))

    def reap(self) -> None:
        self.running = [p for p in self.running if p.poll() is None]

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for p in self.running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.write(dict(event="error", stream=None, error=f"--on-alert {self.cmd}: still running "
                                                                      f"at exit (pid {p.pid}), left running"))


# ----------------------------------------------------------------------------- per stream

class StreamState:
    """The scorer's state for one stream: its causal window, interval tracker and counters."""

    def __init__(self, name: str, model, device, window: int, interval_args: dict):
        self.name = name
        self.causal = CausalWindow(model, window, device)
        self.interval_args = interval_args
        self.tracker: Optional[IntervalTracker] = None
        self.conn: Optional[int] = None
        self.next_clip = 0
        self.last_t: Optional[float] = None
        self.scored = 0
        self.intervals = 0
        self.latency: Deque[float] = collections.deque(maxlen=1000)

    def new_connection(self, clip: S.Clip) -> None:
        self.causal.reset()
        self.tracker = IntervalTracker(clip.fps, **self.interval_args)
        self.conn, self.next_clip, self.last_t = clip.conn, 0, None


class Watcher:
    """Score clips from a :class:`pipeline.apps.stream.Hub` with one shared model (see the module doc)."""

    def __init__(self, model, extractor, device, out: JsonLines, window: int = DEFAULT_WINDOW,
                 threshold: float = DEFAULT_THRESHOLD, min_duration: float = DEFAULT_MIN_DURATION,
                 merge_gap: float = DEFAULT_MERGE_GAP, max_interval: float = DEFAULT_MAX_INTERVAL,
                 batch_size: int = 4, alert: Optional[AlertCommand] = None, recorder=None):
        self.model, self.fx, self.device, self.out = model, extractor, device, out
        self.window, self.batch_size = window, batch_size
        self.interval_args = dict(threshold=threshold, min_duration=min_duration, merge_gap=merge_gap,
                                  max_interval=max_interval)
        self.alert = alert or AlertCommand(None, out)
        self.recorder = recorder
        self.states: Dict[str, StreamState] = {}

    def state(self, name: str) -> StreamState:
        if name not in self.states:
            self.states[name] = StreamState(name, self.model, self.device, self.window, self.interval_args)
        return self.states[name]

    def handle(self, items: List[Any]) -> None:
        """Score a batch of items taken from the hub (clips of several streams, breaks)."""
        clips = [x for x in items if isinstance(x, S.Clip)]
        feats: Dict[int, np.ndarray] = {}
        by_shape: Dict[tuple, List[int]] = collections.defaultdict(list)
        for i, c in enumerate(clips):
            by_shape[c.frames.shape].append(i)
        for idx in by_shape.values():                   # one I3D forward per frame size
            f = self.fx.features(np.stack([clips[i].frames for i in idx]))     # (B, crops, 2048)
            for j, i in enumerate(idx):
                feats[id(clips[i])] = f[j]
        for x in items:
            if isinstance(x, S.Break):
                self.end_connection(x.stream, x.reason)
            else:
                self.score(x, feats[id(x)])

    def score(self, clip: S.Clip, feat: np.ndarray) -> None:
        st = self.state(clip.stream)
        if st.conn != clip.conn:
            if st.tracker is not None:
                self.intervals(st, st.tracker.flush("new connection"))
            st.new_connection(clip)
        if clip.index > st.next_clip:                   # dropped clips: unscored frames count as 0
            missing = (clip.index - st.next_clip) * CLIP_LEN
            t0 = st.last_t if st.last_t is not None else float(clip.times[0]) - missing / clip.fps
            self.intervals(st, st.tracker.push(np.zeros(missing), t0 + np.arange(1, missing + 1) / clip.fps))
        score = st.causal.push(feat)
        done = time.monotonic()
        latency = done - clip.arrived
        st.latency.append(latency)
        st.scored += 1
        st.next_clip, st.last_t = clip.index + 1, float(clip.times[-1])
        n = CLIP_LEN - clip.padded
        self.out.write(dict(event="score", stream=clip.stream, conn=clip.conn, clip=clip.index,
                            frame=clip.first_frame, t=round(float(clip.times[0]), 6),
                            t_end=round(float(clip.times[n - 1]) + 1.0 / clip.fps, 6), score=score,
                            latency_s=round(latency, 4), wall=utc_now()))
        self.intervals(st, st.tracker.push(np.full(n, score), clip.times[:n]))
        if self.recorder is not None:
            self.recorder.scored(clip.stream, float(clip.times[n - 1]))

    def end_connection(self, name: str, reason: str) -> None:
        st = self.states.get(name)
        if st is None or st.tracker is None:
            return
        self.intervals(st, st.tracker.flush(reason))
        st.causal.reset()
        st.tracker, st.conn = None, None

    def intervals(self, st: StreamState, events: List[tuple]) -> None:
        for kind, iv in events:
            obj = dict(event=f"interval_{kind}", stream=st.name, conn=st.conn, **iv, wall=utc_now())
            if self.recorder is not None:
                obj["clip_file"] = self.recorder.interval(st.name, kind, iv)
            if kind == "open":
                st.intervals += 1
            self.out.write(obj)
            self.alert(obj)

    def shutdown(self, reason: str = "shutdown") -> None:
        for name in list(self.states):
            self.end_connection(name, reason)


# ----------------------------------------------------------------------------- run

class _Stop:
    """SIGINT / SIGTERM -> a flag the loop checks (the handlers only set it)."""

    def __init__(self):
        self.signal: Optional[str] = None

    def __call__(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name


def build_extractor(meta: dict, model, flags: dict, device, batch_size: int):
    """The FeatureExtractor the checkpoint's features came from (as pipeline.detect builds it)."""
    from pipeline.features.extractor import FeatureExtractor
    from pipeline.features.weights import WeightsError

    trained = meta.get("extractor")
    kw, notes = resolve_extractor(trained, flags)
    try:
        fx = FeatureExtractor(device=str(device), batch_size=batch_size, **kw)
    except (WeightsError, ValueError) as e:
        raise CheckpointError(f"cannot build the feature extractor the checkpoint needs ({e})") from e
    check_extractor(trained, fx.meta)
    if fx.meta.get("feature_dim", model.in_dim) != model.in_dim:
        raise CheckpointError(f"{meta['path']}: the model expects {model.in_dim}-d features, the extractor "
                              f"gives {fx.meta.get('feature_dim')}")
    if fx.meta.get("random_init"):
        notes.append("features come from an I3D with RANDOM weights (as this checkpoint was trained); "
                     "fine for the demo and tests, not for real footage")
    return fx, notes


#: Longest wait for the sources' first frames before the streams start (the warm-up's probe).
WARM_UP_PROBE_S = 5.0


def warm_up(fx, sources: Sequence[str], fm: dict, open_timeout: float, t_start: float,
            duration: Optional[float], log) -> None:
    """Run the network once on each frame size the sources will give, before any reader starts:
    the runtime's first call for a shape (OpenVINO: convert and compile, 10-60 s on 2 cores; torch:
    a few seconds) would otherwise hold up the first clips of a live camera and drop the ones behind
    them. Sizes come from each source's first frame (:func:`pipeline.apps.stream.probe_frame_sizes`);
    a source that gives none within the probe's wait is warmed up on its first clip instead."""
    wait = WARM_UP_PROBE_S if duration is None else \
        max(0.0, min(WARM_UP_PROBE_S, t_start + duration - time.monotonic()))
    t0 = time.monotonic()
    sizes = sorted(set(S.probe_frame_sizes(sources, fm["short_side"], wait, open_timeout).values()))
    for w, h in sizes:
        if duration is not None and time.monotonic() > t_start + duration:
            return
        t = time.monotonic()
        try:
            fx.features(np.zeros((1, CLIP_LEN, h, w, 3), dtype=np.uint8))
        except Exception as e:            # e.g. frames smaller than the crop: the stream reports it
            log(f"no warm-up for {w}x{h} frames ({type(e).__name__}: {e})")
            continue
        log(f"warmed up the network for {w}x{h} frames in {time.monotonic() - t:.1f} s")
    if not sizes:
        log(f"no first frame within {time.monotonic() - t0:.1f} s: the network warms up on the first clip")


def check_watch_args(sources: Sequence[tuple], threshold: float, min_duration: float, merge_gap: float,
                     window: int, batch_size: int, duration: Optional[float], device: str) -> torch.device:
    """Refuse bad settings and missing files before the checkpoint and any output; the torch device."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    if min_duration < 0 or merge_gap < 0:
        raise ValueError("--min-duration and --merge-gap must be >= 0")
    if window < 1 or batch_size < 1:
        raise ValueError("--window and --batch-size must be >= 1")
    if duration is not None and not duration > 0:
        raise ValueError(f"--duration must be > 0 seconds, got {duration:g}")
    for _, src in sources:
        if S.classify(src) == "file" and not Path(src.replace("file://", "")).exists():
            raise FileNotFoundError(f"{src}: no such file")
    check_device(device)
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


def score_streams(hub, watcher: "Watcher", alert: "AlertCommand", out: "JsonLines", stop: "_Stop",
                  batch_size: int, t_end: Optional[float]) -> None:
    """The scoring loop: take up to ``batch_size`` clips from the hub and score them, until a signal,
    a closed output, the end of every stream or ``t_end`` (a ``time.monotonic()``)."""
    while stop.signal is None and not out.broken and not (t_end and time.monotonic() > t_end):
        items = hub.take(batch_size, timeout=0.2 if t_end is None else
                         max(0.0, min(0.2, t_end - time.monotonic())))
        if items:
            watcher.handle(items)
        elif hub.done():
            break
        alert.reap()


def end_row(reader, st: Optional["StreamState"], why: str, abandoned: bool) -> dict:
    """A stream's ``end`` event: why it ended, clips cut / scored / dropped, gaps, latency."""
    lat = sorted(st.latency) if st else []
    row = dict(event="end", stream=reader.stream, reason=reader.fatal or why, clips=reader.stats.clips,
               scored=st.scored if st else 0, dropped=reader.stats.dropped, frames=reader.stats.frames,
               connections=reader.stats.connections, gaps=reader.stats.gaps, intervals=st.intervals if st else 0,
               latency_p50_s=round(lat[len(lat) // 2], 4) if lat else None,
               latency_max_s=round(lat[-1], 4) if lat else None)
    if abandoned:
        row["unfinished"] = "still opening or reading when the time ran out; its last partial clip is not scored"
    return row


def watch(sources: Sequence[tuple], checkpoint: str, jsonl: Optional[str] = None, window: int = DEFAULT_WINDOW,
          threshold: float = DEFAULT_THRESHOLD, min_duration: float = DEFAULT_MIN_DURATION,
          merge_gap: float = DEFAULT_MERGE_GAP, max_interval: float = DEFAULT_MAX_INTERVAL,
          realtime: bool = False, device: str = "auto", batch_size: int = 4, max_pending: int = 2,
          open_timeout: float = S.DEFAULT_OPEN_TIMEOUT, stall_timeout: float = S.DEFAULT_STALL_TIMEOUT,
          backoff: float = S.DEFAULT_BACKOFF, max_backoff: float = S.DEFAULT_MAX_BACKOFF,
          max_retries: Optional[int] = None, on_alert: Optional[str] = None, save_clips: Optional[str] = None,
          save_before: float = 5.0, save_after: float = 5.0, extractor_flags: Optional[dict] = None,
          quiet: bool = False, duration: Optional[float] = None, started: Optional[float] = None) -> dict:
    """Watch ``sources`` ([(name, source)], see :func:`pipeline.apps.stream.name_sources`) until every stream
    has ended, a signal arrives or ``duration`` seconds have passed; returns per-stream counts.

    ``duration`` is wall-clock time from this call (or from ``started``, a ``time.monotonic()``): watch returns within about a second of it (GRACE_S)
    whatever the sources do; a reader still blocked then (opening, a silent source, a reconnect wait)
    is left behind and its unfinished clip is not scored; the end rows and the last line say so."""
    t_start = time.monotonic() if started is None else started
    dev = check_watch_args(sources, threshold, min_duration, merge_gap, window, batch_size, duration, device)
    try:
        model, meta = load_model(checkpoint, dev)
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(str(e)) from e
    fx, notes = build_extractor(meta, model, dict(extractor_flags or {}), dev, batch_size)
    log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    fm = fx.meta
    log(f"checkpoint {meta['path']}; extractor {fm['profile']} "
        f"{'random weights' if fm.get('random_init') else fm.get('weights')}, {coverage_text(fm)} "
        f"from short side {fm['short_side']}; causal window {window} clips; device {dev}, "
        f"runtime {fm['runtime']} {fm['precision']}")
    for n in notes:
        log(f"note: {n}")

    warm_up(fx, [src for _, src in sources], fm, open_timeout, t_start, duration, log)
    out = JsonLines(jsonl)
    recorder = None
    if save_clips:
        from pipeline.apps.alertclips import AlertRecorder
        recorder = AlertRecorder(save_clips, save_before, save_after, min_duration, out)
    alert = AlertCommand(on_alert, out)
    hub = S.Hub(max_pending)
    readers = []
    for name, src in sources:
        readers.append(S.StreamReader(name, src, hub, out.write, fm["short_side"], fm["crop_size"] or 0, fm["tail"],
                                      realtime, open_timeout, stall_timeout, backoff, max_backoff, max_retries,
                                      on_frame=recorder.frame_hook(name) if recorder else None))
    watcher = Watcher(model, fx, dev, out, window, threshold, min_duration, merge_gap, max_interval,
                      batch_size, alert, recorder)
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    t_end = t_start + duration if duration else None
    for r in readers:
        r.start()
    try:
        score_streams(hub, watcher, alert, out, stop, batch_size, t_end)
    finally:
        timed_out = bool(t_end and time.monotonic() > t_end)
        failed = [r for r in readers if r.fatal]
        why = (f"signal {stop.signal}" if stop.signal else "output closed" if out.broken else
               f"--duration {duration:g} s reached" if timed_out else
               "end of streams" if not failed else
               f"every stream ended, {len(failed)} of {len(readers)} on an error")
        hub.stop()
        for r in readers:
            r.stop()
        for r in readers:                 # a reader blocked in a read returns within the stall timeout;
            left = stall_timeout + 1.0    # with --duration, no later than GRACE_S after it
            if t_end is not None:
                left = max(0.0, min(left, t_end + GRACE_S - time.monotonic()))
            r.join(timeout=left)
        abandoned = {r.stream for r in readers if r.is_alive()}
        watcher.shutdown(why)
        if recorder is not None:
            recorder.close()
        alert.close()
        result = {}
        for r in readers:
            row = end_row(r, watcher.states.get(r.stream), why, r.stream in abandoned)
            out.write(row)
            result[r.stream] = dict(row, error=r.fatal)
        out.close()
        for s, h in old.items():
            signal.signal(s, h)
    log(f"watch ended ({why}) after {time.monotonic() - t_start:.1f} s: "
        + "; ".join(f"{k}: {v['scored']} clips scored, {v['dropped']} dropped, {v['gaps']} gaps, "
                    f"{v['intervals']} intervals" + (f" (error: {v['error']})" if v["error"] else "")
                    + (" (still waiting for data: left unfinished)" if k in abandoned else "")
                    for k, v in result.items()))
    return dict(streams=result, signal=stop.signal)
