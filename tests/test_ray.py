"""Extraction on a real local Ray cluster (pipeline.features.raybackend), started by the test inside a
network namespace with only loopback up (Ray binds to the machine's interface address otherwise)
and a pid namespace (everything it started ends with it). Needs root, ``unshare`` and ``ray``
(``pip install -e ".[ray]"``); skipped cleanly otherwise."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.extract import main
from pipeline.features.featstore import read_manifest
from videogen import make_video

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--random-init", "--short-side", "32", "--crop-size", "32", "--no-progress"]
from netns import NS, namespaces_work  # noqa: E402


_namespaces_work = namespaces_work



def run_cluster_scenario(args: list, result: Path, env: dict) -> dict:
    """Run tests/raycluster.py with ``args`` inside a loopback-only network namespace (a 2-node Ray
    cluster it starts and stops) and return the JSON it writes to ``result``."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    try:
        script = (f"ip link set lo up && exec {sys.executable} {ROOT / 'tests' / 'raycluster.py'} "
                  + " ".join(args) + f" {result} {ray_tmp}")
        r = subprocess.run(NS + ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.exists(), (r.stdout + r.stderr)[-4000:]
    return json.loads(result.read_text())

def test_backend_ray_without_ray_says_how_to_install(tmp_path, monkeypatch, caplog):
    """Without the extra, --backend ray stops with exit code 2 and the install command."""
    make_video(tmp_path / "v" / "a.mp4", 20)
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    rc = main([str(tmp_path / "v"), "--out", str(tmp_path / "o"), "--backend", "ray", *TINY])
    assert rc == 2
    assert 'pip install -e ".[ray]"' in caplog.text


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs pip install -e ".[ray]"')
def test_unreachable_address_is_one_line(tmp_path, caplog):
    make_video(tmp_path / "v" / "a.mp4", 20)
    rc = main([str(tmp_path / "v"), "--out", str(tmp_path / "o"), "--backend", "ray",
               "--address", "127.0.0.1:1", *TINY])
    assert rc == 2 and "--address 127.0.0.1:1: no Ray head answers there" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs pip install -e ".[ray]"')
@pytest.mark.skipif(not _namespaces_work(), reason="needs root and unshare (network + pid namespaces)")
def test_ray_cluster_equals_local_survives_a_killed_worker_and_resumes(tmp_path):
    videos = tmp_path / "videos"
    for i, frames in enumerate([240, 200, 176, 150, 120, 96]):
        make_video(videos / f"v{i}.mp4", frames, seed=i)
    (videos / "broken.mp4").write_text("not a video\n")     # fails, and is recorded
    # local reference, one torch thread as in a 1-CPU Ray actor
    local = tmp_path / "local"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "pipeline.extract", str(videos), "--out", str(local),
                        "--workers", "0", "--batch-size", "1", *TINY], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]              # broken.mp4 fails

    out = tmp_path / "ray" / "features"
    out.parent.mkdir()
    res = run_cluster_scenario([str(videos), str(out)], tmp_path / "result.json", env)

    # run 1: a worker was killed mid-video, yet every video is correct
    assert res["run1"]["killed"] is not None, res["run1"]["log"]
    assert res["run1"]["rc"] == 1, res["run1"]["log"]       # only broken.mp4 failed
    rows, want = read_manifest(out), read_manifest(local)
    assert {k: r["status"] for k, r in rows.items()} == {k: r["status"] for k, r in want.items()}
    assert rows["broken"]["status"] == "failed" and "broken.mp4" in rows["broken"]["error"]
    names = sorted(p.name for p in local.glob("*.npy"))
    assert sorted(p.name for p in out.glob("*.npy")) == names and len(names) == 6
    for n in names:
        assert np.array_equal(np.load(out / n), np.load(local / n)), n
        assert rows[n[:-4]]["clips"] == want[n[:-4]]["clips"]
    assert res["temps_left"] == []
    # run 2: everything finished is skipped, nothing rewritten (broken.mp4 is tried again)
    assert res["run2"]["rc"] == 1, res["run2"]["log"]
    assert "6 finished, 1 to extract" in res["run2"]["log"], res["run2"]["log"]
    assert res["mtimes2"] == res["mtimes"]


def test_actor_with_decode_worker_equals_local(tmp_path):
    """The Ray actor's per-video call (run here without Ray): decoding in a child process
    overlapped with the model gives the local backend's file and row."""
    from pipeline.features.raybackend import ExtractActor

    make_video(tmp_path / "v" / "a.mp4", 40)
    assert main([str(tmp_path / "v"), "--out", str(tmp_path / "local"), "--workers", "0", *TINY]) == 0
    kw = dict(random_init=True, short_side=32, crop_size=32, device="cpu")
    for workers in (0, 1):
        out = tmp_path / f"actor{workers}"
        out.mkdir()
        actor = ExtractActor(kw, str(out), decode_workers=workers)
        row = actor.extract(str(tmp_path / "v" / "a.mp4"))
        assert row["status"] == "ok" and row["clips"] == 3
        np.testing.assert_allclose(np.load(out / "a.npy"), np.load(tmp_path / "local" / "a.npy"),
                                   rtol=1e-5, atol=1e-5)
        assert read_manifest(out)["a"]["clips"] == 3


