"""Issue 23 "Nothing silent": faults that used to end in a traceback or in a result that differs
without a word. Every test runs a command as a user would (its ``main()`` or a subprocess) and
checks the message and the exit code."""
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

from pipeline import detect
from pipeline.features import reproduce
from pipeline.scoring import timeline
from pipeline import evaluate
from pipeline.scoring import evaluation
from pipeline import extract
from pipeline.model import training
from pipeline import train
from pipeline.synth.videos import write_ucf_dataset

FX = ["--short-side", "64", "--crop-size", "56"]
RANDOM = ["--profile", "32x2", "--random-init", "--seed", "0"]
REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, *args, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m pipeline.<module> args`` in a subprocess, as a user runs it (stderr redirected)."""
    e = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", f"pipeline.{module}", *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- 1: the extractor record

@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    """A tiny UCF-style root of generated videos in class folders (videos/Explosion/x.mp4, ...)."""
    root = tmp_path_factory.mktemp("ucf")
    write_ucf_dataset(root, 2, 2, 1, 1, seed=5, seconds=(2, 3), progress=False, kinds=["flash"])
    return root


def _camera_layout(src: Path, dst: Path) -> Path:
    """The same root with its videos in camera folders (videos/cam1/x.mp4, videos/cam2/y.mp4)."""
    dst.mkdir()
    for f in src.glob("*.txt"):
        shutil.copy(f, dst / f.name)
    for i, v in enumerate(sorted((src / "videos").rglob("*.mp4"))):
        (dst / "videos" / f"cam{i % 2 + 1}").mkdir(parents=True, exist_ok=True)
        shutil.copy(v, dst / "videos" / f"cam{i % 2 + 1}" / v.name)
    return dst


@pytest.mark.slow   # extract -> train -> evaluate -> detect, twice (~40 s)
@pytest.mark.parametrize("layout", ["classes", "cameras"])
def test_detect_without_flags_reproduces_training_extraction(ucf_root, tmp_path, layout, capsys):
    root = ucf_root if layout == "classes" else _camera_layout(ucf_root, tmp_path / "cams")
    feats = tmp_path / f"features_{layout}"
    assert extract.main([str(root / "videos"), "--out", str(feats), "--workers", "0", "--no-progress",
                         "--device", "cpu", *FX, *RANDOM]) == 0
    assert not (feats / "manifest.jsonl").parent.joinpath("Explosion", "manifest.jsonl").exists()
    run = tmp_path / f"run_{layout}"
    assert train.main(["--dataset", "ucf", "--data-root", str(root), "--features", str(feats), "--out", str(run),
                       "--epochs", "1", "--T", "4", "--batch-size", "4", "--standardize", "--quiet",
                       "--device", "cpu"]) == 0
    record = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["extractor"]
    assert record is not None and record["random_init"] is True and record["videos_described"] == 4
    assert record["short_side"] == 64 and record["coverage"] == "grid" and record["crop_size"] is None
    ev = tmp_path / f"eval_{layout}"
    assert evaluate.main(["--dataset", "ucf", "--data-root", str(root), "--features", str(feats),
                          "--checkpoint", str(run), "--out", str(ev), "--device", "cpu", "--quiet"]) == 0
    clip_scores = np.load(ev / "scores.npz")
    capsys.readouterr()
    test_video = next(p for p in (root / "videos").rglob("Explosion*.mp4")
                      if p.stem in clip_scores.files)
    out = tmp_path / f"det_{layout}"
    assert detect.main([str(test_video), "--checkpoint", str(run), "--out", str(out), "--device", "cpu",
                        "--no-plot", "--no-html"]) == 0          # no extraction flags at all
    printed = capsys.readouterr().out
    assert "does not record" not in printed
    frames = timeline.read_scores_csv(out / f"{test_video.stem}.scores.csv")
    clips = clip_scores[test_video.stem]
    np.testing.assert_allclose(frames[::16][:len(clips)], clips, rtol=0, atol=1e-6)


def test_train_refuses_features_extracted_two_ways(tmp_path, capsys):
    """Two manifests (two --features roots below one folder) that disagree: refused, naming both files."""
    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    names = {"a": ["Normal_Videos001_x264", "Explosion001_x264"], "b": ["Normal_Videos002_x264", "Explosion002_x264"]}
    for sub, crop in (("a", 224), ("b", 160)):
        folder = root / "features" / sub / "cls"
        folder.mkdir(parents=True)
        rows = []
        for n in names[sub]:
            np.save(folder / f"{n}.npy", rng.random((8, 1, 64), dtype=np.float32))
            meta = {"profile": "32x2", "random_init": True, "seed": 0, "crop_size": crop, "coverage": "center"}
            rows.append({**meta, "meta_keys": sorted(meta), "video": f"cls/{n}", "status": "ok", "frames": 128})
        (root / "features" / sub / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "Anomaly_Train.txt").write_text("".join(f"{n}.mp4\n" for v in names.values() for n in v))
    rc = train.main(["--dataset", "ucf", "--data-root", str(root), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--T", "4", "--batch-size", "4", "--device", "cpu", "--no-cache"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2, err
    assert err.startswith("error: ") and "crop_size: 224 vs 160" in err
    assert "features/a/cls/" in err and "features/b/cls/" in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_new_extractor_key_is_carried_and_compared(tmp_path):
    """A setting the code does not know by name (e.g. coverage) is recorded and compared."""
    from pipeline.model.data import Video
    from pipeline.features.featstore import make_row

    folder = tmp_path / "features" / "cam1"
    folder.mkdir(parents=True)
    meta = {"profile": "32x2", "random_init": True, "seed": 0, "coverage": "full"}
    rows = [make_row(meta, {"video": f"cam1/{n}", "status": "ok"}) for n in ("a", "b")]
    (tmp_path / "features" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    videos = [Video(n, 0, "", [folder / f"{n}.npy"]) for n in ("a", "b")]
    rec = training.extractor_meta(videos, tmp_path / "features")
    assert rec["coverage"] == "full" and rec["videos_described"] == 2
    with pytest.raises(reproduce.CheckpointError, match="coverage: trained full, now center"):
        reproduce.check_extractor(rec, dict(meta, coverage="center"))


# ----------------------------------------------------------------------------- 2: --device

DEVICE_ARGS = {
    "extract": ["VIDEOS", "--out", "OUT"],
    "train": ["--data-root", "VIDEOS", "--out", "OUT"],
    "evaluate": ["--data-root", "VIDEOS", "--out", "OUT"],
    "detect": ["VIDEOS", "--out", "OUT", "--checkpoint", "VIDEOS/model.pt"],
    "watch": ["VIDEOS/v.mp4", "--jsonl", "OUT/events.jsonl", "--checkpoint", "VIDEOS/model.pt"],
    "demo": ["--out", "OUT"],
    "study": ["--data-root", "VIDEOS", "--out", "OUT"],
}
GPU = "--device gpu: not a device; choose one of auto, cpu, cuda, cuda:N"
NO_GPU = "--device cuda: no CUDA GPU is visible here"


def _device_run(tmp_path, module, device, subprocess_run):
    """Run ``module`` with ``--device device`` on a folder holding an empty v.mp4; (rc, stderr, out)."""
    import importlib

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v.mp4").write_bytes(b"")
    out = tmp_path / "out"
    args = [a.replace("VIDEOS", str(videos)).replace("OUT", str(out)) for a in DEVICE_ARGS[module]]
    if subprocess_run:
        r = run_module(module, *args, "--device", device)
        return r.returncode, r.stderr, out
    return importlib.import_module(f"pipeline.{module}").main([*args, "--device", device]), None, out


@pytest.mark.parametrize("module,device", [(m, "gpu") for m in ("train", "evaluate", "detect", "watch", "demo", "study")]
                         + [("watch", "cuda")])
def test_bad_device_is_one_line_before_any_output(tmp_path, module, device, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc, _, out = _device_run(tmp_path, module, device, subprocess_run=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: {GPU if device == 'gpu' else NO_GPU}"), err
    assert not out.exists()


@pytest.mark.parametrize("device,message", [("gpu", GPU), ("cuda", NO_GPU)])
def test_bad_device_in_extract(tmp_path, device, message):
    """As a user runs it (subprocess): extract used to leave an empty --out behind."""
    module = "extract"
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc, err, out = _device_run(tmp_path, module, device, subprocess_run=True)
    assert rc == 2 and "Traceback" not in err, err
    assert message in err.strip().splitlines()[-1]
    assert not out.exists()


# ----------------------------------------------------------------------------- 3, 4: frame folders

def _random_checkpoint(path: Path) -> Path:
    """A checkpoint with random model weights whose record says: random-weight 32x2 I3D at FX."""
    from pipeline.model.network import AnomalyGCN

    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=2048, dropout=0.0)
    config = {"dropout": 0.0, "adjacency": "learned", "similarity": model.similarity,
              "graph_features": model.graph_features, "proximity": model.proximity}
    record = {"profile": "32x2", "random_init": True, "seed": 0, "short_side": 64, "crop_size": 56, "crops": 1}
    torch.save({"model": model.state_dict(), "config": config, "in_dim": 2048, "epoch": 0, "extractor": record}, path)
    return path


@pytest.fixture
def frame_tree(tmp_path):
    """videos/good/ (16 JPEG frames), videos/cut/ (16 frames, the 6th truncated), videos/empty/."""
    from videogen import make_frame_folder, truncate

    videos = tmp_path / "videos"
    make_frame_folder(videos / "good", 16, ext=".jpg")
    make_frame_folder(videos / "cut", 16, ext=".jpg", seed=1)
    truncate(videos / "cut" / "005.jpg", 0.6)
    (videos / "empty").mkdir()
    return videos


def test_extract_fails_a_truncated_frame_and_an_empty_folder_by_name(frame_tree, tmp_path):
    feats = tmp_path / "features"
    r = run_module("extract", frame_tree, "--out", feats, "--workers", "0", "--device", "cpu", *FX, *RANDOM)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{frame_tree / 'cut' / '005.jpg'}: the image does not decode completely" in r.stderr
    assert f"failed: {frame_tree / 'empty'}: empty folder" in r.stderr
    assert "1 ok, 0 partial, 2 failed" in r.stderr
    assert (feats / "good.npy").exists() and not (feats / "cut.npy").exists()
    rows = {json.loads(l)["video"]: json.loads(l) for l in (feats / "manifest.jsonl").read_text().splitlines()}
    assert rows["cut"]["status"] == "failed" and "005.jpg" in rows["cut"]["error"]


def test_detect_fails_a_truncated_frame_and_an_empty_folder_by_name(frame_tree, tmp_path, capsys):
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "det"
    rc = detect.main([str(frame_tree), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu",
                      "--no-plot", "--no-html", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: {frame_tree / 'cut' / '005.jpg'}: the image does not decode completely" in err
    assert f"error: {frame_tree / 'empty'}: empty folder" in err
    summary = json.loads((out / "summary.json").read_text())
    assert {v["video"]: v["status"] for v in summary["videos"]} == {
        "good": "ok", "cut": "error", (frame_tree / "empty").as_posix(): "error"}
    # only empty folders: nothing could run
    rc = detect.main([str(frame_tree / "empty"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "d2"),
                      "--device", "cpu", "--quiet"])
    assert rc == 2 and "empty folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 5, 6: test masks

def _sht_root(tmp_path, masks: dict, frames: dict | None = None) -> Path:
    """A ShanghaiTech-style root: SH_Test.txt without labels, 4-clip features, the given masks, and
    (``frames``) an extraction manifest with each video's decoded frames."""
    root = tmp_path / "sht"
    (root / "features").mkdir(parents=True)
    (root / "test_frame_mask").mkdir()
    rng = np.random.default_rng(0)
    names = ["01_0014", "01_0015", "01_0016"]
    for n in names:
        np.save(root / "features" / f"{n}.npy", rng.random((4, 1, 2048), dtype=np.float32))
    for n, m in masks.items():
        np.save(root / "test_frame_mask" / f"{n}.npy", np.asarray(m, dtype=np.uint8))
    if frames:
        (root / "features" / "manifest.jsonl").write_text("".join(
            json.dumps({"video": n, "status": "ok", "frames": f}) + "\n" for n, f in frames.items()))
    (root / "SH_Test.txt").write_text("\n".join(names))
    return root


