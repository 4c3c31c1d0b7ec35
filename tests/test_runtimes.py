"""Stage 1's network runtimes (pipeline.features.runtimes): choice, and features equal to torch fp32's.

onnxruntime and OpenVINO are optional: their tests are skipped when the package is absent, and the
choice of ``auto`` is tested with them hidden.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from pipeline.features import runtimes as R
from pipeline.features.reproduce import check_extractor, resolve_extractor
from pipeline.features.extractor import FeatureExtractor, resolve_precision


@pytest.fixture(autouse=True)
def auto_is_measured(monkeypatch):
    monkeypatch.delenv("PIPELINE_RUNTIME", raising=False)   # conftest pins the rest of the suite to torch


def hide_optional(monkeypatch):
    monkeypatch.setattr(R, "installed", lambda r: r == "torch")


def test_auto_is_torch_without_the_optional_runtimes(monkeypatch):
    hide_optional(monkeypatch)
    assert R.resolve_runtime("auto", "fp32", "cpu") == "torch"
    assert R.resolve_runtime(None, "bf16", "cpu") == "torch"
    with pytest.raises(R.RuntimeUnavailable, match="pip install openvino"):
        R.resolve_runtime("openvino", "fp32", "cpu")
    fx = FeatureExtractor(profile="inception", random_init=True, short_side=32, crop_size=32, device="cpu")
    assert fx.runtime == "torch" and fx.meta["runtime"] == "torch"


def test_runtime_choice_errors(monkeypatch):
    monkeypatch.setattr(R, "installed", lambda r: True)
    assert R.resolve_runtime("auto", "fp32", "cpu") == R.AUTO_ORDER["fp32"][0]
    assert R.resolve_runtime("auto", "fp32", "cuda") == "torch"
    with pytest.raises(R.RuntimeUnavailable, match="fp32 only"):
        R.resolve_runtime("onnxruntime", "bf16", "cpu")
    with pytest.raises(R.RuntimeUnavailable, match="CPU only"):
        R.resolve_runtime("openvino", "fp32", "cuda")
    with pytest.raises(R.RuntimeUnavailable, match="must be one of"):
        R.resolve_runtime("tensorrt", "fp32", "cpu")
    monkeypatch.setenv("PIPELINE_RUNTIME", "torch")
    assert R.resolve_runtime("auto", "bf16", "cpu") == "torch"


def test_precision_auto_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(R, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(R, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "bf16"


def test_runtime_and_precision_never_refuse_a_checkpoint():
    """How the network runs is this machine's choice; what it computes (pixels, weights) is compared."""
    trained = dict(profile="inception", random_init=True, seed=0, coverage="center", crops=1, short_side=32, crop_size=32,
                   norm="minus1to1", tail="pad", clip_len=16, feature_dim=1024, precision="fp32",
                   runtime="torch")
    kw, _ = resolve_extractor(trained, dict(runtime="openvino", precision="bf16", profile=None))
    assert kw["runtime"] == "openvino" and kw["precision"] == "bf16"
    check_extractor(trained, dict(trained, precision="bf16", runtime="openvino"))       # no error
    with pytest.raises(ValueError, match="short_side"):
        check_extractor(trained, dict(trained, short_side=64))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# (runtime, precision, least cosine to torch fp32 on random weights and random input)
CASES = [("torch", "bf16", 0.999), ("onnxruntime", "fp32", 0.99999), ("openvino", "fp32", 0.99999),
         ("openvino", "bf16", 0.999)]


@pytest.mark.parametrize("runtime,precision,least", CASES)
def test_features_match_torch_fp32(runtime, precision, least):
    """Every path on uint8 clips (N, 16, H, W, 3) of two sizes (the per-shape cache) against torch
    fp32, through ``features`` (OpenVINO normalises the whole frame in its own graph)."""
    if runtime != "torch" and importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} not installed (optional: pip install {runtime})")
    kw = dict(profile="inception", random_init=True, seed=0, short_side=32, crop_size=32, device="cpu")
    ref = FeatureExtractor(runtime="torch", precision="fp32", **kw)
    fx = FeatureExtractor(runtime=runtime, precision=precision, **kw)
    assert fx.meta["runtime"] == runtime and fx.meta["precision"] == precision
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 16, 32, 32, 3)] + ([(3, 16, 32, 48, 3)] if precision == "fp32" else [])   # fp32: the cache
    for shape in shapes:
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        a, b = (e.features(x).reshape(shape[0], -1) for e in (ref, fx))   # (N, regions * 1024)
        assert b.shape == a.shape and b.dtype == np.float32
        assert cosine(a, b).min() >= least
        if precision == "fp32":
            assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())


def test_grid_record_builds_its_extractor():
    """A grid checkpoint records crops = regions (4); that count is not passed back as --crops."""
    trained = dict(profile="inception", random_init=True, seed=0, coverage="grid", grid="2x2", crops=4,
                   short_side=32, crop_size=None, norm="minus1to1", tail="pad", clip_len=16, feature_dim=1024,
                   precision="fp32", runtime="torch")
    kw, _ = resolve_extractor(trained, dict(runtime="torch", precision="fp32"))
    assert "crops" not in kw
    fx = FeatureExtractor(device="cpu", **kw)
    assert fx.crops == 4
    check_extractor(trained, fx.meta)


def test_openvino_cache_gives_the_same_features(tmp_path, monkeypatch):
    """A second extractor reads the converted model kept by the first (one xml per shape in the cache
    folder) and gives the same features; the cache off (empty variable) writes nothing."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino not installed (optional: pip install openvino)")
    kw = dict(profile="inception", random_init=True, seed=0, short_side=32, device="cpu",
              runtime="openvino", precision="fp32")
    x = torch.randint(0, 256, (2, 16, 32, 32, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    monkeypatch.setenv("PIPELINE_OPENVINO_CACHE", str(tmp_path / "ov"))
    first = FeatureExtractor(**kw).features(x)
    kept = sorted((tmp_path / "ov").glob("*.xml"))
    assert len(kept) == 1
    second = FeatureExtractor(**kw).features(x)
    assert sorted((tmp_path / "ov").glob("*.xml")) == kept
    np.testing.assert_array_equal(first, second)
    monkeypatch.setenv("PIPELINE_OPENVINO_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    FeatureExtractor(**kw).features(x)
    assert not (tmp_path / "home").exists()
