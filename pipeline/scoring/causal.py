"""Causal clip scores: each clip scored with only the clips before it (a live camera has no
future), in a window of the last ``window`` clips.
"""
from __future__ import annotations

import collections
from typing import Deque

import numpy as np
import torch

from pipeline.scoring.checkpoint import score_clips

DEFAULT_WINDOW = 32             # clips in the causal window


# ----------------------------------------------------------------------------- causal scores

class CausalWindow:
    """The model over the last ``window`` clips of one stream; the newest clip's score.

    ``push(feat)``: feat (crops, D) -> score of that clip, from one graph over the window's clips
    (crops averaged, as :func:`pipeline.scoring.checkpoint.score_clips`). ``reset()`` at a gap.
    """

    def __init__(self, model, window: int = DEFAULT_WINDOW, device: torch.device | str = "cpu"):
        if window < 1:
            raise ValueError(f"--window must be >= 1, got {window}")
        self.model, self.window, self.device = model, window, device
        self.feats: Deque[np.ndarray] = collections.deque(maxlen=window)

    def push(self, feat: np.ndarray) -> float:
        self.feats.append(np.asarray(feat, np.float32))
        return float(score_clips(self.model, np.stack(self.feats), self.device)[-1])   # (W, crops, D) -> newest

    def reset(self) -> None:
        self.feats.clear()


def causal_scores(model, feats: np.ndarray, window: int = DEFAULT_WINDOW,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """Offline, the scores watch gives live: feats (clips, crops, D) -> (clips,) float64, clip t
    scored by the model on clips max(0, t-window+1) .. t (:class:`CausalWindow`)."""
    w = CausalWindow(model, window, device)
    return np.array([w.push(f) for f in feats], np.float64)