def _anomaly_at_end(n: int) -> np.ndarray:
    m = np.zeros(n, dtype=np.uint8)
    m[-20:] = 1
    return m


def test_evaluate_refuses_a_mask_shorter_than_its_video(tmp_path, capsys):
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    root = _sht_root(tmp_path, {"01_0014": _anomaly_at_end(40), "01_0016": _anomaly_at_end(64)})
    rc = evaluate.main(["--dataset", "sht", "--data-root", str(root), "--checkpoint", str(ckpt), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith("error: ") and "01_0014.npy: the mask of video 01_0014 has 40 frames" in err
    assert "4 clips of 16 frames (49..64 frames)" in err
    # the extraction manifest knows the video's frames: the mask must have exactly those (or the clips' 64)
    root = _sht_root(tmp_path / "b", {"01_0014": _anomaly_at_end(58), "01_0016": _anomaly_at_end(64)},
                     frames={"01_0014": 60, "01_0015": 60, "01_0016": 64})
    rc = evaluate.main(["--dataset", "sht", "--data-root", str(root), "--checkpoint", str(ckpt), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "has 58 frames, the video 60 frames (extraction manifest), 4 clips" in err
    root = _sht_root(tmp_path / "c", {"01_0014": _anomaly_at_end(60), "01_0016": _anomaly_at_end(64)},
                     frames={"01_0014": 60, "01_0015": 60, "01_0016": 64})
    assert evaluate.main(["--dataset", "sht", "--data-root", str(root), "--checkpoint", str(ckpt),
                          "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0


def test_evaluate_names_every_video_without_a_mask(tmp_path, capsys):
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    root = _sht_root(tmp_path, {"01_0014": _anomaly_at_end(64)})
    out = tmp_path / "ev"
    assert evaluate.main(["--dataset", "sht", "--data-root", str(root), "--checkpoint", str(ckpt),
                          "--device", "cpu", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 test video(s) have no frame mask" in err and "01_0015, 01_0016" in err
    assert json.loads((out / "report.json").read_text())["no_mask_taken_as_normal"] == ["01_0015", "01_0016"]
    # the folder holds normal videos' masks too (ShanghaiTech's own test_frame_mask/): a missing one is refused
    root = _sht_root(tmp_path / "b", {"01_0014": _anomaly_at_end(64), "01_0015": np.zeros(64)})
    rc = evaluate.main(["--dataset", "sht", "--data-root", str(root), "--checkpoint", str(ckpt), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "no frame mask for 1 video(s)" in err and "01_0016" in err and "01_0015.npy marks no frame" in err


# ----------------------------------------------------------------------------- 7: progress in a log

def test_progress_in_a_log_is_plain_lines(tmp_path):
    """``extract ... >log 2>&1``: no carriage returns or cursor codes, a plain line with the numbers."""
    from videogen import make_video

    for i in range(2):
        make_video(tmp_path / "videos" / f"v{i}.mp4", 20, seed=i)
    log = tmp_path / "log"
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "pipeline.extract", str(tmp_path / "videos"), "--out",
                            str(tmp_path / "f"), "--workers", "0", "--device", "cpu", *FX, *RANDOM],
                           stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "\r" not in text and "\x1b[" not in text
    assert "all videos: 4/4 clip (100%)" in text and "videos=2/2" in text


def test_log_progress_prints_every_few_percent(capsys):
    import io
    from pipeline.common.cli import progress_bar

    buf = io.StringIO()
    bar = progress_bar(total=100, desc="scoring", unit="video", stream=buf, every_pct=25, every_s=1e9)
    for _ in range(100):
        bar.update(1)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert [l.split(",")[0] for l in lines] == [f"scoring: {n}/100 video ({n}%)" for n in (25, 50, 75, 100)]
    assert list(progress_bar(iterable=range(3), stream=buf, quiet=True)) == [0, 1, 2]


# ----------------------------------------------------------------------------- 8: watch --duration

sys.path.insert(0, str(Path(__file__).parent))
from netns import NS, namespaces_work  # noqa: E402


@pytest.mark.slow   # ~12 s: the command's start-up counts against --duration, so the duration must exceed it
@pytest.mark.skipif(not namespaces_work(), reason="needs root and unshare (a loopback-only network namespace)")
def test_watch_duration_is_wall_clock_on_a_silent_udp_source(tmp_path):
    """Nothing is ever sent to the UDP port: watch still ends within a second or two of --duration
    (it used to wait for the open and stall timeouts), and says what was scored."""
    import time

    ckpt = _random_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "events.jsonl"
    script = (f"ip link set lo up && exec {sys.executable} -m pipeline.watch udp://127.0.0.1:5699 "
              f"--checkpoint {ckpt} --jsonl {out} --device cpu --duration 10 --open-timeout 10 --stall-timeout 5")
    t0 = time.monotonic()
    r = subprocess.run(NS + ["sh", "-c", script], env=dict(os.environ, PYTHONPATH=str(REPO)),
                       capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    # the 6 s: namespace, Python start and exit (1.6 s at load 4.6 on 2 cores, 2.7 s at load 6.7);
    # issue 23 saw 24.8 s for --duration 15 (the open and stall timeouts waited for)
    assert wall < 10 + 6, (wall, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("watch ended (--duration 10 s reached) after ")
    assert float(last.split(" after ")[1].split(" s:")[0]) <= 10 + 2.0     # what watch itself promises ("a second or two")
    assert "127.0.0.1_5699: 0 clips scored" in last and "still waiting for data" in last
    end = [json.loads(l) for l in out.read_text().splitlines() if '"end"' in l][0]
    assert end["scored"] == 0 and "not scored" in end["unfinished"]


# ----------------------------------------------------------------------------- 9: smaller ones

def test_refused_detect_rerun_names_the_setting_that_differs(tmp_path, capsys):
    from videogen import make_video

    video = make_video(tmp_path / "in" / "clip.mp4", 40, width=64, height=64)
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    args = [str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "det"), "--device", "cpu",
            "--no-plot", "--no-html", "--quiet"]
    assert detect.main(args) == 0
    assert detect.main(args + ["--threshold", "0.7", "--merge-gap", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "clip.scores.csv (settings differ: --threshold: 0.5 then, 0.7 now; --merge-gap:" in err
    assert "--overwrite" in err


def test_evaluate_table_rows_align():
    report = {"dataset": "ucf", "n_videos": 2, "n_abnormal_videos": 1, "n_frames": 64, "checkpoint": "m.pt",
              "selected_by": "final", "checkpoint_epoch": 1, "auc": 0.5, "ap": 0.5, "auc_abnormal": 0.5,
              "far_threshold": 0.5, "far": 0.1, "mean_inside": 0.5, "mean_outside": 0.4, "mean_normal": 0.3,
              "per_class": {}}
    rows = [l for l in evaluation.format_report(report).splitlines() if "(%)" in l]
    assert len(rows) == 4 and len({len(l) for l in rows}) == 1, rows


def test_watch_says_the_streams_ended_on_an_error(tmp_path, capsys):
    from pipeline import watch

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    rc = watch.main([str(bad), "--checkpoint", str(ckpt), "--jsonl", str(tmp_path / "e.jsonl"), "--device", "cpu"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and "end of streams" not in last
    assert last.startswith("watch ended (every stream ended, 1 of 1 on an error)") and "cannot open" in last


def test_review_page_keeps_long_names_and_the_last_time_label():
    """No browser here: the page's rules themselves (wrap names, keep edge labels in the canvas)."""
    from pipeline.scoring import review

    assets = Path(review.__file__).parent / "review_assets"
    css = (assets / "style.css").read_text()
    assert "text-overflow: ellipsis" not in css and "overflow-wrap: anywhere" in css
    js = (assets / "common.js").read_text()
    assert 'x + half > right ? "right"' in js


def test_evaluate_says_which_test_features_are_partial(tmp_path, capsys):
    """A video that decoded only in part (extract: status partial, exit 1) is named when it is scored."""
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    root = _sht_root(tmp_path, {"01_0014": _anomaly_at_end(64)})
    (root / "features" / "manifest.jsonl").write_text(json.dumps(
        {"video": "01_0015", "status": "partial", "frames": 64, "error": "cut.mp4: truncated file"}) + "\n")
    out = tmp_path / "ev"
    assert evaluate.main(["--dataset", "sht", "--data-root", str(root), "--checkpoint", str(ckpt),
                          "--device", "cpu", "--out", str(out)]) == 0
    assert "warning: 1 test video(s) have features of only part of their frames" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["partial_features"] == ["01_0015"]


def test_a_gap_in_the_frame_numbers_is_a_warning(tmp_path, capsys):
    """Frame folder 000..017 without 005.jpg: the later frames would be timed one frame early without a word."""
    from videogen import make_frame_folder

    folder = make_frame_folder(tmp_path / "cam", 18, ext=".jpg")
    (folder / "005.jpg").unlink()
    ckpt = _random_checkpoint(tmp_path / "model.pt")
    rc = detect.main([str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / "det"), "--device", "cpu",
                      "--no-plot", "--no-html", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and f"warning: {folder}: the image numbers skip 1 frame(s) (1 gap(s), first from 4 to 6)" in err
