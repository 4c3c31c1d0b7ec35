"""Real footage, real folders (issue 16) and frame folders (issue 15, part 2).

Videos are generated with PyAV (tests/videogen.py): a variable frame rate through chosen
timestamps, a phone-style rotation through the display matrix, degenerate files, cameras with the
same file names, folders of numbered images. Detection uses an untrained model: these tests check
times, names, statuses and files, not scores.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import detect as det
from pipeline.apps import detection
from pipeline.scoring import checkpoint
from pipeline.scoring import timeline
from pipeline.extract import main as extract_main
from pipeline.features.featstore import read_manifest
from pipeline.features.video import FrameStream, find_keyed_videos, find_videos, natural_key
from videogen import make_frame_folder, make_video, truncate

ROOT = Path(__file__).resolve().parents[1]
FX = ["--short-side", "32", "--crop-size", "32", "--random-init", "--profile", "32x2"]
TINY = [*FX, "--no-progress", "--workers", "0"]
#: 10 frames at 0.1 s, then 30 at 25 fps: frame 10 is at 1.0 s, not 10/fps
VFR_PTS = [i * 100 for i in range(10)] + [1000 + 40 * i for i in range(30)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained model's checkpoint (no extractor record: detect extracts as the flags say)."""
    from pipeline.model.network import AnomalyGCN

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": AnomalyGCN(in_dim=2048, dropout=0.0).state_dict(),
                "config": {"dropout": 0.0, "adjacency": "learned"}, "in_dim": 2048, "epoch": 1,
                "extractor": None}, path)
    return path


def detect(args, ckpt, out, *extra, plot=False):
    return det.main([*map(str, args), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu",
                     "--quiet", *FX, *extra, *([] if plot else ["--no-plot"])])


def summary_rows(out: Path) -> dict:
    return {v["video"]: v for v in json.loads((out / "summary.json").read_text())["videos"]}


# ----------------------------------------------------------------------------- 1. variable frame rate

def test_variable_frame_rate_times_come_from_the_frames(tmp_path, ckpt):
    video = make_video(tmp_path / "vfr.mp4", 40, pts_ms=VFR_PTS)
    s = FrameStream(video, short_side=32)
    assert len(list(s)) == 40
    np.testing.assert_allclose(s.times, np.array(VFR_PTS) / 1000, atol=1e-6)

    out = tmp_path / "d"
    assert detect([video], ckpt, out) == 0
    csv = np.loadtxt(out / "vfr.scores.csv", delimiter=",", skiprows=1)           # frame, time_s, score
    np.testing.assert_allclose(csv[:, 1], np.array(VFR_PTS) / 1000, atol=1e-4)      # not frame / average fps
    row = summary_rows(out)["vfr"]
    assert row["vfr"] is True and row["duration_s"] == pytest.approx(1000 / 1000 + 30 * 0.04, abs=1e-3)
    # the review page carries the frames' times (its seek and playhead use them)
    from pipeline.scoring.review import detect_page_data
    page = detect_page_data(out, json.loads((out / "summary.json").read_text()), thumbnails=False)
    np.testing.assert_allclose(page["videos"][0]["times"], np.array(VFR_PTS) / 1000, atol=1e-4)


def test_intervals_are_measured_on_the_frames_times():
    times = np.array(VFR_PTS) / 1000                                       # (40,)
    scores = np.zeros(40)
    scores[5:15] = 0.9             # frames 5-9 last 0.1 s each, 10-14 0.04 s: 0.5 + 0.2 = 0.7 s
    ivs = timeline.find_intervals(scores, 25.0, 0.5, min_duration=0.6, merge_gap=0.0, times=times)
    assert len(ivs) == 1
    assert (ivs[0]["start_s"], ivs[0]["end_s"], ivs[0]["duration_s"]) == (0.5, 1.2, 0.7)
    # by frame count at 25 fps the same run would be 0.4 s long and dropped
    assert timeline.find_intervals(scores, 25.0, 0.5, min_duration=0.6, merge_gap=0.0) == []
    # a constant rate gives what the frame-count rule gives
    cfr = np.arange(40) / 25.0
    for mg, md in ((0.0, 0.0), (0.2, 0.3), (0.5, 1.0)):
        assert timeline.find_intervals(scores, 25.0, 0.5, md, mg, times=cfr) == timeline.find_intervals(scores, 25.0, 0.5, md, mg)


