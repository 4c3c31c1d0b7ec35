"""Stage 1 fixes from the extraction review (issue 9) and a new user's report (issue 11):
settings that must match on resume, the tail per dataset, manifest rows as the only record of a
finished file, truncated videos, early checks of inputs and --out, decode workers that die with
their parent, --help, dependencies. CPU, random weights, tiny frames."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.extract import build_parser, main
from pipeline.features.featstore import read_manifest
from pipeline.features.extractor import resolve_precision
from videogen import make_video, truncate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--random-init", "--short-side", "32", "--crop-size", "32", "--no-progress", "--workers", "0"]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    make_video(d / "a.mp4", 40)
    make_video(d / "b.mp4", 24, seed=1)
    return d


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return env


# ----------------------------------------------------------------------------- issue 9, fixes 1-6

def test_resume_refuses_other_precision_or_seed(two, tmp_path, caplog):
    """Fix 1: precision and seed are settings a resumed run must share."""
    from pipeline.features.featstore import SettingsMismatch, finished_videos

    assert main([str(two), "--out", str(tmp_path), "--precision", "fp32", *TINY]) == 0
    row = read_manifest(tmp_path)["a"]
    assert row["precision"] == "fp32" and row["seed"] == 0
    assert finished_videos(tmp_path, ["a", "b"], row) == (["a", "b"], [])
    for key, value in (("precision", "bf16"), ("seed", 1)):
        with pytest.raises(SettingsMismatch, match=rf"a\.npy .*'{key}'"):
            finished_videos(tmp_path, ["a", "b"], dict(row, **{key: value}))
    caplog.clear()
    assert main([str(two), "--out", str(tmp_path), "--precision", "bf16", *TINY]) == 2   # the CLI
    assert "precision" in caplog.text and "a.npy" in caplog.text


def test_precision_is_fp32_by_default_on_every_device():
    """Fix 3: bf16 moves features ~0.3% from fp32, so it is an opt-in, also on GPU."""
    assert resolve_precision(None, "cuda") == "fp32"
    assert resolve_precision(None, "cpu") == "fp32"
    assert resolve_precision("bf16", "cuda") == "bf16"
    assert build_parser().parse_args(["v"]).precision == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cuda")


def test_tail_follows_dataset_and_is_recorded(two, tmp_path):
    """Fix 4: --dataset xd means floor(frames/16) (the official XD-Violence features); the
    default stays pad (ceil, RTFM's UCF-Crime/ShanghaiTech features, see test_extract)."""
    video = str(two / "a.mp4")                               # 40 frames
    assert main([video, "--out", str(tmp_path / "xd"), "--dataset", "xd", *TINY]) == 0
    assert np.load(tmp_path / "xd" / "a.npy").shape[0] == 40 // 16
    assert read_manifest(tmp_path / "xd")["a"]["tail"] == "drop"
    assert main([video, "--out", str(tmp_path / "xdpad"), "--dataset", "xd", "--tail", "pad", *TINY]) == 0
    assert np.load(tmp_path / "xdpad" / "a.npy").shape[0] == -(-40 // 16)
    assert read_manifest(tmp_path / "xdpad")["a"]["tail"] == "pad"
    assert build_parser().parse_args(["v"]).tail is None    # resolved from --dataset


def test_missing_row_is_unfinished_and_lost_manifest_is_refused(two, tmp_path, caplog):
    """Fix 5 / issue 11.5: no row is invented from the current settings."""
    out = tmp_path / "o"
    assert main([str(two), "--out", str(out), *TINY]) == 0
    rows = read_manifest(out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    # b's row is lost: b is unfinished and extracted again; a is kept
    (out / "manifest.jsonl").write_text(json.dumps(rows["a"]) + "\n")
    assert main([str(two), "--out", str(out), *TINY]) == 0
    after = read_manifest(out)
    assert after["b"]["status"] == "ok" and "note" not in after["b"] and after["b"]["clips"] == 2
    assert (out / "b.npy").stat().st_mtime_ns != before["b.npy"]
    assert (out / "a.npy").stat().st_mtime_ns == before["a.npy"]
    # the whole manifest is lost: the files' settings are unknown -> refused, nothing rewritten
    (out / "manifest.jsonl").unlink()
    caplog.clear()
    assert main([str(two), "--out", str(out), "--crops", "10", *TINY]) == 2
    assert "manifest.jsonl" in caplog.text and "--overwrite" in caplog.text
    assert not (out / "manifest.jsonl").exists()


def test_file_appears_only_after_its_row(two, tmp_path, monkeypatch):
    """A process killed between the row and the rename leaves a row without a file (redone),
    never a file without a row."""
    from pipeline.features import featstore

    seen = []
    real = featstore.NpyStreamWriter.commit

    def commit(self):
        seen.append((self.path.exists(), self.path.stem in read_manifest(self.path.parent)))
        real(self)

    monkeypatch.setattr(featstore.NpyStreamWriter, "commit", commit)
    assert main([str(two), "--out", str(tmp_path), *TINY]) == 0
    assert seen == [(False, True), (False, True)]


def test_declared_dependencies_are_all_imported():
    """Fix 6: no dependency is installed for nothing (decord and joblib were declared, unused)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    module = {"scikit-learn": "sklearn"}
    # imported by a dependency that does not declare it: pytorchvideo.models.head imports
    # torchvision.ops at import time, and pytorchvideo 0.1.5 lists no torchvision
    indirect = {"torchvision"}
    code = "\n".join(p.read_text() for p in (ROOT / "pipeline").rglob("*.py"))
    for dep in deps:
        name = re.split(r"[<>=!~\[ ;]", dep, 1)[0]
        if name in indirect:
            continue
        mod = module.get(name, name).replace("-", "_")
        assert re.search(rf"^\s*(import|from)\s+{mod}\b", code, re.M), f"{name} is declared but never imported"


# ----------------------------------------------------------------------------- issue 11

def test_truncated_but_decodable_video_is_partial(tmp_path, caplog):
    """Item 8: half of an .avi / .mkv still decodes; it is partial in the manifest and the exit code."""
    src = tmp_path / "v"
    truncate(make_video(src / "cut.avi", 64))
    truncate(make_video(src / "cutmkv.mkv", 64, seed=2))
    make_video(src / "whole.mkv", 64, vfr=True)             # variable frame rate, complete: ok
    rc = main([str(src), "--out", str(tmp_path / "o"), *TINY])
    rows = read_manifest(tmp_path / "o")
    assert rc == 1
    for name in ("cut", "cutmkv"):
        assert rows[name]["status"] == "partial", rows[name]
        assert "truncated" in rows[name]["error"] and f"{name}." in rows[name]["error"]
        assert (tmp_path / "o" / f"{name}.npy").exists()      # features of what decoded
    assert rows["whole"]["status"] == "ok" and rows["whole"]["error"] is None
    assert "partial" in caplog.text


def test_detect_summary_warns_about_a_truncated_video(tmp_path):
    """Item 8: detect's summary.json carries the warning of a truncated video."""
    from pipeline import detect as det
    from pipeline.model.network import AnomalyGCN

    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=2048, dropout=0.0)
    torch.save({"model": model.state_dict(), "config": {"dropout": 0.0, "adjacency": "learned"},
                "in_dim": 2048, "epoch": 1, "extractor": None}, tmp_path / "model.pt")
    video = truncate(make_video(tmp_path / "cut.avi", 96))
    det.main([str(video), "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "d"),
              "--quiet", "--no-plot", "--short-side", "32", "--crop-size", "32", "--random-init",
              "--profile", "32x2", "--device", "cpu"])
    row = json.loads((tmp_path / "d" / "summary.json").read_text())["videos"][0]
    assert row["warning"] and "truncated" in row["warning"]


def test_no_videos_is_an_error(tmp_path, caplog):
    """Item 6: a folder without videos is not a success."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "no video files" in caplog.text and "empty" in caplog.text


def test_inputs_and_out_checked_before_the_weights(two, tmp_path, caplog):
    """Items 4 and 11: a missing input or an unusable --out is named before any weights work."""
    missing_weights = ["--weights", str(tmp_path / "nowhere.pth"), "--no-progress"]
    assert main([str(tmp_path / "novideos"), "--out", str(tmp_path / "o"), *missing_weights]) == 2
    assert "novideos: no such file" in caplog.text and "nowhere.pth" not in caplog.text
    caplog.clear()
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main([str(two), "--out", str(out), *missing_weights]) == 2
        assert f"--out {out}" in caplog.text and "nowhere.pth" not in caplog.text
        caplog.clear()
    from pipeline import detect as det
    rc = det.main([str(tmp_path / "missing.mp4"), "--checkpoint", str(tmp_path / "norun")])
    assert rc == 2


def test_no_torch_jit_warning(tmp_path):
    """Item 11: fvcore's torch.jit.script FutureWarning is silenced where it is raised."""
    code = "from pipeline.features.i3d import build_i3d; build_i3d('32x2')"
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "torch.jit" not in r.stderr


def test_help_every_flag_explained_defaults_once():
    """Item 10: every flag has help; a default is shown once; on/off switches show none."""
    p = build_parser()
    text = p.format_help()
    assert "(default: True)" not in text and "(default: False)" not in text
    for a in p._actions:
        if not a.option_strings or a.dest == "help":
            continue
        h = p._get_formatter()._expand_help(a) if a.help else ""
        assert h, f"{a.option_strings} has no help"
        n = len(re.findall(r"[Dd]efault:", h))
        if a.nargs == 0:                                   # a switch
            assert "(default:" not in h, a.option_strings
        else:
            assert n == 1, (a.option_strings, h)


# ----------------------------------------------------------------------------- item 3 (slow)

def _children(pid: int) -> set:
    kids = set()
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            kids |= {int(k) for k in open(f"/proc/{pid}/task/{t}/children").read().split()}
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_decode_workers_exit_when_the_main_process_dies(tmp_path, sig):
    src = tmp_path / "v"
    for i in range(4):
        make_video(src / f"v{i}.mp4", 400, seed=i)
    cmd = [sys.executable, "-m", "pipeline.extract", str(src), "--out", str(tmp_path / "o"),
           "--batch-size", "1", *TINY[:-2], "--workers", "2"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: set = set()
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        kids = {k for k in _children(proc.pid) if _alive(k)}
        if len(kids) >= 2 and list((tmp_path / "o").glob(".*.tmp")):
            break
        time.sleep(0.05)
    assert len(kids) >= 2, "no decode workers seen"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    left = [k for k in kids if _alive(k)]
    for k in left:  # do not leave them behind even when the test fails
        os.kill(k, signal.SIGKILL)
    assert not left, f"decode workers {left} outlived the main process ({signal.Signals(sig).name})"
    if sig == signal.SIGTERM:                               # a clean exit: no temp file left
        assert not list((tmp_path / "o").glob(".*.tmp"))
