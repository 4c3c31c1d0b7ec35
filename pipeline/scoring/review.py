"""Review pages: one self-contained HTML file per detect run or evaluation (scores, intervals,
thumbnails, the video beside its curve); :mod:`pipeline.review` is its command.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np

from pipeline.common.io import atomic_write_text

ASSETS = Path(__file__).with_name("review_assets")
N_THUMBS = 12
THUMB_WIDTH = 160
CURVE_POINTS = 600          # ROC / PR points kept for drawing

#: Containers and video codecs a current Chromium / Firefox plays without extra codecs (H.264 in
#: MP4 needs a browser built with it; Debian's chromium is). Anything else gets thumbnails.
BROWSER_FORMATS: dict[str, set[str]] = {
    ".mp4": {"h264", "vp9", "av1"}, ".m4v": {"h264", "vp9", "av1"}, ".mov": {"h264"},
    ".webm": {"vp8", "vp9", "av1"}, ".ogv": {"theora", "vp8"},
}


# ----------------------------------------------------------------------------- data encoding

def encode_scores(frame_scores: np.ndarray, step: int = 16, decimals: int = 6) -> dict[str, Any]:
    """Per-frame scores (F,) -> ``{"n": F, "step": k, "v": values}`` with
    ``frame_scores == frame_scores_of(v, F, k)`` (see :func:`pipeline.scoring.timeline.frame_scores`:
    value c on frames c*k .. c*k+k-1, the last value repeated past the end); ``step`` 1 when the
    curve is not piecewise constant on ``step`` frames. Values rounded to ``decimals``."""
    s = np.round(np.asarray(frame_scores, np.float64), decimals)                # (F,)
    n = len(s)
    if step > 1 and n:
        v = s[::step]                                                            # (ceil(F / k),)
        expanded = np.repeat(v, step)[:n]
        if np.array_equal(expanded, s):
            return {"n": n, "step": step, "v": v.tolist()}
    return {"n": n, "step": 1, "v": s.tolist()}


def decode_scores(enc: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_scores` (what the page does in ``expandScores``) -> (n,) float64."""
    v = np.asarray(enc["v"], np.float64)
    if "q" in enc:
        v = v / enc["q"]
    s = np.repeat(v, enc["step"])[:enc["n"]]
    if len(s) < enc["n"]:
        s = np.concatenate([s, np.full(enc["n"] - len(s), v[-1] if len(v) else 0.0)])
    return s


def label_runs(labels: np.ndarray) -> list[list[int]]:
    """Frame labels (F,) in {0, 1} -> ``[[start, end], ...]`` runs of 1 (inclusive ends)."""
    a = np.asarray(labels).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], a, [0]]))
    return [[int(s), int(e) - 1] for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


def thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    """Points of a monotone curve (ROC, PR) for drawing: a point is kept when it lies at least
    1/max_points away (in x or y) from the last kept one; the first and last are always kept."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) <= max_points:
        return np.round(x, 5).tolist(), np.round(y, 5).tolist()
    keep, lx, ly, tol = [0], x[0], y[0], 1.0 / max_points
    for i in range(1, len(x) - 1):
        if abs(x[i] - lx) >= tol or abs(y[i] - ly) >= tol:
            keep.append(i)
            lx, ly = x[i], y[i]
    keep.append(len(x) - 1)
    return np.round(x[keep], 5).tolist(), np.round(y[keep], 5).tolist()


# ----------------------------------------------------------------------------- video side

def video_codec(path: str | Path) -> str | None:
    """Name of the first video stream's codec (PyAV), None when the file cannot be opened."""
    import av
    try:
        with av.open(str(path)) as c:
            streams = c.streams.video
            return streams[0].codec_context.name if streams else None
    except Exception:  # noqa: BLE001 - unreadable means not playable; detect reported the error
        return None


def browser_playable(path: str | Path) -> bool:
    """True when a browser plays the file as it is (container by extension, codec by PyAV)."""
    codecs = BROWSER_FORMATS.get(Path(path).suffix.lower())
    return bool(codecs) and video_codec(path) in codecs


def video_thumbnails(path: str | Path, n: int = N_THUMBS, width: int = THUMB_WIDTH) -> list[dict[str, Any]]:
    """``n`` JPEG thumbnails spread over the video: ``[{"t": seconds, "src": data URI}, ...]``.

    Seeks to each target time (to the keyframe before it, then decodes up to the target), so a
    long video costs ``n`` short decodes, not a full pass. [] when the video cannot be read.
    """
    import av
    out: list[dict[str, Any]] = []
    try:
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            st.thread_type = "AUTO"
            tb = float(st.time_base) if st.time_base else 1.0 / 1_000_000
            duration = (float(st.duration * st.time_base) if st.duration else
                        (c.duration / 1_000_000 if c.duration else 0.0))
            targets = [duration * (i + 0.5) / n for i in range(n)] if duration > 0 else [0.0]
            for t in targets:
                c.seek(int(t / tb) + (st.start_time or 0), stream=st, backward=True, any_frame=False)
                frame = None
                for frame in c.decode(st):
                    if frame.time is None or frame.time >= t - 1e-6:
                        break
                if frame is None:
                    continue
                h = max(2, int(round(frame.height * width / frame.width / 2)) * 2)
                img = frame.to_image().resize((width, h))
                rot = int(round(getattr(frame, "rotation", 0) or 0))
                if rot % 90 == 0 and rot % 360:            # as players show it (display matrix)
                    img = img.rotate(rot, expand=True)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=70)
                out.append({"t": round(float(frame.time if frame.time is not None else t), 3),
                            "src": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()})
    except Exception:  # noqa: BLE001 - thumbnails are a convenience; the curve still works
        return out
    return out