# ----------------------------------------------------------------------------- 2. rotation

def test_rotation_is_applied_as_players_do(tmp_path, ckpt):
    flat = make_video(tmp_path / "flat.mp4", 20, 64, 48)
    phone = make_video(tmp_path / "phone.mp4", 20, 64, 48, rotation=90)
    a = list(FrameStream(flat, short_side=None))
    s = FrameStream(phone, short_side=None)
    b = list(s)
    assert s.rotation == 90 and s.rotation_applied
    assert b[0].shape == (64, 48, 3)                                   # shown upright: 48 wide, 64 high
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.rot90(x), y)                  # counter-clockwise, as players turn it
    out = tmp_path / "o"
    assert extract_main([str(tmp_path), "--out", str(out), *TINY]) == 0
    rows = read_manifest(out)
    assert rows["phone"]["rotation"] == 90 and rows["phone"]["rotation_applied"] is True
    assert not np.allclose(np.load(out / "phone.npy"), np.load(out / "flat.npy"))
    d = tmp_path / "d"
    assert detect([flat, phone], ckpt, d) == 0
    assert (d / "phone.scores.csv").read_text() != (d / "flat.scores.csv").read_text()


# ----------------------------------------------------------------------------- 3. degenerate inputs

@pytest.fixture(scope="module")
def degenerate(tmp_path_factory):
    d = tmp_path_factory.mktemp("degenerate")
    make_video(d / "one.mp4", 1)
    make_video(d / "fifteen.mp4", 15)
    make_frame_folder(d / "png", 1)
    shutil.move(d / "png" / "000.png", d / "still.mp4")               # a PNG renamed .mp4
    (d / "png").rmdir()
    truncate(make_video(d / "cut.mp4", 64, faststart=True))            # index first, data cut
    make_video(d / "fine.mp4", 40)
    return d


def test_degenerate_inputs_extract(degenerate, tmp_path):
    out = tmp_path / "o"
    assert extract_main([str(degenerate), "--out", str(out), *TINY]) == 1
    rows = read_manifest(out)
    assert rows["fine"]["status"] == "ok"
    for name in ("one", "fifteen"):
        assert rows[name]["status"] == "partial" and "shorter than one 16-frame clip" in rows[name]["error"]
    assert rows["cut"]["status"] == "partial" and "truncated" in rows["cut"]["error"]
    assert rows["still"]["status"] == "failed" and "still image" in rows["still"]["error"]


def test_degenerate_inputs_detect_warn_and_exit_1(degenerate, tmp_path, ckpt, capsys):
    out = tmp_path / "d"
    rc = detect([degenerate], ckpt, out)
    err = capsys.readouterr().err
    assert rc == 1                                                   # as extract: partial or failed
    lines = [l for l in err.splitlines() if l.strip()]
    assert all(l.startswith(("warning: ", "error: ")) for l in lines), err          # no traceback
    for name, what in (("one.mp4", "shorter than one"), ("fifteen.mp4", "shorter than one"),
                       ("cut.mp4", "truncated"), ("still.mp4", "still image")):
        assert any(name in l and what in l for l in lines), (name, err)
    rows = summary_rows(out)
    assert rows["still"]["status"] == "error" and rows["fine"]["status"] == "ok" and not rows["fine"].get("warning")
    assert "shorter than one" in rows["one"]["warning"]
    assert detect([degenerate / "fine.mp4"], ckpt, tmp_path / "d2") == 0


# ----------------------------------------------------------------------------- 4. same names, two cameras

