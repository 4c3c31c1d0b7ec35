"""Per-frame scores on a video's own time line: clip scores to frames, frame times, anomalous
intervals, and the CSV files that carry them (``<video>.scores.csv``, ``<video>.intervals.csv``).

The lower layer under :mod:`pipeline.detect` (which writes these files) and :mod:`pipeline.review`
(which reads them into a page); neither imports the other for them.

Times: frame ``i`` is at ``times[i]`` seconds, the frame's own presentation time measured from the
first frame. A constant-rate video has ``times[i] = i / fps``; a variable-rate one keeps what its
timestamps say (``pipeline.features.decode`` records them). A frame lasts until the next one starts; the last
one for the previous step (or ``1 / fps``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.common.metrics import CLIP_LEN

#: The interval rule's defaults (detect, watch and the review page use them).
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_DURATION = 1.0      # seconds
DEFAULT_MERGE_GAP = 0.5         # seconds

INTERVAL_FIELDS = ("start_frame", "end_frame", "start_s", "end_s", "duration_s", "peak_score",
                   "peak_frame", "mean_score")


def frame_scores(clip_scores: np.ndarray, n_frames: int, clip_len: int = CLIP_LEN) -> np.ndarray:
    """(clips,) -> (n_frames,): clip c's score on frames c*clip_len .. c*clip_len + clip_len - 1.

    Frames of a padded last clip beyond ``n_frames`` are dropped; frames after the last clip
    (tail 'drop') take the last clip's score.
    """
    s = np.repeat(np.asarray(clip_scores, np.float64), clip_len)[:n_frames]
    if len(s) < n_frames:
        s = np.concatenate([s, np.full(n_frames - len(s), s[-1] if len(s) else 0.0)])
    return s


def frame_times(n_frames: int, fps: float, times: Sequence[float] | None = None) -> np.ndarray:
    """(n_frames,) start time of each frame in seconds: ``times`` when given (variable frame rate),
    else ``i / fps``."""
    if times is not None:
        t = np.asarray(times, np.float64)
        if len(t) != n_frames:
            raise ValueError(f"{len(t)} frame times for {n_frames} frames")
        return t
    return np.arange(n_frames, dtype=np.float64) / fps


def frame_ends(times: np.ndarray, fps: float) -> np.ndarray:
    """(n,) end time of each frame: the next frame's start; the last frame lasts as long as the
    step before it (or 1/fps for a single frame)."""
    t = np.asarray(times, np.float64)
    if not len(t):
        return t
    last = t[-1] - t[-2] if len(t) > 1 and t[-1] > t[-2] else 1.0 / fps
    return np.append(t[1:], t[-1] + last)


def find_intervals(scores: np.ndarray, fps: float, threshold: float = DEFAULT_THRESHOLD,
                   min_duration: float = DEFAULT_MIN_DURATION, merge_gap: float = DEFAULT_MERGE_GAP,
                   times: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Anomalous intervals of a per-frame score: runs >= threshold, gaps < merge_gap s joined,
    runs < min_duration s dropped. Returns dicts (``INTERVAL_FIELDS``), in time order.

    Without ``times`` the rule counts frames (``merge_gap * fps`` frames, ...) and ``start_s =
    start_frame / fps``, ``end_s = (end_frame + 1) / fps``. With ``times`` (a variable frame rate)
    every duration is measured on the frames' own times: a gap is from the end of one run's last
    frame to the start of the next run, a run lasts from its first frame's start to its last
    frame's end. Both agree for a constant rate. Frames are 0-based with an inclusive end.
    """
    scores = np.asarray(scores, np.float64)                                # (F,)
    above = scores >= threshold
    if not above.any():
        return []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))   # inclusive
    if times is None:
        def gap(s, e_prev):
            return (s - e_prev - 1) < merge_gap * fps

        def short(s, e):
            return (e - s + 1) < min_duration * fps - 1e-9

        def span(s, e):
            return round(s / fps, 4), round((e + 1) / fps, 4), round((e - s + 1) / fps, 4)
    else:
        t = frame_times(len(scores), fps, times)
        ends = frame_ends(t, fps)

        def gap(s, e_prev):
            return t[s] - ends[e_prev] < merge_gap - 1e-9

        def short(s, e):
            return ends[e] - t[s] < min_duration - 1e-9

        def span(s, e):
            return round(float(t[s]), 4), round(float(ends[e]), 4), round(float(ends[e] - t[s]), 4)
    merged: list[list[int]] = []
    for s, e in runs:
        if merged and gap(s, merged[-1][1]):
            merged[-1][1] = int(e)
        else:
            merged.append([int(s), int(e)])
    out = []
    for s, e in merged:
        if short(s, e):
            continue
        seg = scores[s:e + 1]
        peak = int(s + np.argmax(seg))
        start_s, end_s, duration_s = span(s, e)
        out.append(dict(start_frame=s, end_frame=e, start_s=start_s, end_s=end_s,
                        duration_s=duration_s, peak_score=round(float(seg.max()), 6),
                        peak_frame=peak, mean_score=round(float(seg.mean()), 6)))
    return out


# ----------------------------------------------------------------------------- CSV files

def scores_csv(scores: np.ndarray, fps: float, times: Sequence[float] | None = None) -> str:
    """``frame,time_s,score``: one row per frame, its time from ``times`` or ``frame / fps``."""
    t = frame_times(len(scores), fps, times)
    buf = io.StringIO()
    buf.write("frame,time_s,score\n")
    for i, s in enumerate(scores):
        buf.write(f"{i},{t[i]:.4f},{s:.6f}\n")
    return buf.getvalue()


def intervals_csv(intervals: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INTERVAL_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(intervals)
    return buf.getvalue()


def read_scores_csv(path: str | Path) -> np.ndarray:
    """The score column of a ``<video>.scores.csv`` -> (frames,) float64."""
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=2, ndmin=1)


def read_times_csv(path: str | Path) -> np.ndarray:
    """The time column of a ``<video>.scores.csv`` -> (frames,) float64 seconds."""
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=1, ndmin=1)


def read_intervals_csv(path: str | Path) -> list[dict]:
    """Rows of a ``<video>.intervals.csv`` with numbers parsed."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k.endswith("frame") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]
