"""The I3D feature network, its two profiles and its weight files (pipeline.i3d)."""
from __future__ import annotations

import hashlib
import pickle
import re

import pytest
import torch

from pipeline.features import i3d
from pipeline.features import weights
from pipeline.features.weights import WeightsError
from pipeline.features.i3d import build_i3d, load_i3d

STAGE = {1: 2, 3: 3, 4: 4, 5: 5}  # pytorchvideo block index -> Caffe2 res stage


@pytest.fixture(scope="module")
def ref32():
    """A random 32x2 network (seed 1) and its trunk state."""
    model, meta = load_i3d("32x2", random_init=True, seed=1)
    state = {k: v for k, v in model.trunk.state_dict().items() if "num_batches_tracked" not in k}
    # make BN statistics non-trivial so a mis-mapped running_var would show
    g = torch.Generator().manual_seed(3)
    for k in state:
        if k.endswith(("running_mean", "running_var", "norm.bias", "norm_a.bias")):
            state[k] = torch.rand(state[k].shape, generator=g) + 0.5
    return state


def to_caffe2(state):
    """pytorchvideo keys -> video-nonlocal-net blob names (written independently of i3d.py)."""
    suf = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}
    blobs = {}
    for k, v in state.items():
        a = v.numpy()
        if k == "blocks.0.conv.weight":
            blobs["conv1_w"] = a
        elif k.startswith("blocks.0.norm."):
            blobs["res_conv1_bn_" + suf[k.split(".")[-1]]] = a
        else:
            m = re.match(r"blocks\.(\d)\.res_blocks\.(\d+)\.(.*)", k)
            stage, blk, rest = STAGE[int(m[1])], m[2], m[3]
            pre = f"res{stage}_{blk}_"
            if rest == "branch1_conv.weight":
                blobs[pre + "branch1_w"] = a
            elif rest.startswith("branch1_norm."):
                blobs[pre + "branch1_bn_" + suf[rest.split(".")[-1]]] = a
            else:
                mm = re.match(r"branch2\.(conv|norm)_([abc])\.(\w+)", rest)
                if mm[1] == "conv":
                    blobs[pre + f"branch2{mm[2]}_w"] = a
                else:
                    blobs[pre + f"branch2{mm[2]}_bn_" + suf[mm[3]]] = a
    blobs["pred_w"] = torch.zeros(400, 2048).numpy()
    blobs["pred_b"] = torch.zeros(400).numpy()
    blobs["conv1_w_momentum"] = blobs["conv1_w"] * 0
    return blobs


def to_resnet3d(state):
    """pytorchvideo keys -> converted i3d_r50_kinetics.pth keys (layerN.i.convK ...)."""
    layer = {1: 1, 3: 2, 4: 3, 5: 4}
    out = {}
    for k, v in state.items():
        if k == "blocks.0.conv.weight":
            out["conv1.weight"] = v
        elif k.startswith("blocks.0.norm."):
            out["bn1." + k.split(".")[-1]] = v
        else:
            m = re.match(r"blocks\.(\d)\.res_blocks\.(\d+)\.(.*)", k)
            pre = f"layer{layer[int(m[1])]}.{m[2]}."
            rest = m[3]
            if rest == "branch1_conv.weight":
                out[pre + "downsample.0.weight"] = v
            elif rest.startswith("branch1_norm."):
                out[pre + "downsample.1." + rest.split(".")[-1]] = v
            else:
                mm = re.match(r"branch2\.(conv|norm)_([abc])\.(\w+)", rest)
                n = "abc".index(mm[2]) + 1
                out[pre + ("conv" if mm[1] == "conv" else "bn") + f"{n}.{mm[3]}"] = v
    out["fc.weight"] = torch.zeros(400, 2048)
    out["fc.bias"] = torch.zeros(400)
    return out


def assert_state_equal(model, state):
    got = model.trunk.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


def test_profiles_differ_only_in_the_stem():
    a, b = build_i3d("8x8"), build_i3d("32x2")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(sa[k].shape == sb[k].shape for k in sa)
    lines_a, lines_b = repr(a).splitlines(), repr(b).splitlines()
    assert len(lines_a) == len(lines_b)
    diff = [(x.strip(), y.strip()) for x, y in zip(lines_a, lines_b) if x != y]
    assert diff == [
        ("(conv): Conv3d(3, 64, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)",
         "(conv): Conv3d(3, 64, kernel_size=(5, 7, 7), stride=(2, 2, 2), padding=(2, 3, 3), bias=False)"),
        ("(pool): MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), dilation=1, ceil_mode=False)",
         "(pool): MaxPool3d(kernel_size=(2, 3, 3), stride=(2, 2, 2), padding=(0, 0, 0), dilation=1, ceil_mode=False)"),
    ]
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        assert a.eval()(x).shape == b.eval()(x).shape == (1, 2048)


def test_random_init_is_deterministic():
    m1, meta = load_i3d("32x2", random_init=True, seed=5)
    m2, _ = load_i3d("32x2", random_init=True, seed=5)
    m3, _ = load_i3d("32x2", random_init=True, seed=6)
    k = "blocks.3.res_blocks.0.branch2.conv_a.weight"
    assert torch.equal(m1.trunk.state_dict()[k], m2.trunk.state_dict()[k])
    assert not torch.equal(m1.trunk.state_dict()[k], m3.trunk.state_dict()[k])
    assert meta["random_init"] is True and meta["weights"] is None and meta["seed"] == 5