def test_same_file_name_in_two_folders(tmp_path, ckpt):
    src = tmp_path / "cctv"
    make_video(src / "cam1" / "2024-01-01_0800.mp4", 20, seed=1)
    make_video(src / "cam2" / "2024-01-01_0800.mp4", 20, seed=2)
    assert [k for _, k in find_keyed_videos([src])] == ["cam1/2024-01-01_0800", "cam2/2024-01-01_0800"]
    out = tmp_path / "f"
    assert extract_main([str(src), "--out", str(out), *TINY]) == 0
    a, b = np.load(out / "cam1" / "2024-01-01_0800.npy"), np.load(out / "cam2" / "2024-01-01_0800.npy")
    assert not np.allclose(a, b)
    rows = read_manifest(out)
    assert rows["cam1/2024-01-01_0800"]["path"].endswith("cam1/2024-01-01_0800.mp4")
    d = tmp_path / "d"
    assert detect([src], ckpt, d, plot=True) == 0
    for cam in ("cam1", "cam2"):
        assert (d / cam / "2024-01-01_0800.scores.csv").is_file() and (d / cam / "2024-01-01_0800.png").is_file()
    assert set(summary_rows(d)) == {"cam1/2024-01-01_0800", "cam2/2024-01-01_0800"}
    page = (d / "review.html").read_text()
    assert "cam1/2024-01-01_0800" in page and "cam2/2024-01-01_0800" in page
    # the same name given as two files: the second fails alone, the first gets results
    rc = detect([src / "cam1" / "2024-01-01_0800.mp4", src / "cam2" / "2024-01-01_0800.mp4"], ckpt, tmp_path / "e")
    assert rc == 1 and summary_rows(tmp_path / "e")["2024-01-01_0800"]["status"] == "ok"


# ----------------------------------------------------------------------------- 5. resumable detect

