"""What the clustering branch finds, measured during training (issue: "its clustering must guide").

Batch k-means (Sec. 2.2) only helps if, in abnormal videos, it separates anomalous segments from
normal ones; eq. 4's pseudo-labels only guide if they are right. These functions measure that
against per-segment truth, which generated data has (``synth_truth.npz``); real datasets have no
per-segment truth for training videos, so there only the truth-free measures are logged.
All inputs are for the batch's abnormal videos: (b, T) tensors.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import resample
from .losses import kmax_k


def single_cluster_share(assign: torch.Tensor) -> float:
    """Share of videos whose segments all fell into one cluster. assign: (b, T) in {0, 1}.

    A value near 1 means k-means split the batch by video (or scene), not within videos.
    """
    per_video = assign.float().mean(dim=1)                                     # (b,)
    return float(((per_video == 0) | (per_video == 1)).float().mean())


def cluster_purity(assign: torch.Tensor, truth: torch.Tensor) -> float:
    """Purity of the K=2 clustering against segment truth: ``sum_k max(#anomalous_k, #normal_k) / N``.

    assign, truth: (b, T) in {0, 1}. Equals the share of the majority class when the clusters carry
    no information, 1 when they match the truth exactly.
    """
    a, t = assign.flatten().long(), truth.flatten().long()
    hits = 0
    for k in (0, 1):
        sel = a == k
        if sel.any():
            pos = int(t[sel].sum())
            hits += max(pos, int(sel.sum()) - pos)
    return hits / max(1, a.numel())


def precision_recall(pred: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Precision and recall of binary predictions against truth (NaN where undefined). (b, T) each."""
    p, t = pred.flatten() > 0.5, truth.flatten() > 0.5
    tp = float((p & t).sum())
    prec = tp / float(p.sum()) if p.any() else float("nan")
    rec = tp / float(t.sum()) if t.any() else float("nan")
    return prec, rec


def topk_precision(scores: torch.Tensor, truth: torch.Tensor, k: int) -> float:
    """Share of each video's k highest-scoring segments that are truly anomalous (the k-max loss's
    picks, eq. 2), averaged over videos. scores, truth: (b, T)."""
    idx = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices         # (b, k)
    return float(torch.gather(truth.float(), 1, idx).mean())


def mechanism_metrics(assign: torch.Tensor, pseudo: torch.Tensor | None, scores: torch.Tensor,
                      truth: torch.Tensor) -> dict:
    """All truth-based measures of one batch's abnormal videos, for the training log.

    ``anomaly_rate``: share of truly anomalous segments (the precision of a label that guesses);
    ``purity``: cluster_purity; ``pseudo_precision``/``pseudo_recall``: eq. 4's labels against the truth;
    ``topk_precision``: the k-max loss's picks (k of eq. 2) against the truth.
    """
    out = {"anomaly_rate": float(truth.float().mean()), "purity": cluster_purity(assign, truth),
           "topk_precision": topk_precision(scores, truth, kmax_k(scores.shape[1]))}
    if pseudo is not None:
        out["pseudo_precision"], out["pseudo_recall"] = precision_recall(pseudo, truth)
    return {k: v for k, v in out.items() if not np.isnan(v)}


def segment_truth(clip_labels: np.ndarray, T: int) -> np.ndarray:
    """Per-clip truth (clips,) -> per-segment truth (T,) by the resampling rule of the features
    (``data.resample``: spans of ``linspace(0, clips, T+1)``): a segment is anomalous when at least
    half of the clips it averages are."""
    frac = resample(clip_labels.astype(np.float32)[:, None, None], T)[:, 0, 0]     # (T,)
    return (frac >= 0.5).astype(np.uint8)
