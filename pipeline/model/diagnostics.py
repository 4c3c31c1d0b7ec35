"""What the clustering branch finds, measured during training (issue: "its clustering must guide").

Batch k-means (Sec. 2.2) only helps if, in abnormal videos, it separates anomalous segments from
normal ones; eq. 4's pseudo-labels only guide if they are right. These functions measure that
against per-clip truth of the training videos: a data root's ``clip_truth.npz``
(:func:`save_clip_truth`; e.g. UCSD Ped2, whose anomalous training videos have frame truth) or, on
generated data, ``synth_truth.npz`` (the same format). Without either only the truth-free measures
are logged. The measures take the batch's abnormal videos: (b, T) tensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from pipeline.model.data import resample
from pipeline.model.losses import kmax_k


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


# ----------------------------------------------------------------------------- per-clip truth files

#: Per-clip truth files a data root may hold, in the order train.py looks for them: a generic one
#: (:func:`save_clip_truth`) and the one pipeline.synth writes; both have the same format.
TRUTH_FILES = ("clip_truth.npz", "synth_truth.npz")


def clip_truth_from_frames(frame_labels: np.ndarray, n_clips: int, clip_len: int = 16) -> np.ndarray:
    """Frame truth (frames,) {0, 1} -> clip truth (n_clips,) uint8: a clip is anomalous when at least
    half of its ``clip_len`` frames are. Frames past the video's end (a padded last clip) take its
    last frame's label, as evaluate counts them (``data.Annotation.frame_labels``)."""
    f = np.asarray(frame_labels, dtype=np.uint8).ravel()
    n = int(n_clips) * clip_len
    out = np.zeros(n, np.uint8)                                              # (n_clips * clip_len,)
    k = min(len(f), n)
    out[:k] = f[:k]
    if 0 < k < n:
        out[k:] = f[k - 1]
    return (out.reshape(int(n_clips), clip_len).mean(1) >= 0.5).astype(np.uint8)


def save_clip_truth(path, videos: Iterable[dict]) -> Path:
    """Write per-clip truth (``clip_truth.npz``; the format of ``synth_truth.npz``), atomically.

    ``videos``: one dict per video with ``name`` and ``clip_labels`` ((clips,) of 0/1) and optionally
    ``split`` (default ''), ``label`` (default: 1 when any clip is anomalous), ``cls`` (''),
    ``scene`` (0) and ``distractor`` ((clips,) of 0/1, default zeros). Read back with
    :func:`load_clip_truth`.
    """
    from pipeline.common.io import atomic_write
    vids = [dict(v, clip_labels=np.asarray(v["clip_labels"], np.uint8).ravel()) for v in videos]
    if not vids:
        raise ValueError(f"{path}: no videos to write clip truth for")
    for v in vids:
        if not np.isin(v["clip_labels"], (0, 1)).all():
            raise ValueError(f"{path}: clip labels of {v['name']} hold values other than 0/1")
    n = np.array([len(v["clip_labels"]) for v in vids], np.int64)
    arrays = dict(
        names=np.array([str(v["name"]) for v in vids]),
        split=np.array([str(v.get("split", "")) for v in vids]),
        label=np.array([int(v.get("label", int(v["clip_labels"].any()))) for v in vids], np.int64),
        cls=np.array([str(v.get("cls", "")) for v in vids]),
        scene=np.array([int(v.get("scene", 0)) for v in vids], np.int64),
        n_clips=n,
        offsets=np.concatenate([[0], np.cumsum(n)]),
        clip_labels=np.concatenate([v["clip_labels"] for v in vids]),                            # (sum clips,)
        distractor=np.concatenate([np.asarray(v.get("distractor", np.zeros(len(v["clip_labels"]))), np.uint8)
                                   for v in vids]),                                                # (sum clips,)
    )
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_clip_truth(path) -> dict[str, dict]:
    """Per-video truth from a ``clip_truth.npz`` / ``synth_truth.npz`` file: name -> dict(split, label,
    cls, scene, clip_labels (clips,) uint8, distractor (clips,) uint8)."""
    with np.load(path, allow_pickle=False) as z:
        o = z["offsets"]
        return {str(name): dict(split=str(z["split"][i]), label=int(z["label"][i]), cls=str(z["cls"][i]),
                                scene=int(z["scene"][i]),
                                clip_labels=z["clip_labels"][o[i]:o[i + 1]],
                                distractor=z["distractor"][o[i]:o[i + 1]])
                for i, name in enumerate(z["names"])}


def find_clip_truth(root) -> Path | None:
    """The first of TRUTH_FILES in the data root ``root``, or None."""
    for name in TRUTH_FILES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None
