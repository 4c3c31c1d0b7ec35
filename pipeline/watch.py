"""Live detection on camera streams: scores while the footage arrives, with bounded latency and memory.

    python -m pipeline.watch rtsp://cam.local/stream1 --checkpoint runs/ucf
    python -m pipeline.watch udp://0.0.0.0:5600 http://cam2/live.ts --checkpoint runs/ucf --jsonl live.jsonl
    python -m pipeline.watch --sources cameras.txt --checkpoint runs/ucf --on-alert ./notify.sh --save-clips alerts/
    python -m pipeline.watch recording.mp4 --realtime --checkpoint runs/ucf      # a file at its own pace

Per stream (``pipeline.stream``: one reader thread each, PyAV, reconnects): rolling 16-frame clips ->
I3D features with the extractor the checkpoint was trained on (read from its ``extractor`` record,
exactly as ``pipeline.detect``) -> the model over a **causal window**: the features of the stream's
last ``--window`` clips (default 32) form one graph, the model runs on it, and the *newest* clip's
score is reported (:class:`CausalWindow`). A clip's score never uses later footage, and the window
bounds the graph (memory and time per clip are constant). Offline scoring sees the whole video; the
AUC this costs is measured in bench/RESULTS.md ("Watch a camera"); :func:`causal_scores` computes the
same causal scores from a video's features offline.

Output: JSON lines, line-buffered, on stdout or ``--jsonl FILE`` (appended). Every line has
``event`` and ``stream``:

* ``score``: one per clip: ``conn`` (connection number), ``clip``, ``frame`` (first frame, counted
  from the connection's start), ``t`` / ``t_end`` (stream time of its first frame / end of its last,
  from the frames' timestamps), ``score`` (full precision: rounding would tie the many scores a
  trained model puts within 1e-6 of 0 or 1, and cost AUC), ``latency_s`` (last frame decoded -> score computed),
  ``wall`` (UTC).
* ``interval_open`` / ``interval_close``: an anomalous interval, found with ``pipeline.detect``'s
  :func:`~pipeline.detect.find_intervals` rules (``--threshold``, ``--merge-gap``, ``--min-duration``):
  opened as soon as a run of frames at or above the threshold lasts ``--min-duration``, closed when
  ``--merge-gap`` seconds below it have followed (nothing later could join it), when the connection
  ends (``cut``), or at shutdown. Fields as detect's intervals CSV (``start_frame`` ... ``mean_score``)
  with ``start_s``/``end_s`` in stream time; ``clip_file`` with ``--save-clips``.
* ``connected``, ``disconnected``, ``retry``, ``gap`` (a reconnect: last stream time before, first
  after, wall seconds lost), ``drop`` (a clip dropped because scoring fell behind), ``error``,
  ``end`` (per stream at the end, with its counts and the latency median and maximum over its
  last 1000 clips).

Faults: see ``pipeline.stream``. SIGINT and SIGTERM stop the readers, close open intervals, finish
alert clips and flush the output; the exit code is then 0. Exit code 2: nothing could run (bad
flags, checkpoint); 1: a stream ended on an error.
"""
from __future__ import annotations

import argparse
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

#: When this module was loaded: for ``python -m pipeline.watch``, about when the process started, so
#: that ``--duration`` counts the start-up (torch, the model) too.
LOADED = time.monotonic()

from pathlib import Path  # noqa: E402
from typing import Any, Deque, Dict, List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .cli import HelpFormatter, check_device, user_message
from .detect import (DEFAULT_MERGE_GAP, DEFAULT_MIN_DURATION, DEFAULT_THRESHOLD, EXTRACTOR_FLAGS, RUNTIME_FLAGS,
                     CheckpointError, add_extractor_flags, check_extractor, find_intervals, resolve_extractor)
from .evaluate import load_model, score_clips
from .metrics import CLIP_LEN
from .video import coverage_text
from . import stream as S

DEFAULT_WINDOW = 32             # clips in the causal window
DEFAULT_MAX_INTERVAL = 600.0    # seconds: longer intervals are closed and reopened (bounded memory)


# ----------------------------------------------------------------------------- causal scores