def folder_thumbnails(folder: str | Path, fps: float, n: int = N_THUMBS,
                      width: int = THUMB_WIDTH) -> list[dict[str, Any]]:
    """Thumbnails of a frame folder (numbered images, ``fps`` frames a second), like
    :func:`video_thumbnails`; [] when its images cannot be read."""
    from PIL import Image

    from pipeline.features.video import frame_images

    images = frame_images(folder)
    out: list[dict[str, Any]] = []
    try:
        for k in sorted({int(len(images) * (i + 0.5) / n) for i in range(n)} if images else ()):
            with Image.open(images[k]) as im:
                im = im.convert("RGB")
                im = im.resize((width, max(2, int(round(im.height * width / im.width)))))
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=70)
            out.append({"t": round(k / fps, 3),
                        "src": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()})
    except Exception:  # noqa: BLE001 - thumbnails are a convenience; the curve still works
        return out
    return out


def relative_url(target: str | Path, page_dir: str | Path) -> str:
    """URL of ``target`` relative to the folder of the page (percent-encoded, '/' separators)."""
    try:
        rel = os.path.relpath(Path(target).resolve(), Path(page_dir).resolve())
    except ValueError:                      # another drive (Windows): an absolute file URL
        return Path(target).resolve().as_uri()
    return quote(Path(rel).as_posix())


# ----------------------------------------------------------------------------- page assembly

def write_page(path: str | Path, page: str) -> Path:
    """Write a page atomically, readable by everyone (a static server may run as another user)."""
    path = atomic_write_text(path, page)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def inline_json(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no '</', no '<!--')."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render_page(template: str, script: str, title: str, data: Any) -> str:
    """A template with its styles, the shared and page scripts and the data inlined."""
    page = _asset(template)
    parts = {"/*STYLE*/": _asset("style.css"), "/*SCRIPT*/": _asset("common.js") + "\n" + _asset(script),
             "__TITLE__": html.escape(title), "__DATA__": inline_json(data)}
    for key, value in parts.items():
        page = page.replace(key, value)
    return page


# ----------------------------------------------------------------------------- detect page

def detect_page_data(out_dir: str | Path, summary: dict, thumbnails: bool = True) -> dict[str, Any]:
    """The detect page's data from a detection folder's summary (videos with results only)."""
    from pipeline.scoring.timeline import read_intervals_csv, read_scores_csv, read_times_csv

    out_dir = Path(out_dir)
    clip_len = int((summary.get("extractor") or {}).get("clip_len") or 16)
    videos, problems = [], []
    for row in summary.get("videos", []):
        if row.get("status") != "ok":
            problems.append(f"{row.get('video')}: {row.get('error')}")
            continue
        files = row.get("files", {})
        scores_path = out_dir / f"{row['video']}.scores.csv"           # the key keeps its folders
        ivs_path = out_dir / f"{row['video']}.intervals.csv"
        try:
            scores = read_scores_csv(scores_path)
            intervals = read_intervals_csv(ivs_path)
            times = read_times_csv(scores_path).round(4).tolist() if row.get("vfr") else None
        except (OSError, ValueError) as e:
            problems.append(f"{row['video']}: cannot read its outputs ({e})")
            continue
        src = Path(row.get("path", ""))
        playable = src.is_file() and browser_playable(src)
        settings = row.get("settings", {})
        videos.append(dict(
            name=row["video"], file=src.name, fps=float(row["fps"]), frames=int(len(scores)), times=times,
            duration_s=float(row.get("duration_s") or round(len(scores) / float(row["fps"]), 3)),
            max_score=float(np.max(scores)) if len(scores) else 0.0,
            src=relative_url(src, out_dir) if playable else None,
            thumbs=([] if playable or not thumbnails or not src.exists() else
                    folder_thumbnails(src, float(row["fps"])) if src.is_dir() else video_thumbnails(src)),
            missing=not src.exists(), scores=encode_scores(scores, clip_len), intervals=intervals,
            threshold=settings.get("threshold", summary.get("threshold")),
            min_duration_s=settings.get("min_duration_s", summary.get("min_duration_s")),
            merge_gap_s=settings.get("merge_gap_s", summary.get("merge_gap_s")),
            warning=row.get("warning")))
    videos.sort(key=lambda v: -v["max_score"])
    return dict(kind="detect", checkpoint=summary.get("checkpoint"), random_weights=summary.get("random_weights"),
                threshold=summary.get("threshold"), min_duration_s=summary.get("min_duration_s"),
                merge_gap_s=summary.get("merge_gap_s"), generated=time.strftime("%Y-%m-%d %H:%M"),
                videos=videos, problems=problems)