def test_detect_resumes_after_ctrl_c_and_takes_new_videos(tmp_path, ckpt, monkeypatch, capsys):
    src = tmp_path / "v"
    for i in range(3):
        make_video(src / f"v{i}.mp4", 20, seed=i)
    out = tmp_path / "d"
    real, calls = checkpoint.score_windowed, []

    def stop_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(detection, "score_windowed", stop_on_second)
    assert detect([src], ckpt, out) == 130                           # Ctrl-C during video 2 of 3
    monkeypatch.setattr(detection, "score_windowed", real)
    assert set(summary_rows(out)) == {"v0"} and "v0" in (out / "review.html").read_text()
    first = (out / "v0.scores.csv").stat().st_mtime_ns

    make_video(src / "v3.mp4", 20, seed=3)                           # one more video in the folder
    capsys.readouterr()
    assert det.main([str(src), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu", "--no-plot", *FX]) == 0
    assert "1 video(s) already have results" in capsys.readouterr().out
    assert (out / "v0.scores.csv").stat().st_mtime_ns == first        # not redone
    rows = summary_rows(out)
    assert set(rows) == {"v0", "v1", "v2", "v3"} and all(r["status"] == "ok" for r in rows.values())
    page = (out / "review.html").read_text()
    assert all(f"v{i}" in page for i in range(4))
    # other settings: refused without --overwrite, redone with it
    assert detect([src], ckpt, out, "--threshold", "0.7") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert detect([src], ckpt, out, "--threshold", "0.7", "--overwrite") == 0
    assert (out / "v0.scores.csv").stat().st_mtime_ns != first


# ----------------------------------------------------------------------------- 6. unwritable --out

def test_unwritable_out_is_refused_before_any_work(tmp_path, ckpt, capsys, monkeypatch):
    video = make_video(tmp_path / "a.mp4", 20)
    afile = tmp_path / "afile"
    afile.write_text("x")
    import pipeline.extract as ex

    def no_extractor(*a, **k):
        raise AssertionError("the extractor was built before --out was checked")
    monkeypatch.setattr(ex, "FeatureExtractor", no_extractor)
    for out in (afile, afile / "sub"):                                 # --out names a file / lies under one
        assert detect([video], ckpt, out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--out {out}" in err[0] and "Traceback" not in err[0]


def test_read_only_out_in_a_mount_namespace(tmp_path, ckpt):
    """Root writes anywhere a permission bit says no; a read-only bind mount stops it too."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    video = make_video(tmp_path / "a.mp4", 20)
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} {ro}"
                            f" && ! touch {ro}/x 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no read-only bind mount here ({probe.stderr.decode().strip()[:100]})")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = ("import sys; from pipeline.detect import main; "
              f"sys.exit(10 * main([{str(video)!r}, '--checkpoint', {str(ckpt)!r}, '--out', {str(ro)!r}, *sys.argv[1:]])"
              f" + main([{str(video)!r}, '--checkpoint', {str(ckpt)!r}, '--out', {str(ro / 'new')!r}, *sys.argv[1:]]))")
    cmd = (f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} {ro} && exec {sys.executable} -c \"$0\" \"$@\"")
    r = subprocess.run(["unshare", "-m", "sh", "-c", cmd, script, "--device", "cpu", "--quiet", *FX],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 22 and len(err) == 2, r.stderr            # a read-only folder, a read-only parent
    for out, line in zip((ro, ro / "new"), err):
        assert line.startswith(f"error: --out {out}: cannot write there"), line


# ----------------------------------------------------------------------------- 7. --device cuda, no GPU

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("module", ["extract", "train", "evaluate", "detect", "demo"])
def test_device_cuda_without_gpu_is_one_line(module, tmp_path, ckpt, capsys, caplog):
    import importlib

    video = make_video(tmp_path / "a.mp4", 20)
    out = tmp_path / "out"
    args = {"extract": [str(video), "--out", str(out), *FX],
            "train": ["--data-root", str(tmp_path), "--out", str(out)],
            "evaluate": ["--data-root", str(tmp_path), "--checkpoint", str(ckpt), "--out", str(out)],
            "detect": [str(video), "--checkpoint", str(ckpt), "--out", str(out)],
            "demo": ["--out", str(out), "--quick"]}[module]
    rc = importlib.import_module(f"pipeline.{module}").main([*args, "--device", "cuda"])
    err = [l for l in capsys.readouterr().err.strip().splitlines() if l.strip()]
    err += [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]     # extract logs its errors
    assert rc == 2 and len(err) == 1 and "--device cuda" in err[0] and "no CUDA GPU" in err[0], err
    assert not out.exists()                                            # nothing left behind


# ----------------------------------------------------------------------------- frame folders (issue 15)

def test_natural_order_and_discovery(tmp_path):
    assert sorted(["frame_10.jpg", "frame_9.jpg", "1.png", "000.jpg"], key=natural_key) == \
        ["000.jpg", "1.png", "frame_9.jpg", "frame_10.jpg"]
    names = ["frame_1.png", "frame_2.png", "frame_10.png"]
    make_frame_folder(tmp_path / "root" / "Test001", 3, names=names)
    make_frame_folder(tmp_path / "root" / "Train001", 2)
    make_video(tmp_path / "root" / "clips" / "a.mp4", 16)
    (tmp_path / "root" / "clips" / "poster.jpg").write_bytes(b"x")    # a folder with a video: not frames
    found = find_keyed_videos([tmp_path / "root"])
    assert [k for _, k in found] == ["Test001", "Train001", "clips/a"]
    assert find_videos(tmp_path / "root" / "Test001") == [tmp_path / "root" / "Test001"]
    s = FrameStream(tmp_path / "root" / "Test001", short_side=None, image_fps=10)
    frames = list(s)
    assert s.times == [0.0, 0.1, 0.2] and s.fps == 10
    from videogen import frame_image
    np.testing.assert_array_equal(frames[2], frame_image(2, 64, 48))  # frame_10 is the third frame


def test_frame_folder_features_equal_those_of_a_video_of_its_frames(tmp_path):
    make_frame_folder(tmp_path / "frames" / "clip", 20)
    make_video(tmp_path / "videos" / "clip.mov", 20, codec="png")     # the same frames, losslessly
    a, b = tmp_path / "a", tmp_path / "b"
    assert extract_main([str(tmp_path / "frames"), "--out", str(a), "--fps", "10", *TINY]) == 0
    assert extract_main([str(tmp_path / "videos"), "--out", str(b), *TINY]) == 0
    np.testing.assert_array_equal(np.load(a / "clip.npy"), np.load(b / "clip.npy"))
    row = read_manifest(a)["clip"]
    assert row["frame_folder"] is True and row["fps"] == 10 and row["frames"] == 20


def test_frame_folder_errors_name_the_file_and_the_run_goes_on(tmp_path, ckpt):
    root = tmp_path / "root"
    make_frame_folder(root / "mixed", 18)
    make_frame_folder(root / "mixed", 1, width=32, height=32, names=["017.png"])   # one of another size
    make_frame_folder(root / "broken", 18)
    (root / "broken" / "005.png").write_bytes(b"not an image")
    make_frame_folder(root / "good", 18, ext=".jpg")
    out = tmp_path / "o"
    assert extract_main([str(root), "--out", str(out), *TINY]) == 1
    rows = read_manifest(out)
    assert rows["good"]["status"] == "ok" and (out / "good.npy").is_file()
    assert rows["mixed"]["status"] == "failed" and "017.png" in rows["mixed"]["error"] and "size" in rows["mixed"]["error"]
    assert rows["broken"]["status"] == "failed" and "005.png" in rows["broken"]["error"]
    d = tmp_path / "d"
    assert detect([root], ckpt, d, "--fps", "10") == 1
    r = summary_rows(d)
    assert r["good"]["status"] == "ok" and r["good"]["fps"] == 10 and r["mixed"]["status"] == "error"
    t = np.loadtxt(d / "good.scores.csv", delimiter=",", skiprows=1)[:, 1]
    np.testing.assert_allclose(t, np.arange(18) / 10)


def test_ucsd_ped2_frames_are_28_videos():
    root = Path("/work/shared/realdata/ucsd_ped2/frames")
    if not root.is_dir():
        pytest.skip("no UCSD Ped2 frames here")
    keys = [k for _, k in find_keyed_videos([root])]
    assert keys == [f"Test{i:03d}" for i in range(1, 13)] + [f"Train{i:03d}" for i in range(1, 17)]


# ----------------------------------------------------------------------------- 10, 11. small things, layers

def test_small_things(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        extract_main([str(tmp_path), "--dataset", "foo"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        det.build_parser().parse_args(["v.mp4", "--checkpoint", "c", "--html"])   # no no-op flag
    capsys.readouterr()


def test_all_failed_run_does_not_claim_results(tmp_path, ckpt, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00 not a video" * 40)
    assert det.main([str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "d"), "--device", "cpu", *FX]) == 1
    printed = capsys.readouterr().out
    assert "wrote" not in printed and "no video got results" in printed


def test_review_does_not_import_detect():
    """The layers read one way: review, evaluate and timeline never import detect (no cycle)."""
    import ast

    for name in ("review", "scoring/review", "evaluate", "scoring/evaluation", "scoring/timeline", "scoring/plots",
                 "common/metrics"):
        tree = ast.parse((ROOT / "pipeline" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {"detect", "pipeline.detect", "pipeline.apps.detection"} & imported, \
            f"pipeline/{name}.py imports detect"


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the page's script")
def test_page_script_finds_the_same_intervals_on_frame_times(tmp_path):
    """common.js mirrors timeline.find_intervals, times included (the browser tests check the page;
    this runs the same functions in node where no browser is installed)."""
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.choice([0.02, 0.04, 0.1], 300)).round(4) - 0.02                 # (300,) VFR
    scores = np.clip(np.convolve(rng.random(300), np.ones(9) / 9, "same") * 1.6 - 0.3, 0, 1).round(6)
    cases = [(0.5, 0.0, 0.0), (0.5, 0.3, 0.2), (0.4, 1.0, 0.5), (0.6, 0.1, 1.0)]
    script = tmp_path / "run.js"
    script.write_text(
        "const fs = require('fs'), vm = require('vm');\n"
        f"vm.runInThisContext(fs.readFileSync({str(ROOT / 'pipeline/scoring/review_assets/common.js')!r}, 'utf8'));\n"
        f"const s = {json.dumps(scores.tolist())}, t = {json.dumps(times.tolist())};\n"
        f"console.log(JSON.stringify({json.dumps(cases)}.map(([th, md, mg]) => "
        "[findIntervals(s, 25, th, md, mg, t), findIntervals(s, 25, th, md, mg)])));\n")
    r = subprocess.run(["node", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    found = 0
    for (th, md, mg), (timed, counted) in zip(cases, json.loads(r.stdout)):
        for js, py in ((timed, timeline.find_intervals(scores, 25.0, th, md, mg, times=times)),
                       (counted, timeline.find_intervals(scores, 25.0, th, md, mg))):
            assert len(js) == len(py)                  # same runs; numbers to the 6th decimal (rounding)
            assert all(a == pytest.approx(b, abs=2e-6) for a, b in zip(js, py))
            found += len(py)
    assert found > 4
    for name in ("common.js", "detect.js", "report.js"):                   # the page scripts parse
        assert subprocess.run(["node", "--check", str(ROOT / "pipeline/scoring/review_assets" / name)]).returncode == 0