class CausalWindow:
    """The model over the last ``window`` clips of one stream; the newest clip's score.

    ``push(feat)``: feat (crops, D) -> score of that clip, from one graph over the window's clips
    (crops averaged, as :func:`pipeline.evaluate.score_clips`). ``reset()`` at a gap.
    """

    def __init__(self, model, window: int = DEFAULT_WINDOW, device: torch.device | str = "cpu"):
        if window < 1:
            raise ValueError(f"--window must be >= 1, got {window}")
        self.model, self.window, self.device = model, window, device
        self.feats: Deque[np.ndarray] = collections.deque(maxlen=window)

    def push(self, feat: np.ndarray) -> float:
        self.feats.append(np.asarray(feat, np.float32))
        return float(score_clips(self.model, np.stack(self.feats), self.device)[-1])   # (W, crops, D) -> newest

    def reset(self) -> None:
        self.feats.clear()


def causal_scores(model, feats: np.ndarray, window: int = DEFAULT_WINDOW,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """Offline, the scores watch gives live: feats (clips, crops, D) -> (clips,) float64, clip t
    scored by the model on clips max(0, t-window+1) .. t (:class:`CausalWindow`)."""
    w = CausalWindow(model, window, device)
    return np.array([w.push(f) for f in feats], np.float64)


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
    """Score clips from a :class:`pipeline.stream.Hub` with one shared model (see the module doc)."""

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
    from .extract import FeatureExtractor
    from .i3d import WeightsError

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
    them. Sizes come from each source's first frame (:func:`pipeline.stream.probe_frame_sizes`);
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


def watch(sources: Sequence[tuple], checkpoint: str, jsonl: Optional[str] = None, window: int = DEFAULT_WINDOW,
          threshold: float = DEFAULT_THRESHOLD, min_duration: float = DEFAULT_MIN_DURATION,
          merge_gap: float = DEFAULT_MERGE_GAP, max_interval: float = DEFAULT_MAX_INTERVAL,
          realtime: bool = False, device: str = "auto", batch_size: int = 4, max_pending: int = 2,
          open_timeout: float = S.DEFAULT_OPEN_TIMEOUT, stall_timeout: float = S.DEFAULT_STALL_TIMEOUT,
          backoff: float = S.DEFAULT_BACKOFF, max_backoff: float = S.DEFAULT_MAX_BACKOFF,
          max_retries: Optional[int] = None, on_alert: Optional[str] = None, save_clips: Optional[str] = None,
          save_before: float = 5.0, save_after: float = 5.0, extractor_flags: Optional[dict] = None,
          quiet: bool = False, duration: Optional[float] = None, started: Optional[float] = None) -> dict:
    """Watch ``sources`` ([(name, source)], see :func:`pipeline.stream.name_sources`) until every stream
    has ended, a signal arrives or ``duration`` seconds have passed; returns per-stream counts.

    ``duration`` is wall-clock time from this call (or from ``started``, a ``time.monotonic()``): watch returns within about a second of it (GRACE_S)
    whatever the sources do; a reader still blocked then (opening, a silent source, a reconnect wait)
    is left behind and its unfinished clip is not scored; the end rows and the last line say so."""
    t_start = time.monotonic() if started is None else started
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
    check_device(device)                                    # before the checkpoint and any output
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
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
        from .alertclips import AlertRecorder
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
        while stop.signal is None and not out.broken and not (t_end and time.monotonic() > t_end):
            items = hub.take(batch_size, timeout=0.2 if t_end is None else
                             max(0.0, min(0.2, t_end - time.monotonic())))
            if items:
                watcher.handle(items)
            elif hub.done():
                break
            alert.reap()
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
            st = watcher.states.get(r.stream)
            lat = sorted(st.latency) if st else []
            row = dict(event="end", stream=r.stream, reason=r.fatal or why, clips=r.stats.clips,
                       scored=st.scored if st else 0, dropped=r.stats.dropped, frames=r.stats.frames,
                       connections=r.stats.connections, gaps=r.stats.gaps, intervals=st.intervals if st else 0,
                       latency_p50_s=round(lat[len(lat) // 2], 4) if lat else None,
                       latency_max_s=round(lat[-1], 4) if lat else None)
            if r.stream in abandoned:
                row["unfinished"] = "still opening or reading when the time ran out; its last partial clip is not scored"
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


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.watch",
        description="Live anomaly scores for camera streams (RTSP, RTMP, HTTP(S), UDP/MPEG-TS, SRT URLs, "
                    "/dev/videoN, or a file): one JSON line per 16-frame clip, anomalous intervals opened and "
                    "closed live, reconnects with backoff, whole clips dropped when scoring falls behind. "
                    "Scores are causal: the model runs on the last --window clips, the newest clip's score "
                    "is reported.",
        formatter_class=HelpFormatter)
    p.add_argument("sources", nargs="*", help="stream URLs, devices or files")
    p.add_argument("--sources", dest="sources_file", default=None, metavar="FILE",
                   help="file with one source a line ('URL' or 'NAME URL'; # comments)")
    p.add_argument("--checkpoint", required=True,
                   help="run directory (best.pt if validation-selected, else model.pt) or checkpoint file")
    p.add_argument("--jsonl", default=None, metavar="FILE", help="append the JSON lines to this file instead of stdout")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help="causal window: the model sees a stream's last this many clips")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="a frame is anomalous when its score >= this")
    p.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION,
                   help="an interval opens once it lasts this many seconds")
    p.add_argument("--merge-gap", type=float, default=DEFAULT_MERGE_GAP,
                   help="join intervals separated by less than this many seconds (an interval closes after this "
                        "long below the threshold)")
    p.add_argument("--max-interval", type=float, default=DEFAULT_MAX_INTERVAL,
                   help="close (and reopen) intervals longer than this many seconds, bounding memory")
    p.add_argument("--realtime", action="store_true",
                   help="play files at their own pace, as a camera would (then clips are dropped when scoring "
                        "falls behind); without it a file is a replay scored completely, as fast as possible")
    p.add_argument("--on-alert", default=None, metavar="CMD",
                   help="shell command run on every interval_open / interval_close with its JSON line on stdin")
    p.add_argument("--save-clips", default=None, metavar="DIR",
                   help="write the frames around each interval (what the model saw) to DIR/<stream>_<start>.mp4")
    p.add_argument("--save-before", type=float, default=5.0, help="seconds kept before an interval's start")
    p.add_argument("--save-after", type=float, default=5.0, help="seconds recorded after an interval's end")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=4, help="most clips (of all streams) per I3D forward")
    p.add_argument("--max-pending", type=int, default=2,
                   help="clips a live stream may have waiting; beyond that its oldest is dropped")
    p.add_argument("--open-timeout", type=float, default=S.DEFAULT_OPEN_TIMEOUT, help="seconds to open a network source")
    p.add_argument("--stall-timeout", type=float, default=S.DEFAULT_STALL_TIMEOUT,
                   help="seconds without data before a connection counts as stalled and is reopened")
    p.add_argument("--backoff", type=float, default=S.DEFAULT_BACKOFF, help="first reconnect delay, doubled each failure")
    p.add_argument("--max-backoff", type=float, default=S.DEFAULT_MAX_BACKOFF, help="longest reconnect delay")
    p.add_argument("--max-retries", type=int, default=None,
                   help="end a stream after this many failed reconnects in a row (default: retry forever)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run until "
                                                                   "the streams end or SIGINT/SIGTERM)")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr (the JSON lines still go out)")
    add_extractor_flags(p, precision_default="auto")     # live: bf16 where the CPU has it
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    flags = {k: getattr(a, k) for k in (*EXTRACTOR_FLAGS, *RUNTIME_FLAGS)}
    try:
        pairs = [(None, s) for s in a.sources]
        if a.sources_file:
            pairs += S.read_sources(a.sources_file)
        if not pairs:
            p.error("give at least one source (or --sources FILE)")
        res = watch(S.name_sources(pairs), a.checkpoint, a.jsonl, a.window, a.threshold, a.min_duration,
                    a.merge_gap, a.max_interval, a.realtime, a.device, a.batch_size, a.max_pending,
                    a.open_timeout, a.stall_timeout, a.backoff, a.max_backoff, a.max_retries, a.on_alert,
                    a.save_clips, a.save_before, a.save_after, flags, a.quiet, a.duration, started=LOADED)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    if res["signal"]:
        return 0
    return 1 if any(v["error"] for v in res["streams"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
