"""Live sources for ``pipeline.watch``: open a camera stream with PyAV, cut it into 16-frame clips in
a reader thread per stream, reconnect with backoff, and drop whole clips when scoring falls behind.

Sources (:func:`classify`): a URL (``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``srt://``,
``rtp://``, ``tcp://``), a V4L2 device (``/dev/video0``) or a file. Network sources are opened with
an open and a read timeout (PyAV's interrupt callback), RTSP over TCP; a device through FFmpeg's
``v4l2`` input.

Frames (as ``pipeline.features.video.FrameStream``, so that the pixels equal offline extraction's): RGB24,
short side resized to ``short_side`` with libswscale bilinear in one ``reformat``, the output size
fixed by a connection's first frame. Times are the frames' own presentation timestamps
(``frame.time``, seconds on the stream's clock); a frame without one gets the previous time plus
one frame period.

Each reader thread puts items on its own bounded queue in a :class:`Hub` shared with the scorer:

* :class:`Clip` -- 16 consecutive decoded frames of one connection, with their times and the
  monotonic time its last frame arrived (for the end-to-end latency);
* :class:`Break` -- the connection ended (stall, error, end of stream): the scorer closes open
  intervals and clears the stream's causal window; clips never span two connections, and a
  partial clip at a break is discarded (never padded or bridged).

Live sources never wait for the scorer: when a stream's queue is full the *oldest* waiting clip is
dropped (counted, and logged as a ``drop`` event), so the delay from a frame's arrival to its
score stays bounded by the queue length times the scoring time. A file read without ``--realtime``
is a replay: its reader waits for the scorer instead and nothing is dropped.

Reconnects: after a connection ends (or fails to open) a live source is reopened after a delay that
doubles from ``backoff`` up to ``max_backoff`` seconds (reset by the first frame of a connection);
``max_retries`` failed attempts in a row end the stream (None: retry forever). The gap is logged
(``gap`` event: the last stream time and wall time before it, the first after it) and is never
bridged: the next connection starts new clips, a new causal window and a new interval tracker.
"""
from __future__ import annotations

import collections
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

import numpy as np

from pipeline.features.video import CLIP_LEN, resized_size

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp")
DEFAULT_OPEN_TIMEOUT = 10.0     # seconds to open a network source
DEFAULT_STALL_TIMEOUT = 5.0     # seconds without data before a live connection counts as stalled
DEFAULT_BACKOFF = 0.5           # first reconnect delay (s), doubled after every failed attempt
DEFAULT_MAX_BACKOFF = 30.0


def classify(source: str) -> str:
    """'network' (a URL), 'device' (/dev/videoN) or 'file'."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", source)
    if m:
        if m.group(1).lower() in NETWORK_SCHEMES:
            return "network"
        if m.group(1).lower() == "file":
            return "file"
        raise ValueError(f"{source}: unsupported scheme {m.group(1)}:// (use one of "
                         f"{', '.join(s + '://' for s in NETWORK_SCHEMES)}, a /dev/videoN device or a file)")
    if source.startswith("/dev/video"):
        return "device"
    return "file"


def stream_name(source: str) -> str:
    """A short name for a source: a file's stem, a device's name, a URL's host, port and path."""
    kind = classify(source)
    if kind == "file":
        return Path(source.replace("file://", "")).stem
    if kind == "device":
        return Path(source).name
    rest = re.sub(r"^[a-zA-Z0-9+.-]+://", "", source).split("?")[0]
    rest = re.sub(r"^[^@/]*@", "", rest)                      # no credentials in names
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rest).strip("_.") or "stream"


def open_source(source: str, kind: str, open_timeout: float, stall_timeout: float):
    """An av InputContainer for ``source``; network and device sources get timeouts."""
    import av

    if kind == "file":
        path = source.replace("file://", "")
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such file")
        return av.open(path)
    options: Dict[str, str] = {}
    fmt = None
    if kind == "device":
        fmt = "v4l2"
    elif source.lower().startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = "tcp"
    elif source.lower().startswith("udp://"):
        options.update(overrun_nonfatal="1", fifo_size="1000000")
    return av.open(source, format=fmt, options=options, timeout=(open_timeout, stall_timeout))


#: Sources that a second, short connection does not disturb (a UDP port or a capture device is held
#: by whoever opens it first, so those are not probed).
PROBE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "srt://")


def probe_safe(source: str) -> bool:
    """True for a file or a server the reader connects to: opening it once more is harmless."""
    return classify(source) == "file" or source.lower().startswith(PROBE_SCHEMES)