def write_detect_review(out_dir: str | Path, thumbnails: bool = True) -> Path:
    """(Re)build ``<out_dir>/review.html`` from ``<out_dir>/summary.json``; returns its path."""
    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: not found; run python -m pipeline.detect --out {out_dir} first")
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError as e:
        raise ValueError(f"{summary_path}: not valid JSON ({e})") from e
    data = detect_page_data(out_dir, summary, thumbnails)
    title = f"Detections: {len(data['videos'])} video(s) in {out_dir.resolve().name}"
    return write_page(out_dir / "review.html", render_page("detect.html", "detect.js", title, data))


# ----------------------------------------------------------------------------- evaluation page

def video_errors(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int]:
    """(missed anomalous frames, false-alarm frames) of one video at ``threshold``."""
    hit = np.asarray(scores) >= threshold
    lab = np.asarray(labels).astype(bool)
    return int((lab & ~hit).sum()), int((~lab & hit).sum())


def evaluation_page_data(report: dict, videos: Sequence[Any]) -> dict[str, Any]:
    """The report page's data: the report, thinned ROC / PR curves and every test video
    (``ScoredVideo``: name, label, cls, frame_scores (F,), frame_labels (F,)), worst first."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    thr = float(report.get("far_threshold", 0.5))
    scores = np.concatenate([v.frame_scores for v in videos])                     # (all frames,)
    labels = np.concatenate([v.frame_labels for v in videos]).astype(np.int64)
    roc = pr = None
    if 0 < labels.sum() < len(labels):
        fpr, tpr, _ = roc_curve(labels, scores)
        precision, recall, _ = precision_recall_curve(labels, scores)
        roc = dict(zip(("x", "y"), thin_curve(fpr, tpr)))
        pr = dict(zip(("x", "y"), thin_curve(recall, precision)))
    rows = []
    for v in videos:
        missed, false_alarms = video_errors(v.frame_scores, v.frame_labels, thr)
        enc = encode_scores(v.frame_scores, 16, decimals=3)
        enc.update(q=1000, v=[int(round(x * 1000)) for x in enc["v"]])            # integers: a smaller page
        rows.append(dict(name=v.name, cls=v.cls, label=int(v.label), frames=int(len(v.frame_scores)),
                         anomalous=int(np.sum(v.frame_labels)), missed=missed, false_alarms=false_alarms,
                         max_score=round(float(np.max(v.frame_scores)), 4) if len(v.frame_scores) else 0.0,
                         gt=label_runs(v.frame_labels), scores=enc))
    rows.sort(key=lambda r: (-(r["missed"] + r["false_alarms"]), -r["missed"], r["name"]))
    keys = ("dataset", "checkpoint", "checkpoint_epoch", "selected_by", "headline", "auc", "ap", "auc_abnormal",
            "far", "far_threshold", "per_class", "n_videos", "n_abnormal_videos", "n_normal_videos", "n_frames",
            "n_anomalous_frames")
    normal_frames = int(np.sum(labels == 0))
    all_false = int(sum(r["false_alarms"] for r in rows))       # normal frames of every video, anomalous ones too
    return dict(kind="report", report={k: report.get(k) for k in keys}, roc=roc, pr=pr,
                positive_rate=float(labels.mean()) if len(labels) else 0.0,
                false_alarm_frames=all_false, far_all=all_false / normal_frames if normal_frames else None,
                generated=time.strftime("%Y-%m-%d %H:%M"), videos=rows)


def write_evaluation_review(path: str | Path, report: dict, videos: Sequence[Any]) -> Path:
    """Write ``report.html`` for an evaluation (see :func:`evaluation_page_data`)."""
    data = evaluation_page_data(report, videos)
    title = f"Evaluation: {report.get('dataset', '')} ({report.get('n_videos')} test videos)"
    return write_page(path, render_page("report.html", "report.js", title, data))