# ----------------------------------------------------------------------------- detect --backend ray

def test_detect_backend_ray_flag_and_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    """detect --help lists --backend/--address; without the extra, --backend ray exits 2 with the
    install command (before the checkpoint or any video is read)."""
    from pipeline import detect as det
    from pipeline.scoring import timeline

    with pytest.raises(SystemExit):
        det.main(["--help"])
    out = capsys.readouterr().out
    assert "--backend {local,ray}" in out and "--address" in out
    assert det.build_parser().parse_args(["v.mp4", "--checkpoint", "c"]).backend == "local"
    rc = det.main([str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "run"), "--address", "auto"])
    assert rc == 2 and "only used with --backend ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    rc = det.main([str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "o"),
                   "--backend", "ray"])
    assert rc == 2 and 'pip install -e ".[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _summary_without_run_details(path: Path) -> dict:
    """summary.json less what differs between two runs by nature: timings and output paths."""
    s = json.loads(path.read_text())
    s.pop("review", None)
    for v in s["videos"]:
        v.pop("seconds")
        v.pop("files", None)
        v.pop("end_unix", None)                     # when the video finished (detect's resume check)
    return s


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs pip install -e ".[ray]"')
@pytest.mark.skipif(not _namespaces_work(), reason="needs root and unshare (network + pid namespaces)")
def test_detect_on_ray_cluster_equals_local(tmp_path):
    """detect --backend ray on a 2-node cluster writes the same scores, intervals and summary as the
    local backend (a broken video fails in both, the others go on); a rerun reuses the features."""
    import torch
    from pipeline import detect as det
    from pipeline.scoring import timeline
    from pipeline.synth.videos import Event, VideoSpec, write_video
    from test_detect import FX, RANDOM, RECORD, _train_clip_supervised

    videos = tmp_path / "videos"
    write_video(VideoSpec("probe", n_frames=117, fps=16, size=64, seed=123, events=[Event("flash", 40, 71)]),
                videos / "probe.mp4")
    write_video(VideoSpec("calm", n_frames=90, fps=16, size=64, seed=5), videos / "calm.mp4")
    (videos / "broken.mp4").write_text("not a video\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # a small checkpoint fitted to these videos' clip labels, recording the extractor it was trained with
    feats = tmp_path / "train_features"
    r = subprocess.run([sys.executable, "-m", "pipeline.extract", str(videos / "probe.mp4"), str(videos / "calm.mp4"),
                        "--out", str(feats), "--workers", "0", "--no-progress", "--device", "cpu", *FX, *RANDOM,
                        "--coverage", "center"],                                   # RECORD's centre crop
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    state = _train_clip_supervised([dict(name="probe", anomalies=[(40, 71)]), dict(name="calm", anomalies=[])],
                                   feats, steps=60)
    state["extractor"] = dict(RECORD)
    # the graph the helper trained (AnomalyGCN's defaults); a checkpoint without these keys loads
    # with the fallbacks of older checkpoints (pipeline.model.network.build_model)
    state["config"].update(similarity="centred", graph_features="fc", proximity="gated")
    (tmp_path / "run").mkdir()
    torch.save(state, tmp_path / "run" / "model.pt")

    # local reference, one torch thread as in a 1-CPU Ray actor
    local = tmp_path / "local"
    r = subprocess.run([sys.executable, "-m", "pipeline.detect", str(videos), "--checkpoint", str(tmp_path / "run"),
                        "--out", str(local), "--batch-size", "1", "--device", "cpu", "--quiet"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "broken.mp4" in r.stderr, r.stderr[-2000:]

    out = tmp_path / "ray" / "detections"
    out.parent.mkdir()
    res = run_cluster_scenario(["detect", str(videos), str(tmp_path / "run"), str(out)], tmp_path / "result.json", env)

    assert res["run1"]["rc"] == 1 and "broken.mp4" in res["run1"]["log"], res["run1"]["log"]
    assert sorted(res["run1"]["mtimes"]) == ["calm.npy", "probe.npy"]
    assert read_manifest(out / "features")["broken"]["status"] == "failed"
    for stem in ("probe", "calm"):
        for kind in ("scores.csv", "intervals.csv"):
            assert (out / f"{stem}.{kind}").read_text() == (local / f"{stem}.{kind}").read_text(), (stem, kind)
        assert (out / f"{stem}.png").stat().st_size > 1000
    assert timeline.read_intervals_csv(out / "probe.intervals.csv"), "no interval: the comparison would be weak"
    assert _summary_without_run_details(out / "summary.json") == _summary_without_run_details(local / "summary.json")
    assert (out / "review.html").exists()
    # rerun (--overwrite, --address auto): the finished features are reused, not extracted again
    assert res["run2"]["rc"] == 1, res["run2"]["log"]
    assert res["run2"]["mtimes"] == res["run1"]["mtimes"]
    assert _summary_without_run_details(out / "summary.json") == _summary_without_run_details(local / "summary.json")
