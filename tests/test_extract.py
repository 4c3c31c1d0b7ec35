"""End to end through the CLI (pipeline.extract.main): shapes, exactness, resume, bad input,
atomicity under kill -9, and torchrun sharding. CPU, random weights, tiny frames."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.features.extractor import FeatureExtractor
from pipeline.extract import main
from pipeline.features.featstore import read_manifest
from pipeline.features.backends import shard
from pipeline.features.video import FrameStream, VideoError
from videogen import make_video, truncate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--random-init", "--short-side", "32", "--crop-size", "32", "--no-progress"]
GOOD = {"a": 37, "sub/odd": 20, "gray": 20, "vfr": 40, "short": 10}  # output key -> frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    make_video(d / "a.mp4", 37)
    make_video(d / "sub" / "odd.AVI", 20, 63, 47)
    make_video(d / "gray.mkv", 20, gray=True)
    make_video(d / "vfr.mkv", 40, vfr=True)
    make_video(d / "short.mp4", 10)
    truncate(make_video(d / "trunc.mp4", 60))
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("not a video\n")
    (d / "notes.txt").write_text("ignored\n")
    return d


@pytest.fixture(scope="module")
def pad_run(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("pad")
    rc = main([str(videos), "--out", str(out), "--workers", "2", "--batch-size", "2", *TINY])
    return out, rc


def test_pad_shapes_status_and_exit_code(pad_run):
    out, rc = pad_run
    assert rc == 1  # some inputs are broken
    rows = read_manifest(out)
    for name, frames in GOOD.items():
        arr = np.load(out / f"{name}.npy")
        assert arr.shape == (-(-frames // 16), 4, 2048) and arr.dtype == np.float32   # the default: 2x2 regions
        assert np.isfinite(arr).all()
        r = rows[name]
        # shorter than one clip: features, but 'partial' with the reason (exit code 1)
        status = "partial" if frames < 16 else "ok"
        assert (r["status"], r["frames"], r["clips"]) == (status, frames, arr.shape[0])
        assert r["random_init"] is True and r["profile"] == "32x2" and r["crops"] == 4
        assert (r["coverage"], r["grid"]) == ("grid", "2x2")
        assert r["decoder"].startswith("pyav")
    for bad in ("empty", "text", "trunc"):
        assert rows[bad]["status"] == "failed" and f"{bad}.mp4" in rows[bad]["error"]
        assert not (out / f"{bad}.npy").exists()
    assert "notes" not in rows
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_drop_tail_and_float16(videos, tmp_path):
    rc = main([str(videos), "--out", str(tmp_path), "--tail", "drop", "--workers", "0",
               "--dtype", "float16", *TINY])
    assert rc == 1
    rows = read_manifest(tmp_path)
    for name, frames in GOOD.items():
        if frames < 16:
            assert rows[name]["status"] == "failed" and "fewer than 16" in rows[name]["error"]
            continue
        arr = np.load(tmp_path / f"{name}.npy")
        assert arr.shape == (frames // 16, 4, 2048) and arr.dtype == np.float16


def test_features_equal_network_by_hand(videos, tmp_path):
    """10 crops through the CLI == decode + torchvision ten_crop + normalise + model by hand."""
    from torchvision.transforms.v2 import functional as F

    video = videos / "a.mp4"
    rc = main([str(video), "--out", str(tmp_path), "--crops", "10", "--workers", "1",
               "--batch-size", "2", "--seed", "3", *TINY])
    assert rc == 0
    got = np.load(tmp_path / "a.npy")
    assert got.shape == (3, 10, 2048)

    ext = FeatureExtractor(random_init=True, seed=3, crops=10, short_side=32, crop_size=32,
                           device="cpu")
    frames = list(FrameStream(video, short_side=32))
    frames += [frames[-1]] * (-len(frames) % 16)                      # pad with the last frame
    clips = torch.from_numpy(np.stack(frames)).reshape(-1, 16, *frames[0].shape)  # (N,16,H,W,3)
    want = []
    with torch.no_grad():
        for clip in clips:
            crops = F.ten_crop(clip.permute(0, 3, 1, 2), [32, 32])    # 10 x (16, 3, 32, 32)
            x = torch.stack([c.permute(1, 0, 2, 3) for c in crops])   # (10, 3, 16, 32, 32)
            x = (x.float() / 255 - 0.45) / 0.225
            want.append(ext.model(x))
    want = torch.stack(want).numpy()                                   # (N, 10, 2048)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    feats, info = ext.extract(video)                                   # the Python API
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-4)
    assert (info["frames"], info["clips"], info["fps"]) == (37, 3, 25.0)
    assert ext.meta["clip_len"] == 16 and ext.meta["feature_dim"] == 2048
    json.dumps(ext.meta)
    with pytest.raises(VideoError, match="empty.mp4"):
        ext.extract(videos / "empty.mp4")


def test_whole_frame_equals_the_network_by_hand_and_grid_regions_average_to_it(videos, tmp_path):
    """--coverage full: the whole resized frame (43 x 32 for a 63 x 47 video) goes through the
    network, recorded as coverage 'full'; the default grid's 2x2 regions (one forward, the map pooled
    per region) average to it; --coverage center gives the old centre-crop features."""
    video = videos / "sub" / "odd.AVI"
    assert main([str(video), "--out", str(tmp_path / "full"), "--coverage", "full", "--workers", "1", *TINY]) == 0
    got = np.load(tmp_path / "full" / "odd.npy")                        # (2, 1, 2048)
    row = read_manifest(tmp_path / "full")["odd"]
    assert (row["coverage"], row["crops"], row["crop_size"]) == ("full", 1, None)
    ext = FeatureExtractor(random_init=True, seed=0, coverage="full", short_side=32, device="cpu")
    frames = list(FrameStream(video, short_side=32))
    assert frames[0].shape == (32, 43, 3)
    frames += [frames[-1]] * (-len(frames) % 16)
    clips = torch.from_numpy(np.stack(frames)).reshape(-1, 16, 32, 43, 3)
    x = (clips.permute(0, 4, 1, 2, 3).float() / 255 - 0.45) / 0.225    # (N, 3, 16, 32, 43)
    with torch.no_grad():
        want = ext.model(x).numpy()[:, None]                           # (N, 1, 2048)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert main([str(video), "--out", str(tmp_path / "grid"), "--workers", "1", *TINY]) == 0
    regions = np.load(tmp_path / "grid" / "odd.npy")                   # (2, 4, 2048)
    assert regions.shape == (2, 4, 2048)
    np.testing.assert_allclose(regions.mean(1, keepdims=True), want, rtol=1e-4, atol=1e-4)   # res5 map 1 x 2
    assert main([str(video), "--out", str(tmp_path / "center"), "--coverage", "center", "--workers", "1",
                 *TINY]) == 0
    centre = np.load(tmp_path / "center" / "odd.npy")
    assert read_manifest(tmp_path / "center")["odd"]["coverage"] == "center"
    assert centre.shape == got.shape and not np.allclose(centre, got)


def test_contradicting_coverage_flags_are_refused(videos, tmp_path, caplog):
    rc = main([str(videos / "a.mp4"), "--out", str(tmp_path / "o"), "--coverage", "full", "--crops", "10", *TINY])
    assert rc == 2 and "--coverage full contradicts --crops 10" in caplog.text
    assert not (tmp_path / "o").exists()


def test_rerun_skips_finished_and_overwrite_redoes(pad_run, videos):
    out, _ = pad_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    rows_before = read_manifest(out)
    rc = main([str(videos), "--out", str(out), "--workers", "0", *TINY])
    assert rc == 1  # the broken ones are retried and fail again
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == before
    assert read_manifest(out)["a"]["time"] == rows_before["a"]["time"]
    # other settings into the same folder: refused
    assert main([str(videos), "--out", str(out), "--crops", "10", "--workers", "0", *TINY]) == 2
    rc = main([str(videos / "a.mp4"), "--out", str(out), "--workers", "0", "--overwrite", *TINY])
    assert rc == 0
    assert (out / "a.npy").stat().st_mtime_ns != before["a.npy"]


def test_shard_is_a_balanced_partition():
    costs = [100, 90, 50, 40, 30, 10, 5, 0]
    names = [f"v{i}" for i in range(len(costs))]
    parts = [shard(costs, names, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(len(costs)))
    assert parts[0][0] == 0 and parts[1][0] == 1  # longest first
    loads = [sum(costs[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= 40


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return env


def test_kill_mid_run_leaves_no_partial_file(videos, tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        make_video(src / f"v{i}.mp4", 80, seed=i)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.extract", str(src), "--out", str(out),
           "--workers", "0", "--batch-size", "1", *TINY]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    tmp_seen = False
    while time.time() < deadline and proc.poll() is None:
        tmps = list(out.glob(".*.tmp")) if out.exists() else []
        if tmps and len(list(out.glob("*.npy"))) >= 1:
            tmp_seen = True
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp_seen, proc.stderr.read().decode()[-2000:]
    finished = list(out.glob("*.npy"))
    assert 1 <= len(finished) < 4
    for p in finished:  # every visible file is complete
        assert np.load(p).shape == (5, 4, 2048)
    assert main([str(src), "--out", str(out), "--workers", "0", *TINY]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == [f"v{i}.npy" for i in range(4)]
    assert not list(out.glob(".*.tmp"))
    rows = read_manifest(out)
    assert all(rows[f"v{i}"]["clips"] == 5 for i in range(4))


def test_torchrun_two_ranks_equal_one_process(pad_run, videos, tmp_path):
    one, _ = pad_run
    out = tmp_path / "ranks"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "pipeline.extract", str(videos), "--out", str(out), "--workers", "1",
           "--batch-size", "2", *TINY]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode != 0  # broken inputs fail on some rank
    rows = read_manifest(out)
    assert {r["rank"] for r in rows.values()} == {0, 1}
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(p.name for p in one.glob("*.npy"))
    for p in one.glob("*.npy"):
        np.testing.assert_allclose(np.load(out / p.name), np.load(p), rtol=1e-4, atol=1e-4)
    assert {k: r["status"] for k, r in rows.items()} == \
        {k: r["status"] for k, r in read_manifest(one).items()}