def test_caffe2_pkl_loads_into_32x2(tmp_path, ref32):
    path = tmp_path / "i3d_baseline_32x2_IN_pretrain_400k.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": to_caffe2(ref32)}, f, protocol=2)
    model, meta = load_i3d(weights=path)
    assert meta["profile"] == "32x2" and meta["weights_format"] == "video-nonlocal-net"
    assert meta["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_state_equal(model, ref32)
    with pytest.raises(WeightsError, match="profile 32x2"):
        load_i3d("8x8", weights=path)


def test_resnet3d_pth_loads_into_32x2(tmp_path, ref32):
    path = tmp_path / "i3d_r50_kinetics.pth"
    torch.save(to_resnet3d(ref32), path)
    model, meta = load_i3d("32x2", weights=path)
    assert meta["profile"] == "32x2"
    assert_state_equal(model, ref32)


def test_pyth_loads_into_8x8(tmp_path, ref32):
    path = tmp_path / "I3D_8x8_R50.pyth"
    state = dict(ref32)
    state["blocks.6.proj.weight"] = torch.zeros(400, 2048)
    state["blocks.6.proj.bias"] = torch.zeros(400)
    torch.save({"model_state": state, "epoch": 196}, path)
    model, meta = load_i3d(weights=path)
    assert meta["profile"] == "8x8" and meta["weights_format"] == "pytorchvideo"
    assert_state_equal(model, ref32)


def test_bad_weights_are_clear_errors(tmp_path, ref32):
    p = tmp_path / "broken.pth"
    p.write_text("not weights")
    with pytest.raises(WeightsError, match="broken.pth"):
        load_i3d(weights=p)
    partial = {k: v for k, v in list(to_resnet3d(ref32).items())[:10]}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="missing"):
        load_i3d(weights=tmp_path / "partial.pth")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"blobs": {"conv1_w": print}}))
    with pytest.raises(WeightsError):
        load_i3d(weights=evil)


def test_offline_without_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as e:
        load_i3d("32x2")
    msg = str(e.value)
    assert "i3d_baseline_32x2_IN_pretrain_400k.pkl" in msg and "--weights" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg


def test_cached_file_sha256_checked(tmp_path, monkeypatch, ref32):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    dest = i3d.cached_weights_path("32x2")
    dest.parent.mkdir(parents=True)
    torch.save(to_resnet3d(ref32), dest)  # a .pth body under the .pkl name still loads
    model, meta = load_i3d("32x2")
    assert meta["weights"] == str(dest)
    monkeypatch.setitem(weights.KNOWN_SHA256, dest.name, "0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        load_i3d("32x2")


def test_bf16_autocast_close_to_fp32():
    model, _ = load_i3d("32x2", random_init=True)
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.inference_mode():
        f32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b16 = model(x)
    rel = ((b16.float() - f32).norm() / f32.norm()).item()
    assert rel < 0.05


def test_nonlocal_and_other_unmapped_weights_are_refused(tmp_path, ref32):
    """A non-local checkpoint must not load as the plain baseline with its blocks dropped."""
    blobs = to_caffe2(ref32)
    blobs["nonlocal_conv3_1_theta_w"] = blobs["conv1_w"][:1] * 0
    p = tmp_path / "i3d_nonlocal_32x2.pkl"
    with open(p, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    with pytest.raises(WeightsError, match=r"i3d_nonlocal_32x2\.pkl.*nonlocal_conv3_1_theta_w.*non-local"):
        load_i3d(weights=p)
    state = to_resnet3d(ref32)
    state["layer2.0.nl.g.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "nl.pth")
    with pytest.raises(WeightsError, match=r"layer2\.0\.nl\.g\.weight"):
        load_i3d(weights=tmp_path / "nl.pth")
    pv = dict(ref32, **{"blocks.3.res_blocks.1.extra.weight": torch.zeros(1)})
    torch.save(pv, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"blocks\.3\.res_blocks\.1\.extra\.weight"):
        load_i3d("32x2", weights=tmp_path / "extra.pth")


def test_profile_of_pytorchvideo_keys_is_not_guessed(tmp_path, ref32):
    """32x2 weights saved under pytorchvideo keys were taken for 8x8: the two networks have the
    same tensor shapes, so only a published file name (or --profile) can say which it is."""
    p = tmp_path / "my_i3d_32x2.pth"
    torch.save({"model_state": ref32}, p)
    with pytest.raises(WeightsError, match="--profile 8x8 or --profile 32x2"):
        load_i3d(weights=p)
    model, meta = load_i3d("32x2", weights=p)
    assert meta["profile"] == "32x2" and model.trunk.blocks[0].conv.stride == (2, 2, 2)
    assert_state_equal(model, ref32)
    model, meta = load_i3d("8x8", weights=p)
    assert meta["profile"] == "8x8" and model.trunk.blocks[0].conv.stride == (1, 2, 2)


def test_load_errors_never_advise_unsafe_loading(tmp_path):
    """Issue 11.4: torch's advice to pass weights_only=False must not reach the user."""
    import fractions

    torch.save({"model_state": {"a": fractions.Fraction(1, 2)}}, tmp_path / "objects.pth")
    (tmp_path / "text.pth").write_text("not weights")
    for name in ("objects.pth", "text.pth"):
        with pytest.raises(WeightsError) as e:
            load_i3d(weights=tmp_path / name)
        msg = str(e.value)
        assert msg.startswith(str(tmp_path / name)) and "\n" not in msg
        assert "weights_only" not in msg and "allow_pickle" not in msg and "trust" not in msg
    with pytest.raises(WeightsError, match=r"fractions\.Fraction.*can run code"):
        load_i3d(weights=tmp_path / "objects.pth")
