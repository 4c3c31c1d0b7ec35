"""pipeline.demo and pipeline.synth.videos: generated videos through every stage.

The slow suite (``-m slow``) runs the demo at its smallest size (every stage, a few videos), and twice
with one seed to check that the result is reproducible. The CI-sized run,
``python -m pipeline.demo --quick``, takes minutes; it runs here only with PIPELINE_DEMO_QUICK=1
(CI sets it, or runs the command itself and checks its last line).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.model import data as D
from pipeline import demo
from pipeline.synth.videos import Event, VideoSpec, annotation_line, render_frames, write_ucf_dataset
from pipeline.features.video import FrameStream


def test_synthvideo_frames_and_planted_event(tmp_path):
    spec = VideoSpec("v", n_frames=50, fps=16, size=32, seed=1, events=[Event("flash", 20, 29)])
    frames = np.stack(list(render_frames(spec)))                     # (50, 32, 32, 3)
    assert frames.shape == (50, 32, 32, 3) and frames.dtype == np.uint8
    brightness = frames.mean(axis=(1, 2, 3))
    assert brightness[20:30].max() > brightness[:20].max() + 50      # the flash is visible
    assert np.array_equal(frames, np.stack(list(render_frames(spec))))   # deterministic
    assert annotation_line(spec, "Explosion") == "v.mp4  Explosion  20  29  -1  -1  "


def test_synthvideo_data_root_is_what_pipeline_data_reads(tmp_path):
    plan = write_ucf_dataset(tmp_path, 2, 3, 1, 3, seed=0, seconds=(3, 4), progress=False, size=32)
    assert D.find_file(tmp_path, "ucf", "train").name == "Anomaly_Train.txt"
    assert D.find_file(tmp_path, "ucf", "test").name == "Anomaly_Test.txt"
    ann = D.read_annotations(D.find_file(tmp_path, "ucf", "annotations"), "ucf")
    entries = D.read_split(tmp_path / "Anomaly_Test.txt", "ucf")
    ann.check_names([e.name for e in entries])
    for e in entries:
        assert bool(e.label) == ann.is_abnormal(e.name)
    train = D.read_split(tmp_path / "Anomaly_Train.txt", "ucf")
    assert sorted(e.label for e in train) == [0, 0, 1, 1, 1]
    # the written file decodes to the planned number of frames
    row = plan["videos"][0]
    stream = FrameStream(row["path"], short_side=None)
    assert sum(1 for _ in stream) == row["n_frames"]


@pytest.mark.slow   # every stage end to end, ~15 s
def test_demo_tiny_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--size", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    last = printed.strip().splitlines()[-1]
    assert re.fullmatch(r"demo AUC: \d\.\d{3} \(AP \d\.\d{3}\)", last), last
    assert "RANDOM weights" in printed
    assert "does not record how its training features were extracted" not in printed   # issue 23: class folders
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is True and 0.0 <= summary["auc"] <= 1.0
    assert Path(summary["plot"]).stat().st_size > 5000
    assert "RANDOM weights" in (out / "DEMO.md").read_text()
    assert list((out / "detections").glob("*.scores.csv")) and (out / "eval" / "report.json").exists()
    # a second run into the same folder is refused
    assert demo.main(["--size", "tiny", "--out", str(out)]) == 2


@pytest.mark.skipif(os.environ.get("PIPELINE_DEMO_QUICK") != "1",
                    reason="the --quick demo takes minutes; set PIPELINE_DEMO_QUICK=1 (CI)")
def test_demo_quick(tmp_path, capsys):
    assert demo.main(["--quick", "--out", str(tmp_path / "demo")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("demo AUC: ")


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_synthvideo_encode_is_deterministic(tmp_path, codec):
    """Same spec -> same file and same decoded pixels, every time (libx264's default rate control is not)."""
    import av

    from pipeline.synth.videos import pick_codec, write_video
    if codec == "libx264" and pick_codec() != "libx264":
        pytest.skip("PyAV has no libx264 here")
    spec = VideoSpec("v", n_frames=48, fps=16, size=64, seed=3, events=[Event("shake", 10, 30)])
    paths = [write_video(spec, tmp_path / f"v{i}.mp4", codec) for i in range(4)]

    def decode(p):
        with av.open(str(p)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])   # (48, 64, 64, 3)
    first = decode(paths[0])
    assert first.shape == (48, 64, 64, 3)
    for p in paths[1:]:
        assert p.read_bytes() == paths[0].read_bytes()
        assert np.array_equal(decode(p), first)
    if codec == "libx264":   # lossless: the decode is the rendered frame up to the RGB -> YUV 4:2:0 round trip
        rendered = np.stack(list(render_frames(spec))).astype(int)
        assert np.abs(decode(paths[0]).astype(int) - rendered).mean() < 4


@pytest.mark.slow
def test_demo_same_seed_same_result(tmp_path, capsys):
    """Two runs of the demo with one seed: the same videos, features, scores and AUC (issue #11: the
    lossy encode once made two identical --quick runs give AUC 0.620 and 0.327)."""
    for name in ("a", "b"):
        assert demo.main(["--size", "tiny", "--out", str(tmp_path / name), "--seed", "1"]) == 0
    capsys.readouterr()
    ra, rb = (json.loads((tmp_path / n / "eval" / "report.json").read_text()) for n in "ab")
    assert ra["auc"] == rb["auc"] and ra["ap"] == rb["ap"]
    for rel in sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "data" / "videos").rglob("*.mp4")):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    sa, sb = np.load(tmp_path / "a" / "eval" / "scores.npz"), np.load(tmp_path / "b" / "eval" / "scores.npz")
    assert sorted(sa.files) == sorted(sb.files) and all(np.array_equal(sa[k], sb[k]) for k in sa.files)
    for f in (tmp_path / "a" / "detections").glob("*.csv"):
        assert f.read_text() == (tmp_path / "b" / "detections" / f.name).read_text(), f.name