def probe_frame_sizes(sources: Sequence[str], short_side: int, wait: float,
                      open_timeout: float = DEFAULT_OPEN_TIMEOUT) -> Dict[str, tuple]:
    """The (width, height) each source's frames will have after the resize, from its first frame:
    {source: (w, h)} for those that gave a frame within ``wait`` seconds (all probed at once, each in
    a thread of its own; a source that is silent, unreachable or unreadable is left out: its reader
    reports it; UDP and device sources are not probed, see :func:`probe_safe`). Used to compile the
    network before the streams start."""
    found: Dict[str, tuple] = {}

    def probe(src: str) -> None:
        try:
            with open_source(src, classify(src), min(open_timeout, wait), min(open_timeout, wait)) as c:
                frame = next(c.decode(c.streams.video[0]))
                found[src] = (frame.width, frame.height) if not short_side else \
                    resized_size(frame.width, frame.height, short_side)
        except Exception:
            pass

    threads = [threading.Thread(target=probe, args=(s,), daemon=True) for s in dict.fromkeys(sources)
               if probe_safe(s)]
    for t in threads:
        t.start()
    end = time.monotonic() + wait
    for t in threads:
        t.join(timeout=max(0.0, end - time.monotonic()))
    return dict(found)


@dataclass
class Clip:
    """16 consecutive frames of one connection of one stream."""
    stream: str
    conn: int                 # connection number (1, 2, ...)
    index: int                # clip number within the connection (0, 1, ...)
    first_frame: int          # frame number of frames[0] within the connection
    frames: np.ndarray        # (16, H, W, 3) uint8
    times: np.ndarray         # (16,) float64, stream time of each frame (s)
    fps: float
    arrived: float            # time.monotonic() when the last frame was decoded (or released, --realtime)
    padded: int = 0           # frames repeated at the end of a file (tail 'pad')


@dataclass
class Break:
    """The connection ``conn`` of a stream ended; ``reason`` says why, ``final`` when no other follows."""
    stream: str
    conn: int
    reason: str
    final: bool = False


@dataclass
class StreamStats:
    clips: int = 0            # clips cut
    dropped: int = 0          # clips dropped because scoring was behind
    frames: int = 0
    connections: int = 0
    gaps: int = 0


