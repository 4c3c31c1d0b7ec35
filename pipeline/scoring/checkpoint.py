"""A trained checkpoint and the clip scores it gives: loading (``weights_only``), scoring a
video's clip features, scoring long videos in overlapping windows. Shared by evaluate, detect, watch
and the study.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.common.cli import progress
from pipeline.model.network import AnomalyGCN, build_model

def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory -> its best.pt (validation-selected) or model.pt."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "model.pt"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path}: no best.pt or model.pt in this run directory; train first "
                                f"(python -m pipeline.train --out {path})")
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return path


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[AnomalyGCN, dict]:
    """Load a trained model (``weights_only=True``) -> (model in eval mode, checkpoint dict without weights)."""
    path = resolve_checkpoint(checkpoint)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path}: not a pipeline checkpoint (no 'model'/'config' entries)")
    cfg = state["config"]
    try:
        model = build_model(cfg, state["in_dim"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:   # wrong shapes, missing or extra weights
        detail = " ".join(str(e).split())
        raise ValueError(f"{path}: the checkpoint does not fit this version's model "
                         f"({e.__class__.__name__}: {detail[:300]}{'...' if len(detail) > 300 else ''})") from e
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k != "model"}
    meta["path"] = str(path)
    return model, meta


@torch.no_grad()
def score_clips(model: AnomalyGCN, feats: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Score one video at full length: feats (clips, crops, D) -> clip scores (clips,), its views
    (crops or regions) combined as the model was trained (``AnomalyGCN.clip_scores``)."""
    x = torch.from_numpy(np.ascontiguousarray(feats.transpose(1, 0, 2))).float().to(device)   # (crops, clips, D)
    return model.clip_scores(x).cpu().numpy().astype(np.float64)                                # (clips,)

DEFAULT_WINDOW = 2048           # clips
DEFAULT_OVERLAP = 0.5


# ----------------------------------------------------------------------------- scoring

def window_starts(n_clips: int, window: int, overlap: float) -> list[int]:
    """First clip of each window: stride ``window - round(window * overlap)``, the last window
    ending exactly at the last clip. One window (start 0) when ``n_clips <= window``."""
    if window < 1:
        raise ValueError(f"--window must be >= 1, got {window}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap}")
    if n_clips <= window:
        return [0]
    stride = max(1, window - int(round(window * overlap)))
    starts = list(range(0, n_clips - window, stride))
    starts.append(n_clips - window)
    return starts


@torch.no_grad()
def score_windowed(model, feats: np.ndarray, device: torch.device | str = "cpu",
                   window: int = DEFAULT_WINDOW, overlap: float = DEFAULT_OVERLAP,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Clip scores of one video with the graph bounded to ``window`` clips.

    feats: (clips, crops, D) -> (clips,) float64. ``clips <= window``: exactly
    :func:`pipeline.scoring.checkpoint.score_clips` (one graph over the video). Longer: overlapping windows,
    each scored by ``score_clips`` (peak memory ~ crops * window^2 per adjacency instead of
    crops * clips^2), a clip's score the mean over the windows holding it.
    """
    n = feats.shape[0]
    starts = window_starts(n, window, overlap)
    if len(starts) == 1:
        return score_clips(model, feats, device)
    total = np.zeros(n, np.float64)                                        # (clips,)
    count = np.zeros(n, np.float64)
    for s in starts:
        total[s:s + window] += score_clips(model, feats[s:s + window], device)
        count[s:s + window] += 1
        if progress:
            progress(1)
    return total / count
