"""Frame-level metrics of the field (RTFM's protocol) and the video-level validation criterion.

Clips to frames: clip c of a video covers frames ``16c .. 16c + 15``; its score is repeated over
those 16 frames, so a video of C clips yields ``16 C`` frame scores (``np.repeat(scores, 16)``).
With RTFM's ``ceil`` clip count the last clip was padded, so ``16 C`` can exceed the true frame
count by up to 15 frames; the frame labels are built to the same ``16 C`` length (annotations
clipped or, for ShanghaiTech masks, padded with their last value), exactly as RTFM's
``gt-*.npy`` files. The frames of all test videos are concatenated and scored with
``sklearn.metrics.roc_auc_score`` / ``average_precision_score``; neither depends on the order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

CLIP_LEN = 16


def clip_to_frame_scores(clip_scores: np.ndarray, clip_len: int = CLIP_LEN) -> np.ndarray:
    """(C,) clip scores -> (clip_len * C,) frame scores, each clip's score repeated over its frames."""
    return np.repeat(np.asarray(clip_scores, dtype=np.float64), clip_len)


def safe_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC, or None when only one class is present."""
    if labels.size == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def safe_ap(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision, or None when there is no positive frame."""
    if labels.size == 0 or labels.max() == 0:
        return None
    return float(average_precision_score(labels, scores))


@dataclass
class ScoredVideo:
    name: str
    label: int                 # video-level label, 1 abnormal
    cls: str                   # class ('Normal' for normal videos), '' when unknown
    frame_scores: np.ndarray   # (F,) float
    frame_labels: np.ndarray   # (F,) {0, 1}


def _mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def frame_report(videos: list[ScoredVideo], far_threshold: float = 0.5) -> dict:
    """The evaluation report over all test videos.

    - ``auc`` / ``ap``: frame-level ROC-AUC / AP over the frames of all videos concatenated.
    - ``auc_abnormal``: the same over the frames of anomalous videos only.
    - ``far``: false-alarm rate, the fraction of frames of normal videos scored >= far_threshold.
    - ``per_class``: for each anomaly class, AUC over the frames of that class's videos and of all
      normal videos (the usual per-class protocol on UCF-Crime).
    - ``mean_inside`` / ``mean_outside`` / ``mean_normal``: mean frame score inside the anomalous
      intervals, outside them in the same anomalous videos, and in normal videos. A model that tells
      videos apart but does not localise has ``mean_outside`` close to ``mean_inside`` (smearing).
    """
    if not videos:
        raise ValueError("no test videos to evaluate")
    scores = np.concatenate([v.frame_scores for v in videos])
    labels = np.concatenate([v.frame_labels for v in videos]).astype(np.int64)
    abnormal = [v for v in videos if v.label == 1]
    normal = [v for v in videos if v.label == 0]
    report = {
        "auc": safe_auc(labels, scores),
        "ap": safe_ap(labels, scores),
        "auc_abnormal": None,
        "far": None,
        "far_threshold": far_threshold,
        "per_class": {},
        "n_videos": len(videos),
        "n_abnormal_videos": len(abnormal),
        "n_normal_videos": len(normal),
        "n_frames": int(labels.size),
        "n_anomalous_frames": int(labels.sum()),
        "mean_inside": None,
        "mean_outside": None,
        "mean_normal": None,
    }
    if abnormal:
        ab_labels = np.concatenate([v.frame_labels for v in abnormal])
        ab_scores = np.concatenate([v.frame_scores for v in abnormal])
        report["auc_abnormal"] = safe_auc(ab_labels, ab_scores)
        report["mean_inside"] = _mean_or_none(ab_scores[ab_labels == 1])
        report["mean_outside"] = _mean_or_none(ab_scores[ab_labels == 0])
    if normal:
        normal_scores = np.concatenate([v.frame_scores for v in normal])
        report["far"] = float((normal_scores >= far_threshold).mean())
        report["mean_normal"] = _mean_or_none(normal_scores)
    classes = sorted({v.cls for v in abnormal if v.cls})
    for cls in classes:
        group = [v for v in abnormal if v.cls == cls] + normal
        report["per_class"][cls] = safe_auc(np.concatenate([v.frame_labels for v in group]),
                                            np.concatenate([v.frame_scores for v in group]))
    return report


def video_level_auc(video_scores: np.ndarray, video_labels: np.ndarray) -> float | None:
    """Video-level ROC-AUC, the validation criterion (no frame labels needed)."""
    return safe_auc(np.asarray(video_labels), np.asarray(video_scores))