class Hub:
    """The bounded queues between reader threads and the scorer (one per stream), one lock for all.

    ``put`` from a reader: a file replay waits for room; a live stream drops its oldest waiting
    clip instead (``on_drop(clip)`` is called). ``take`` from the scorer: up to ``n`` items,
    round-robin over the streams, each stream's items in order.
    """

    def __init__(self, max_pending: int = 2):
        if max_pending < 1:
            raise ValueError(f"--max-pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self.cond = threading.Condition()
        self.queues: Dict[str, Deque] = {}
        self.finished: set = set()
        self.stopping = False
        self._rr = 0

    def add(self, name: str) -> None:
        self.queues[name] = collections.deque()

    def put(self, name: str, item, block: bool, on_drop: Callable[[Clip], None]) -> None:
        with self.cond:
            q = self.queues[name]
            if isinstance(item, Clip):
                if block:
                    while self._clips(q) >= self.max_pending and not self.stopping:
                        self.cond.wait(0.5)
                elif self._clips(q) >= self.max_pending:
                    for old in q:                       # the oldest waiting clip (never a Break)
                        if isinstance(old, Clip):
                            q.remove(old)
                            on_drop(old)
                            break
            q.append(item)
            self.cond.notify_all()

    @staticmethod
    def _clips(q) -> int:
        return sum(isinstance(x, Clip) for x in q)

    def finish(self, name: str) -> None:
        with self.cond:
            self.finished.add(name)
            self.cond.notify_all()

    def take(self, n: int, timeout: float) -> List[Any]:
        """Up to ``n`` items (Clip / Break), waiting at most ``timeout`` s for the first."""
        with self.cond:
            if not any(self.queues.values()):
                self.cond.wait(timeout)
            names = list(self.queues)
            out: List[Any] = []
            while len(out) < n and any(self.queues[k] for k in names):
                for i in range(len(names)):
                    k = names[(self._rr + i) % len(names)]
                    if self.queues[k] and len(out) < n:
                        out.append(self.queues[k].popleft())
                self._rr = (self._rr + 1) % max(1, len(names))
            if out:
                self.cond.notify_all()                  # room for waiting file replays
            return out

    def done(self) -> bool:
        """Every reader has finished and every queue is empty."""
        with self.cond:
            return len(self.finished) == len(self.queues) and not any(self.queues.values())

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()


class StreamReader(threading.Thread):
    """Read one source in its own thread: connect, decode, cut clips, reconnect (see module doc).

    ``emit(dict)`` receives the stream's events (connected, gap, drop, disconnected, end, error),
    each with ``event`` and ``stream`` keys. ``on_frame(rgb, t)``, when given, sees every decoded
    frame (the --save-clips recorder).
    """

    def __init__(self, name: str, source: str, hub: Hub, emit: Callable[[dict], None],
                 short_side: int, crop_size: int, tail: str = "pad", realtime: bool = False,
                 open_timeout: float = DEFAULT_OPEN_TIMEOUT, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                 backoff: float = DEFAULT_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF,
                 max_retries: Optional[int] = None, on_frame: Optional[Callable[[np.ndarray, float], None]] = None,
                 clip_len: int = CLIP_LEN):
        super().__init__(name=f"watch-{name}", daemon=True)
        self.stream, self.source, self.hub, self.emit = name, source, hub, emit
        self.kind = classify(source)
        self.short_side, self.crop_size, self.tail = short_side, crop_size, tail
        self.realtime = realtime and self.kind == "file"
        self.block = self.kind == "file" and not realtime        # a replay waits; live drops
        self.open_timeout, self.stall_timeout = open_timeout, stall_timeout
        self.backoff, self.max_backoff, self.max_retries = backoff, max_backoff, max_retries
        self.on_frame, self.clip_len = on_frame, clip_len
        self.stats = StreamStats()
        self.stop_event = threading.Event()
        self.fatal: Optional[str] = None
        hub.add(name)

    # ------------------------------------------------------------------ thread

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:            # a bug or an unexpected library error: end this stream only
            self.fatal = f"{self.source}: {type(exc).__name__}: {exc}"
            self.emit(dict(event="error", stream=self.stream, error=self.fatal))
        finally:
            self.hub.put(self.stream, Break(self.stream, self.stats.connections, "end", final=True),
                         block=False, on_drop=self._dropped)
            self.hub.finish(self.stream)

    def _run(self) -> None:
        failures = 0
        last: Optional[dict] = None          # the previous connection's last frame: t, wall
        while not self.stop_event.is_set():
            try:
                container = open_source(self.source, self.kind, self.open_timeout, self.stall_timeout)
                if not container.streams.video:
                    container.close()
                    raise ValueError("no video stream")
            except Exception as exc:
                why = (f"no data within {self.open_timeout:g} s" if type(exc).__name__ == "ExitError"
                       else f"{type(exc).__name__}: {exc}")
                msg = f"{self.source}: cannot open ({why})"
                if self.kind == "file":
                    self.fatal = msg
                    self.emit(dict(event="error", stream=self.stream, error=msg))
                    return
                failures += 1
                if self.max_retries is not None and failures > self.max_retries:
                    self.fatal = f"{msg}; gave up after {self.max_retries} retries"
                    self.emit(dict(event="error", stream=self.stream, error=self.fatal))
                    return
                delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
                self.emit(dict(event="retry", stream=self.stream, attempt=failures, delay_s=round(delay, 3),
                               error=msg))
                self.stop_event.wait(delay)
                continue
            with container:
                got, reason, last = self._read(container, last)
            if got:
                failures = 0
            if self.kind == "file" or self.stop_event.is_set():
                return
            failures += 0 if got else 1
            if self.max_retries is not None and failures > self.max_retries:
                self.emit(dict(event="error", stream=self.stream,
                               error=f"{self.source}: no frames after {self.max_retries} retries; giving up"))
                return
            delay = min(self.max_backoff, self.backoff * 2 ** max(0, failures - 1))
            self.emit(dict(event="disconnected", stream=self.stream, conn=self.stats.connections, reason=reason,
                           retry_in_s=round(delay, 3)))
            self.stop_event.wait(delay)

    def _read(self, container, last: Optional[dict]):
        """Decode one connection; returns (got frames, why it ended, its last frame's t/wall)."""
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 0.0) or 25.0
        conn = None
        out_size = None
        buf = times = None
        n = 0                                # frames of this connection
        k = 0                                # frames in the current clip
        clip_index = 0
        prev_t: Optional[float] = None
        first_t = first_wall = None
        reason = "end of stream"
        decoded = container.decode(stream)
        while not self.stop_event.is_set():
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except Exception as exc:
                reason = self._why(exc)
                break
            t = frame.time
            if t is None or (prev_t is not None and t <= prev_t - 10.0):
                t = (prev_t + 1.0 / fps) if prev_t is not None else 0.0
            if self.realtime:                       # a file at its own pace
                if first_t is None:
                    first_t, first_wall = t, time.monotonic()
                wait = first_wall + (t - first_t) - time.monotonic()
                if wait > 0 and self.stop_event.wait(wait):
                    break
            if out_size is None:                    # the connection's first frame
                out_size = (frame.width, frame.height) if not self.short_side else \
                    resized_size(frame.width, frame.height, self.short_side)
                if min(out_size) < self.crop_size:
                    self.fatal = (f"{self.source}: frames {out_size[0]}x{out_size[1]} after resizing are smaller "
                                  f"than the crop {self.crop_size}")
                    self.emit(dict(event="error", stream=self.stream, error=self.fatal))
                    self.stop_event.set()
                    return False, "error", last
                self.stats.connections += 1
                conn = self.stats.connections
                now = time.time()
                self.emit(dict(event="connected", stream=self.stream, conn=conn, source=self.source,
                               fps=round(fps, 6), width=frame.width, height=frame.height, t=round(t, 6)))
                if last is not None:
                    self.stats.gaps += 1
                    self.emit(dict(event="gap", stream=self.stream, conn=conn, last_t=last["t"], next_t=round(t, 6),
                                   wall_gap_s=round(now - last["wall"], 3), reason=last["reason"]))
                w, h = out_size
                buf = np.empty((self.clip_len, h, w, 3), np.uint8)
                times = np.empty(self.clip_len, np.float64)
            w, h = out_size
            try:
                if (frame.width, frame.height) == (w, h):
                    rgb = frame.to_ndarray(format="rgb24")
                else:
                    rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
            except Exception as exc:
                reason = f"cannot convert a frame ({type(exc).__name__}: {exc})"
                break
            prev_t = t
            buf[k], times[k] = rgb, t
            k += 1
            n += 1
            self.stats.frames += 1
            if self.on_frame is not None:
                self.on_frame(rgb, t)
            if k == self.clip_len:
                self._put(Clip(self.stream, conn, clip_index, n - self.clip_len, buf.copy(), times.copy(), fps,
                               time.monotonic()))
                clip_index += 1
                k = 0
        if self.stop_event.is_set():
            reason = "stopped"
        if k and self.kind == "file" and reason == "end of stream" and self.tail == "pad":
            buf[k:] = buf[k - 1]                     # a file's last partial clip, as detect pads it
            times[k:] = times[k - 1] + np.arange(1, self.clip_len - k + 1) / fps
            self._put(Clip(self.stream, conn, clip_index, n - k, buf.copy(), times.copy(), fps, time.monotonic(),
                           padded=self.clip_len - k))
        if conn is not None:
            self.hub.put(self.stream, Break(self.stream, conn, reason, final=self.kind == "file"),
                         block=False, on_drop=self._dropped)
            last = dict(t=round(prev_t, 6), wall=time.time(), reason=reason)
        return n > 0, reason, last

    def _why(self, exc: Exception) -> str:
        name = type(exc).__name__
        if name in ("ExitError", "TimeoutError") or "Immediate exit" in str(exc):
            return f"stalled: no data for {self.stall_timeout:g} s"
        return f"{name}: {exc}"

    def _put(self, clip: Clip) -> None:
        self.stats.clips += 1
        self.hub.put(self.stream, clip, block=self.block, on_drop=self._dropped)

    def _dropped(self, clip: Clip) -> None:
        self.stats.dropped += 1
        self.emit(dict(event="drop", stream=self.stream, conn=clip.conn, clip=clip.index,
                       t=round(float(clip.times[0]), 6), dropped=self.stats.dropped))


def read_sources(path: str | os.PathLike) -> List[tuple]:
    """``--sources FILE``: one source per line, ``URL`` or ``NAME URL``; blank lines and lines starting
    with ``#`` skipped. Returns [(name or None, source)]."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 1:
            out.append((None, parts[0]))
        elif len(parts) == 2:
            out.append((parts[0], parts[1]))
        else:
            raise ValueError(f"{path}:{i}: expected 'URL' or 'NAME URL', got {line!r}")
    if not out:
        raise ValueError(f"{path}: no sources")
    return out


def name_sources(pairs: Sequence[tuple]) -> List[tuple]:
    """[(name or None, source)] -> [(unique name, source)]; a repeated name gets -2, -3, ..."""
    seen: Dict[str, int] = {}
    out = []
    for name, src in pairs:
        classify(src)                                   # refuses unknown schemes early
        base = name or stream_name(src)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", base):
            raise ValueError(f"stream name {base!r}: use letters, digits, '_', '.', '-'")
        seen[base] = seen.get(base, 0) + 1
        out.append((base if seen[base] == 1 else f"{base}-{seen[base]}", src))
    return out
