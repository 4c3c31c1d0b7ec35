"""pipeline.detect: raw video -> per-frame scores, intervals, plot; windowing; bad input.

The end-to-end fixture writes a few short generated videos (pipeline.synth.videos), extracts their
features with a random-weight I3D at 64x64 (pipeline.extract), fits a small model to their known
clip labels and runs the detect CLI on a held-out video with a planted anomaly.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import detect as det
from pipeline.scoring import checkpoint
from pipeline.scoring import timeline
from pipeline.scoring.checkpoint import score_clips
from pipeline.model.network import AnomalyGCN
from pipeline.model.training import feature_statistics
from pipeline.synth.videos import Event, VideoSpec, write_ucf_dataset, write_video

FX = ["--short-side", "64", "--crop-size", "56"]
RANDOM = ["--profile", "32x2", "--random-init", "--seed", "0"]


# ----------------------------------------------------------------------------- pure functions

def test_frame_scores_length_pad_and_drop():
    s = np.array([0.1, 0.9, 0.3])
    f = timeline.frame_scores(s, 40)                      # tail pad: 3 clips for 40 frames
    assert len(f) == 40 and f[0] == 0.1 and f[16] == 0.9 and f[-1] == 0.3
    f = timeline.frame_scores(s, 55)                      # tail drop: frames after clip 3 take its score
    assert len(f) == 55 and np.all(f[48:] == 0.3)


def test_find_intervals_threshold_merge_and_min_duration():
    fps = 10.0
    s = np.zeros(100)
    s[10:30] = 0.9          # 2.0 s
    s[33:40] = 0.8          # gap of 3 frames (0.3 s) -> merged with the first
    s[60:65] = 0.95         # 0.5 s -> dropped by min_duration 1.0
    ivs = timeline.find_intervals(s, fps, threshold=0.5, min_duration=1.0, merge_gap=0.5)
    assert len(ivs) == 1
    iv = ivs[0]
    assert (iv["start_frame"], iv["end_frame"]) == (10, 39)
    assert iv["start_s"] == 1.0 and iv["end_s"] == 4.0 and iv["peak_score"] == 0.9
    assert timeline.find_intervals(s, fps, 0.5, min_duration=0.0, merge_gap=0.0)[-1]["start_frame"] == 60
    assert timeline.find_intervals(np.full(10, 0.2), fps) == []


def test_window_starts_cover_and_overlap():
    assert checkpoint.window_starts(100, 128, 0.5) == [0]
    st = checkpoint.window_starts(1000, 256, 0.5)
    assert st[0] == 0 and st[-1] == 1000 - 256
    assert all(b - a <= 128 for a, b in zip(st, st[1:]))


def test_windowing_leaves_short_videos_unchanged_and_bounds_long_ones():
    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=2048).eval()
    rng = np.random.default_rng(0)
    short = rng.random((300, 2, 2048), dtype=np.float32)
    # shorter than the window: bit-identical to evaluate.score_clips (one graph over the video)
    assert np.array_equal(checkpoint.score_windowed(model, short, window=300), score_clips(model, short))

    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    long = rng.random((5000, 1, 2048), dtype=np.float32)
    s = checkpoint.score_windowed(model, long, window=512, overlap=0.5)
    hook.remove()
    assert s.shape == (5000,) and np.isfinite(s).all()
    # the largest graph built had 512 nodes: adjacency 512^2 instead of 5000^2
    assert max(seen) == 512 and len(seen) == len(checkpoint.window_starts(5000, 512, 0.5))


# ----------------------------------------------------------------------------- end to end

def _train_clip_supervised(videos: list[dict], features: Path, steps: int = 100) -> dict:
    """A small AnomalyGCN fitted to the generated videos' known clip labels (BCE per clip).

    The weakly supervised trainer is tested in test_train/test_demo; here we need a model that is
    known to respond to the planted event, so that the test checks detect itself.
    """
    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=2048, dropout=0.0)
    data = []
    for v in videos:
        x = torch.from_numpy(np.load(next(features.rglob(f"{v['name']}.npy"))))[:, 0][None]   # (1, clips, 2048)
        y = torch.zeros(x.shape[1])
        for s, e in v["anomalies"]:
            y[s // 16:e // 16 + 1] = 1.0
        data.append((x, y[None]))
    # random-weight features have an arbitrary scale: standardise them as `train --standardize` does
    mean, std = feature_statistics(x[0] for x, _ in data)
    model.feature_mean.copy_(mean)
    model.feature_std.copy_(std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(torch.nn.functional.binary_cross_entropy(model(x)["scores"], y) for x, y in data)
        loss.backward()
        opt.step()
    config = {"dropout": 0.0, "adjacency": "learned", "similarity": model.similarity,
              "graph_features": model.graph_features, "proximity": model.proximity}   # the graph it was fitted with
    return {"model": model.state_dict(), "config": config, "in_dim": 2048, "epoch": steps, "extractor": None}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Generated videos, their features (pipeline.extract) and a model trained on them."""
    from pipeline import extract

    root = tmp_path_factory.mktemp("detect")
    data = root / "data"
    plan = write_ucf_dataset(data, 2, 2, 0, 0, seed=3, seconds=(5, 6), progress=False, kinds=["flash"])
    assert extract.main([str(data / "videos"), "--out", str(data / "features"), "--workers", "0",
                         "--no-progress", "--device", "cpu", *FX, *RANDOM]) == 0
    (root / "run").mkdir()
    torch.save(_train_clip_supervised(plan["videos"], data / "features"), root / "run" / "model.pt")
    # a held-out video: calm scene with a flash from frame 40 to 71 (2 s at 16 fps)
    spec = VideoSpec("probe_video", n_frames=117, fps=16, size=64, seed=123, events=[Event("flash", 40, 71)])
    video = write_video(spec, root / "in" / "probe_video.mp4")
    return dict(root=root, run=root / "run", video=video, spec=spec)


