"""``pipeline.watch --save-clips DIR``: the seconds around each alert, as a video a person can look at.

Each stream's reader thread hands every decoded frame (RGB, resized as the model saw it) and its
stream time to :meth:`AlertRecorder.frame_hook`; the recorder keeps a rolling buffer of the last
``before + min_duration + LATENCY_ALLOWANCE`` seconds (an interval is announced only once it has lasted
``min_duration``, and after the scoring delay). When the scorer opens an interval, the buffered frames
from ``start - before`` on are encoded (PyAV, H.264, millisecond timestamps from the frames' own
times) to a temporary file beside ``DIR/<stream>_<start>s.mp4``, then the following frames as the
scorer gets through them (a frame is written once its clip is scored, so that a recording ends
exactly ``after`` seconds past the interval's end, however far the reader runs ahead), until that
end (or the stream breaks, or watch stops); then the file is renamed into place. Memory: the buffer, bounded by time; encoding runs in the stream's own
reader thread, so it never delays another stream.
"""
from __future__ import annotations

import collections
import os
import tempfile
import threading
from fractions import Fraction
from pathlib import Path
from typing import Deque, Dict, List, Optional

import numpy as np

LATENCY_ALLOWANCE = 10.0     # seconds of scoring delay the buffer covers


class _Recording:
    def __init__(self, path: Path, start_t: float):
        self.path, self.start_t = path, start_t
        self.stop_t: Optional[float] = None
        self.out = self.stream = self.tmp = None
        self.t0: Optional[float] = None
        self.last_t: Optional[float] = None
        self.frames = 0
        self.lock = threading.Lock()             # the reader thread writes, shutdown may finish
        self.closed = False

    def write(self, rgb: np.ndarray, t: float) -> None:
        with self.lock:
            if not self.closed and (self.last_t is None or t > self.last_t):
                self._write(rgb, t)

    def _write(self, rgb: np.ndarray, t: float) -> None:
        import av

        h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2          # yuv420p needs even sizes
        if self.out is None:
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp.mp4")
            os.close(fd)
            self.out = av.open(self.tmp, "w", format="mp4")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self.stream = self.out.add_stream(codec, rate=25)
            self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
            self.stream.time_base = Fraction(1, 1000)
            self.stream.codec_context.time_base = Fraction(1, 1000)
            self.t0 = t
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        frame.pts = int(round((t - self.t0) * 1000))
        frame.time_base = Fraction(1, 1000)
        for p in self.stream.encode(frame):
            self.out.mux(p)
        self.last_t = t
        self.frames += 1

    def finish(self) -> Optional[Path]:
        with self.lock:
            self.closed = True
            if self.out is None:
                return None
            for p in self.stream.encode():
                self.out.mux(p)
            self.out.close()
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
            return self.path


class AlertRecorder:
    """Rolling frame buffers per stream and the recordings of open intervals (see the module doc)."""

    def __init__(self, folder: str, before: float, after: float, min_duration: float, log=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.before, self.after = before, after
        self.keep = before + min_duration + LATENCY_ALLOWANCE
        self.log = log
        self.lock = threading.Lock()
        self.buffers: Dict[str, Deque] = {}
        self.active: Dict[str, List[_Recording]] = collections.defaultdict(list)
        self.pending: Dict[str, Dict[int, _Recording]] = collections.defaultdict(dict)
        self.scored_t: Dict[str, float] = {}

    def frame_hook(self, name: str):
        buf: Deque = collections.deque()
        self.buffers[name] = buf

        def hook(rgb: np.ndarray, t: float) -> None:
            if buf and t < buf[-1][1]:                  # a new connection whose clock restarted
                self._drain(name, final=True)
                buf.clear()
            buf.append((rgb, t))
            while buf and buf[0][1] < t - self.keep:
                buf.popleft()
            self._drain(name)
        return hook

    def scored(self, name: str, t: float) -> None:
        """The scorer has scored the stream up to time ``t``: frames up to it may be written."""
        self.scored_t[name] = t

    def _drain(self, name: str, final: bool = False) -> None:
        """Write each recording's buffered frames up to what is decided (scored, and not past its
        end); finish those whose end has been written (all of them when ``final``)."""
        with self.lock:
            recs = list(self.active[name])
        buf = self.buffers.get(name, ())
        for rec in recs:
            limit = min(self.scored_t.get(name, -np.inf), np.inf if rec.stop_t is None else rec.stop_t)
            try:
                for f, ft in list(buf):
                    if ft >= rec.start_t and ft <= limit and (rec.last_t is None or ft > rec.last_t):
                        rec.write(f, ft)
            except Exception as e:                       # disk full, codec trouble: this clip only
                self._log(name, f"--save-clips {rec.path}: {type(e).__name__}: {e}")
                self._end(name, rec, keep=False)
                continue
            if final or (rec.stop_t is not None and self.scored_t.get(name, -np.inf) >= rec.stop_t):
                self._end(name, rec)

    def interval(self, name: str, kind: str, iv: dict) -> str:
        """The scorer's interval events: start a recording at 'open', set its end at 'close'."""
        key = iv["start_frame"]
        with self.lock:
            rec = self.pending[name].get(key)
            if rec is None:
                path = self.folder / f"{name}_{iv['start_s']:.2f}s.mp4"
                i = 2
                while path.exists() or any(r.path == path for r in self.active[name]):
                    path = self.folder / f"{name}_{iv['start_s']:.2f}s-{i}.mp4"
                    i += 1
                rec = _Recording(path, iv["start_s"] - self.before)
                self.pending[name][key] = rec
                self.active[name].append(rec)
            if kind == "close":
                rec.stop_t = iv["end_s"] + self.after
                del self.pending[name][key]
        return str(rec.path)

    def _end(self, name: str, rec: _Recording, keep: bool = True) -> None:
        with self.lock:
            if rec not in self.active[name]:
                return
            self.active[name].remove(rec)
        try:
            if keep:
                rec.finish()
            elif rec.tmp:
                os.unlink(rec.tmp)
        except Exception as e:
            self._log(name, f"--save-clips {rec.path}: {type(e).__name__}: {e}")

    def _log(self, name: str, msg: str) -> None:
        if self.log is not None:
            self.log.write(dict(event="error", stream=name, error=msg))

    def close(self) -> None:
        """Write what is decided and finish every recording (watch is stopping; readers have ended)."""
        for name in list(self.active):
            self._drain(name, final=True)
