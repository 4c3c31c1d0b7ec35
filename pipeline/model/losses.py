"""The losses of Cao et al. (ICME 2023): k-max MIL loss (eq. 2), batch clustering loss (eq. 1),
and their sum (eq. 3)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-6


def kmax_k(T: int) -> int:
    """Eq. 2: ``k_i = floor(T_i / 8 + 1)`` top segments per video."""
    return T // 8 + 1


def kmax_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 2, averaged over the videos of the batch.

    ``L = -1/k sum_{s in top-k(S_i)} [y log s + (1 - y) log(1 - s)]`` with k = kmax_k(T).
    scores: (B, T) in [0, 1]; labels: (B,) in {0, 1}. Scores are clamped to [EPS, 1 - EPS].
    """
    k = kmax_k(scores.shape[1])
    top = torch.topk(scores, k, dim=1).values.clamp(EPS, 1 - EPS)        # (B, k)
    y = labels.to(top.dtype)[:, None]                                      # (B, 1)
    bce = -(y * torch.log(top) + (1 - y) * torch.log(1 - top))             # (B, k)
    return bce.mean(dim=1).mean()


def kmax_loss_logits(logits: torch.Tensor, labels: torch.Tensor, boost: torch.Tensor | None = None,
                     alpha: float = 1.0) -> torch.Tensor:
    """Eq. 2 on the expanded scores of eq. 5, computed from logits so it never saturates.

    With ``s = sigmoid(z)`` and ``s' = min(alpha * s, 1)`` where ``boost`` is set (else ``s' = s``):
    ``log s' = min(log alpha + logsigmoid(z), 0)`` and ``log(1 - s) = logsigmoid(-z)``. The top-k
    segments are those of largest ``s'``. Equal to ``kmax_loss(expand_scores(...))`` wherever the
    sigmoid has not saturated in float32; unlike it, the gradient does not vanish at s = 0 or 1.
    Boosting applies to abnormal videos only (eq. 5), so ``log(1 - s')`` is never needed for a boosted
    segment of a normal video. logits: (B, T); labels: (B,); boost: (B, T) bool or None.
    """
    log_s = F.logsigmoid(logits)                                            # (B, T)
    if boost is not None:
        gain = boost.to(logits.dtype) * math.log(alpha)
        log_s = torch.clamp(log_s + gain, max=0.0)                          # log min(alpha s, 1)
    k = kmax_k(logits.shape[1])
    top_log_s, idx = torch.topk(log_s, k, dim=1)                            # (B, k), ranked by s'
    top_log_1ms = F.logsigmoid(-torch.gather(logits, 1, idx))               # (B, k)
    y = labels.to(logits.dtype)[:, None]                                    # (B, 1)
    return -(y * top_log_s + (1 - y) * top_log_1ms).mean(dim=1).mean()


def centre_distance(centres: torch.Tensor) -> torch.Tensor:
    """``d = ||c1 - c2||`` for centres (2, D) -> scalar."""
    return torch.linalg.vector_norm(centres[0] - centres[1])


def batch_clustering_loss(centres: torch.Tensor, normal: bool, mu: float, eps: float = 1e-3) -> torch.Tensor:
    """Eq. 1: ``min(d, mu)`` for the clusters of the batch's normal videos, ``1 / d`` for its abnormal ones.

    centres: (2, D). ``d`` is floored at ``eps`` in the abnormal case so that two coinciding centres
    give a large but finite loss.
    """
    d = centre_distance(centres)
    if normal:
        return torch.clamp(d, max=mu)
    return 1.0 / torch.clamp(d, min=eps)


def sparsity_loss(scores: torch.Tensor) -> torch.Tensor:
    """Sultani et al.'s sparsity term (CVPR 2018), as a mean: an anomaly fills little of a video, so
    the abnormal videos' scores (b, T) are pushed down on average -> scalar ``mean(s)``. Ours, not
    the paper's: the k-max loss alone never lowers the normal part of an abnormal video."""
    return scores.mean()


def total_loss(l_kmax: torch.Tensor, l_bc: torch.Tensor, lambda1: float) -> torch.Tensor:
    """Eq. 3: ``L = L_kmax + lambda1 * L_bc``."""
    return l_kmax + lambda1 * l_bc