@pytest.mark.slow   # end to end: generated videos -> extract -> detect
def test_detect_cli_end_to_end(trained, capsys):
    out = trained["root"] / "det"
    rc = det.main([str(trained["video"]), "--checkpoint", str(trained["run"]), "--out", str(out),
                   "--device", "cpu", *FX, *RANDOM])
    assert rc == 0
    scores = timeline.read_scores_csv(out / "probe_video.scores.csv")
    assert len(scores) == trained["spec"].n_frames                # one row per decoded frame
    ivs = timeline.read_intervals_csv(out / "probe_video.intervals.csv")
    assert ivs, f"no interval found; max score {scores.max():.3f}"
    gt = range(40, 72)
    assert any(iv["start_frame"] <= g <= iv["end_frame"] for iv in ivs for g in gt)
    assert (out / "probe_video.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is True and summary["videos"][0]["frames"] == 117
    printed = capsys.readouterr().out
    assert "probe_video" in printed and "RANDOM" in printed

    # a rerun with the same settings keeps the finished video; other settings are never silently overwritten
    before = (out / "probe_video.scores.csv").stat().st_mtime_ns
    rc = det.main([str(trained["video"]), "--checkpoint", str(trained["run"]), "--out", str(out), *FX, *RANDOM])
    assert rc == 0 and (out / "probe_video.scores.csv").stat().st_mtime_ns == before
    rc = det.main([str(trained["video"]), "--checkpoint", str(trained["run"]), "--out", str(out),
                   "--threshold", "0.6", *FX, *RANDOM])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert det.main([str(trained["video"]), "--checkpoint", str(trained["run"]), "--out", str(out),
                     "--overwrite", "--quiet", *FX, *RANDOM]) == 0


def _with_extractor(trained, name: str, extractor: dict | None) -> Path:
    """A copy of the trained checkpoint with the given 'extractor' record."""
    state = torch.load(trained["run"] / "model.pt", map_location="cpu", weights_only=True)
    state["extractor"] = extractor
    path = trained["root"] / name
    torch.save(state, path)
    return path


RECORD = dict(profile="32x2", weights=None, weights_sha256=None, random_init=True, seed=0, crops=1,
              short_side=64, crop_size=56, norm="kinetics", tail="pad", clip_len=16, feature_dim=2048)


@pytest.mark.slow   # end to end: generated videos -> extract -> detect
def test_detect_reads_extractor_from_checkpoint(trained, capsys):
    ckpt = _with_extractor(trained, "recorded.pt", RECORD)
    out = trained["root"] / "det_recorded"
    assert det.main([str(trained["video"]), "--checkpoint", str(ckpt), "--out", str(out), "--quiet"]) == 0
    assert len(timeline.read_scores_csv(out / "probe_video.scores.csv")) == 117
    # the same scores as with the settings given by hand
    a = timeline.read_scores_csv(out / "probe_video.scores.csv")
    b = timeline.read_scores_csv(trained["root"] / "det" / "probe_video.scores.csv")
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow   # end to end: generated videos -> extract -> detect
def test_detect_refuses_extractor_mismatch(trained, capsys):
    ckpt = _with_extractor(trained, "tencrop.pt", dict(RECORD, crops=10, short_side=256, crop_size=224))
    rc = det.main([str(trained["video"]), "--checkpoint", str(ckpt), "--out", str(trained["root"] / "x"),
                   "--crops", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--crops 1 (trained with 10)" in err
    ckpt = _with_extractor(trained, "pretrained.pt", dict(RECORD, random_init=False, weights_sha256="ab" * 32))
    rc = det.main([str(trained["video"]), "--checkpoint", str(ckpt), "--out", str(trained["root"] / "y"),
                   "--random-init", "--quiet"])
    assert rc == 2 and "--random-init True (trained with False)" in capsys.readouterr().err
    assert not (trained["root"] / "x").exists()


@pytest.mark.slow   # end to end: generated videos -> extract -> detect
def test_detect_missing_checkpoint(trained, tmp_path, capsys):
    rc = det.main([str(trained["video"]), "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "nope" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = det.main([str(trained["video"]), "--checkpoint", str(bad), "--out", str(tmp_path / "o")])
    assert rc == 2 and "bad.pt" in capsys.readouterr().err


@pytest.mark.slow   # end to end: generated videos -> extract -> detect
def test_detect_unreadable_video_among_good_ones(trained, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 this is not a video" * 50)
    out = tmp_path / "det"
    rc = det.main([str(broken), str(trained["video"]), str(tmp_path / "missing.mp4"),
                   "--checkpoint", str(trained["run"]), "--out", str(out), *FX, *RANDOM])
    err = capsys.readouterr().err
    assert rc == 1
    assert "broken.mp4" in err and "missing.mp4" in err
    assert len(timeline.read_scores_csv(out / "probe_video.scores.csv")) == 117     # the good one has results
    rows = {v["video"]: v for v in json.loads((out / "summary.json").read_text())["videos"]}
    assert rows["broken"]["status"] == "error" and rows["probe_video"]["status"] == "ok"
    assert re.search(r"broken\.mp4", rows["broken"]["error"])


@pytest.mark.slow   # end to end: generated videos -> extract -> detect
def test_detect_checkpoint_of_other_shapes_exits_2_naming_it(trained, tmp_path, capsys):
    state = torch.load(trained["run"] / "model.pt", map_location="cpu", weights_only=True)
    state["model"] = {k: (v[:, :100] if v.ndim == 2 and v.shape[1] == 2048 else v) for k, v in state["model"].items()}
    torch.save(state, tmp_path / "narrow.pt")                         # weights for 100-d features, in_dim 2048
    rc = det.main([str(trained["video"]), "--checkpoint", str(tmp_path / "narrow.pt"), "--out", str(tmp_path / "o"),
                   *FX, *RANDOM])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "narrow.pt" in err[0] and "does not fit" in err[0]
    assert not (tmp_path / "o").exists()
