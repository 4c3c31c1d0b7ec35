"""Score-curve plots in the style of the paper's Fig. 3 (Cao et al., ICME 2023).

Fig. 3 draws the predicted anomaly score of a video over time with the ground-truth anomalous
events shaded red. Here: the per-frame score as a line over time (seconds, or frames when the
frame rate is unknown), ground-truth intervals shaded red, detected intervals (``pipeline.detect``)
as an orange band along the top and the threshold as a dashed line. matplotlib with the Agg
backend (no display needed); PNGs are written atomically.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.common.io import atomic_write

GT_COLOUR = "#d62728"        # red, as in Fig. 3
DETECT_COLOUR = "#ff7f0e"    # orange
CURVE_COLOUR = "#1f4e9c"

Interval = tuple[int, int]   # (start, end) frame indices, inclusive end


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def draw_score_curve(ax, scores: np.ndarray, fps: float | None = None, gt: Sequence[Interval] = (),
                     detected: Sequence[Interval] = (), threshold: float | None = None,
                     title: str | None = None, legend: bool = True,
                     times: Sequence[float] | None = None) -> None:
    """Draw one video's curve on ``ax``.

    scores: (frames,) per-frame scores in [0, 1]; fps: frames per second (None or <= 0: the x axis
    counts frames); times: each frame's own time in seconds (variable frame rate; default i / fps);
    gt / detected: frame intervals (inclusive ends) shaded red / marked orange above the curve's
    range (scores up to 1 stay visible).
    """
    scores = np.asarray(scores, dtype=np.float64)                        # (F,)
    unit = float(fps) if fps and fps > 0 else 1.0
    if times is not None and len(times) == len(scores) and len(scores):
        from pipeline.scoring.timeline import frame_ends
        start = np.asarray(times, np.float64)
        t = np.append(start, frame_ends(start, unit)[-1])                # frame edges (s)
    else:
        t = np.arange(len(scores) + 1) / unit                            # frame edges
    for i, (s, e) in enumerate(gt):
        ax.axvspan(t[s], t[e + 1], color=GT_COLOUR, alpha=0.25, lw=0,
                   label="ground truth" if i == 0 else None)
    for i, (s, e) in enumerate(detected):
        ax.axvspan(t[s], t[e + 1], ymin=1.0 / 1.1, ymax=1.0, color=DETECT_COLOUR, alpha=0.9, lw=0,
                   label="detected" if i == 0 else None)
    if len(scores):
        ax.stairs(scores, t, baseline=None, color=CURVE_COLOUR, lw=1.5, label="anomaly score")
    if threshold is not None:
        ax.axhline(threshold, color="0.4", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    ax.set_ylim(0, 1.1)                       # the detected band lies in (1.0, 1.1], above any score
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlim(0, max(t[-1], 1.0 / unit))
    ax.set_xlabel("time (s)" if fps and fps > 0 else "frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title, fontsize=10)
    if legend:
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)


def _save(fig, path: str | Path, dpi: int) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def save_score_plot(path: str | Path, scores: np.ndarray, fps: float | None = None,
                    gt: Sequence[Interval] = (), detected: Sequence[Interval] = (),
                    threshold: float | None = None, title: str | None = None, dpi: int = 110,
                    times: Sequence[float] | None = None) -> Path:
    """One video's score curve as a PNG at ``path`` (atomic); ``times``: the frames' own times."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.6))
    draw_score_curve(ax, scores, fps, gt, detected, threshold, title, times=times)
    return _save(fig, path, dpi)


def save_score_grid(path: str | Path, videos: Sequence[dict], threshold: float | None = None,
                    ncols: int = 2, suptitle: str | None = None, dpi: int = 110) -> Path:
    """Several videos in a grid, like Fig. 3 (three anomalous videos and a normal one).

    Each item of ``videos``: dict(scores=(frames,), fps=..., gt=[...], detected=[...], title=...).
    """
    plt = _plt()
    n = len(videos)
    if n == 0:
        raise ValueError("save_score_grid: no videos to plot")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 2.5 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        v = videos[k]
        draw_score_curve(ax, v["scores"], v.get("fps"), v.get("gt", ()), v.get("detected", ()),
                         threshold, v.get("title"), legend=k == 0, times=v.get("times"))
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi)
