"""pipeline.watch: live scores on streams (causal windows, live intervals, drops, reconnects, signals).

The end-to-end fixture renders tiny 64x48 videos with planted flashes (pipeline.synth.videos), extracts
their features with a random-weight I3D at short side 48, fits a small model to their clip labels
and saves it with its extractor record, so that watch builds its extractor from the checkpoint.
Network tests (slow) serve real streams from tests/streamserve.py inside a network namespace with
only loopback (tests/watchnet.py), as tests/test_ray.py does for Ray.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.apps import watching
from pipeline.scoring import causal
from pipeline import watch as W
from pipeline.apps import stream as S
from pipeline.scoring.timeline import find_intervals, frame_scores
from pipeline.scoring.checkpoint import score_clips
from pipeline.model.network import AnomalyGCN
from pipeline.synth.videos import Event, VideoSpec, render_frames
from pipeline.model.training import feature_statistics

ROOT = Path(__file__).resolve().parents[1]
SHORT, CROP, FPS = 48, 48, 16
from netns import NS, namespaces_work  # noqa: E402


# ----------------------------------------------------------------------------- pure parts

@pytest.mark.parametrize("seed", range(6))
def test_live_intervals_equal_find_intervals_on_the_whole_score(seed):
    """Pushed 16 frames at a time, the tracker closes exactly detect's intervals of the whole score,
    opens each once before closing it, and keeps only a bounded tail."""
    rng = np.random.default_rng(seed)
    fps = [16.0, 25.0, 10.0][seed % 3]
    clips = rng.random(80) ** 2 * 1.2                       # clip scores, some runs above 0.5
    s = np.repeat(np.clip(clips, 0, 1), 16)                # (frames,)
    args = dict(threshold=0.5, min_duration=[0.0, 1.0, 2.5][seed % 3], merge_gap=[0.0, 0.5, 3.0][seed // 2])
    t = 100.0 + np.arange(len(s)) / fps                     # stream times
    tr = watching.IntervalTracker(fps, **args)
    events, longest = [], 0
    for i in range(0, len(s), 16):
        events += tr.push(s[i:i + 16], t[i:i + 16])
        longest = max(longest, len(tr.scores))
    events += tr.flush("end")
    closed = [iv for kind, iv in events if kind == "close"]
    want = find_intervals(s, fps, **args)
    assert [(c["start_frame"], c["end_frame"], c["peak_score"], c["mean_score"]) for c in closed] == \
           [(w["start_frame"], w["end_frame"], w["peak_score"], w["mean_score"]) for w in want]
    for c, w in zip(closed, want):                          # times: the frames' own, not frame/fps
        assert c["start_s"] == pytest.approx(100.0 + w["start_s"]) and c["end_s"] == pytest.approx(100.0 + w["end_s"])
    opens = [iv["start_frame"] for kind, iv in events if kind == "open"]
    assert opens == [c["start_frame"] for c in closed]      # one open per interval, before its close
    for iv in closed:
        k_open = next(i for i, (k, x) in enumerate(events) if k == "open" and x["start_frame"] == iv["start_frame"])
        k_close = next(i for i, (k, x) in enumerate(events) if k == "close" and x["start_frame"] == iv["start_frame"])
        assert k_open < k_close


def test_an_endless_interval_is_split_to_bound_memory():
    tr = watching.IntervalTracker(10.0, threshold=0.5, min_duration=1.0, merge_gap=0.5, max_interval=20.0)
    events = []
    for i in range(100):                                    # 160 s above the threshold
        events += tr.push(np.full(16, 0.9), np.arange(i * 16, i * 16 + 16) / 10.0)
        assert len(tr.scores) <= 200 + 16
    closes = [iv for k, iv in events if k == "close"]
    assert len(closes) >= 6 and all(iv.get("split") for iv in closes)


def test_causal_scores_are_the_window_model_and_end_like_offline():
    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=64, dropout=0.0).eval()
    feats = np.random.default_rng(0).random((20, 2, 64), dtype=np.float32)
    c = causal.causal_scores(model, feats, window=5)
    assert c.shape == (20,)
    for t in (0, 3, 4, 12, 19):                             # clip t: the model on clips t-4..t, last score
        assert c[t] == pytest.approx(score_clips(model, feats[max(0, t - 4):t + 1])[-1], abs=1e-7)
    full = causal.causal_scores(model, feats, window=100)        # a window longer than the video: the newest
    assert full[-1] == pytest.approx(score_clips(model, feats)[-1], abs=1e-7)   # clip sees everything
    with pytest.raises(ValueError, match="--window"):
        causal.CausalWindow(model, 0)


def test_sources_names_and_schemes(tmp_path):
    assert S.classify("rtsp://cam/1") == "network" and S.classify("udp://0.0.0.0:5600") == "network"
    assert S.classify("srt://h:1") == "network" and S.classify("/dev/video0") == "device"
    assert S.classify("clip.mp4") == "file"
    with pytest.raises(ValueError, match="unsupported scheme"):
        S.classify("gopher://x")
    assert S.stream_name("rtsp://user:pw@cam.local:554/stream1?x=1") == "cam.local_554_stream1"
    f = tmp_path / "cams.txt"
    f.write_text("# my cameras\nfront rtsp://a/1\n\nudp://127.0.0.1:5600\nfront rtsp://b/2\n")
    named = S.name_sources(S.read_sources(f))
    assert named == [("front", "rtsp://a/1"), ("127.0.0.1_5600", "udp://127.0.0.1:5600"), ("front-2", "rtsp://b/2")]
    f.write_text("a b c\n")
    with pytest.raises(ValueError, match="cams.txt:1"):
        S.read_sources(f)


def _clip(i: int) -> S.Clip:
    return S.Clip("s", 1, i, 16 * i, np.zeros((16, 2, 2, 3), np.uint8), np.arange(16.0), 16.0, time.monotonic())


def test_hub_drops_the_oldest_clip_of_a_live_stream_never_a_break():
    hub = S.Hub(max_pending=2)
    hub.add("s")
    dropped = []
    hub.put("s", _clip(0), False, dropped.append)
    hub.put("s", S.Break("s", 1, "stalled"), False, dropped.append)
    for i in (1, 2, 3):
        hub.put("s", _clip(i), False, dropped.append)
    assert [c.index for c in dropped] == [0, 1]
    items = hub.take(10, 0.1)
    assert [type(x).__name__ for x in items] == ["Break", "Clip", "Clip"]
    assert [x.index for x in items if isinstance(x, S.Clip)] == [2, 3]


# ----------------------------------------------------------------------------- end to end

def write_small(spec: VideoSpec, path: Path) -> Path:
    """Render ``spec`` (64x64) cropped to 64x48, lossless H.264 (the decode equals what was rendered)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264" if "libx264" in av.codecs_available else "ffv1", rate=spec.fps)
        st.width, st.height = 64, 48
        st.pix_fmt = "yuv444p"
        st.options = {"qp": "0", "threads": "1"} if st.codec_context.name == "libx264" else {}
        for rgb in render_frames(spec):
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[8:56]), format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Tiny videos, a model fitted to their clip labels, saved with its extractor record."""
    from pipeline.features.extractor import FeatureExtractor

    root = tmp_path_factory.mktemp("watch")
    fx = FeatureExtractor(profile="32x2", random_init=True, seed=0, crops=1, short_side=SHORT, crop_size=CROP,
                          device="cpu", batch_size=8)
    data = []
    for i, ev in enumerate([None, None, Event("flash", 30, 69), Event("flash", 20, 59)]):
        spec = VideoSpec(f"train{i}", n_frames=96, fps=FPS, seed=10 + i, events=[ev] if ev else [])
        feats, _ = fx.extract(write_small(spec, root / "train" / f"{spec.name}.mp4"))     # (6, 1, 2048)
        y = torch.zeros(len(feats))
        for s, e in spec.anomalies:
            y[s // 16:e // 16 + 1] = 1.0
        data.append((torch.from_numpy(feats[:, 0])[None], y[None]))
    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=2048, dropout=0.0)
    mean, std = feature_statistics(x[0] for x, _ in data)
    model.feature_mean.copy_(mean)
    model.feature_std.copy_(std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(60):
        opt.zero_grad()
        sum(torch.nn.functional.binary_cross_entropy(model(x)["scores"], y) for x, y in data).backward()
        opt.step()
    config = {"dropout": 0.0, "similarity": model.similarity, "graph_features": model.graph_features,
              "proximity": model.proximity}
    (root / "run").mkdir()
    torch.save({"model": model.state_dict(), "config": config, "in_dim": 2048, "epoch": 60, "extractor": fx.meta},
               root / "run" / "model.pt")
    probe = write_small(VideoSpec("probe", n_frames=150, fps=FPS, seed=99, events=[Event("flash", 48, 95)]),
                        root / "probe.mp4")
    return dict(root=root, run=root / "run", probe=probe, fx=fx, model=model.eval())


def read_lines(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def test_watch_a_recording_equals_offline_causal_scores(live, tmp_path):
    """The CLI on a file (a replay: nothing dropped): one line per clip, the scores of
    causal_scores on the same frames' features, detect's intervals of those scores, --on-alert and
    --save-clips."""
    import av

    out = tmp_path / "live.jsonl"
    alerts = tmp_path / "alerts.txt"
    cmd = f"{sys.executable} -c \"import sys; open({str(alerts)!r}, 'a').write(sys.stdin.read())\""
    rc = W.main([str(live["probe"]), "--checkpoint", str(live["run"]), "--jsonl", str(out), "--window", "4",
                 "--device", "cpu", "--quiet", "--on-alert", cmd, "--save-clips", str(tmp_path / "clips"),
                 "--save-before", "1", "--save-after", "1"])
    assert rc == 0
    lines = read_lines(out)
    scores = [l for l in lines if l["event"] == "score"]
    feats, info = live["fx"].extract(live["probe"])                         # offline, as detect extracts
    want = causal.causal_scores(live["model"], feats, window=4)
    assert len(scores) == len(want) == 10                                    # 150 frames: 9 clips + a padded one
    np.testing.assert_allclose([l["score"] for l in scores], want, rtol=0, atol=1e-6)   # batching only
    assert [l["t"] for l in scores] == pytest.approx(np.arange(10) * 16 / FPS)
    assert scores[-1]["t_end"] == pytest.approx(150 / FPS)                    # the padded frames are not time
    assert all(l["latency_s"] >= 0 for l in scores)
    # intervals: detect's rules on the causal frame scores
    ivs = find_intervals(frame_scores(want, 150), FPS)
    closed = [l for l in lines if l["event"] == "interval_close"]
    assert ivs, f"no interval in the offline causal scores {np.round(want, 3)}"
    assert [(c["start_frame"], c["end_frame"]) for c in closed] == [(i["start_frame"], i["end_frame"]) for i in ivs]
    assert any(c["start_frame"] <= 60 <= c["end_frame"] for c in closed)   # the flash (frames 48-95)
    sent = [json.loads(l) for l in alerts.read_text().splitlines()]
    assert [a["event"] for a in sent] == ["interval_open", "interval_close"] * len(ivs)
    clip = Path(closed[0]["clip_file"])
    with av.open(str(clip)) as c:
        n = sum(1 for _ in c.decode(video=0))
    iv = closed[0]
    assert abs(n - round((iv["end_s"] - iv["start_s"] + 2) * FPS)) <= 2     # 1 s before, 1 s after
    end = [l for l in lines if l["event"] == "end"][0]
    assert end["dropped"] == 0 and end["scored"] == 10 and end["intervals"] == len(ivs)


@pytest.mark.slow   # a subprocess-free run, but 60 clips
def test_watch_drops_whole_clips_when_a_stream_outruns_the_model(live, tmp_path):
    """A file at its own pace (--realtime) of 800 fps: 50 clips a second arrive, far more than
    the model scores here, so whole clips are dropped (counted, logged) and the delay stays bounded."""
    spec = VideoSpec("fast", n_frames=960, fps=800, seed=5)
    fast = write_small(spec, tmp_path / "fast.mp4")
    out = tmp_path / "fast.jsonl"
    t0 = time.monotonic()
    rc = W.main([str(fast), "--realtime", "--checkpoint", str(live["run"]), "--jsonl", str(out), "--device", "cpu",
                 "--quiet", "--max-pending", "1", "--batch-size", "1"])
    wall = time.monotonic() - t0
    assert rc == 0
    lines = read_lines(out)
    drops = [l for l in lines if l["event"] == "drop"]
    scores = [l for l in lines if l["event"] == "score"]
    end = [l for l in lines if l["event"] == "end"][0]
    assert end["clips"] == 60 and drops and end["dropped"] == len(drops)
    assert end["scored"] + end["dropped"] == end["clips"] == len(scores) + len(drops)
    assert [d["dropped"] for d in drops] == list(range(1, len(drops) + 1))
    # without drops the last clip would wait for all the others; with them, a few clips' worth
    assert max(l["latency_s"] for l in scores) < 0.5 * wall


@pytest.mark.slow   # a watch process and a real-time stream
def test_watch_sigterm_closes_open_intervals_and_flushes(live, tmp_path):
    """SIGTERM while an interval is open: it is closed (cut), the end lines are written, exit 0."""
    spec = VideoSpec("long", n_frames=800, fps=FPS, seed=7, events=[Event("flash", 16, 799)])
    video = write_small(spec, tmp_path / "long.mp4")
    out = tmp_path / "sig.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "pipeline.watch", str(video), "--realtime", "--checkpoint",
                          str(live["run"]), "--jsonl", str(out), "--device", "cpu", "--min-duration", "0.5"],
                         env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and '"interval_open"' in out.read_text()):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 0, err
    lines = read_lines(out)
    kinds = [l["event"] for l in lines]
    assert "interval_open" in kinds, f"no interval opened: {err[-2000:]}"
    close = [l for l in lines if l["event"] == "interval_close"]
    assert close and close[-1]["cut"] == "signal SIGTERM"
    assert kinds[-1] == "end" and lines[-1]["reason"] == "signal SIGTERM"
    assert "watch ended (signal SIGTERM)" in err


def test_watch_bad_input_is_one_line(live, tmp_path, capsys):
    assert W.main([str(tmp_path / "missing.mp4"), "--checkpoint", str(live["run"]), "--quiet"]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert W.main([str(live["probe"]), "--checkpoint", str(tmp_path / "norun"), "--quiet"]) == 2
    assert "norun" in capsys.readouterr().err
    assert W.main([str(live["probe"]), "--checkpoint", str(live["run"]), "--crops", "10", "--quiet"]) == 2
    assert "--crops 10 (trained with 1)" in capsys.readouterr().err
    assert W.main(["gopher://x", "--checkpoint", str(live["run"]), "--quiet"]) == 2
    assert "unsupported scheme" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real network streams

_namespaces_work = namespaces_work


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces_work(), reason="needs root and unshare (network + pid namespaces)")
def test_watch_real_streams_reconnect_log_gaps_and_drop(live, tmp_path):
    """Inside a loopback-only network namespace (tests/watchnet.py): UDP/MPEG-TS and HTTP streams
    published by PyAV, each publisher killed mid-way and restarted (reconnect with backoff, the gap
    logged, never bridged), two streams watched at once with one model, and a stream sent 60x
    faster than real time (clips dropped, delay bounded)."""
    video = write_small(VideoSpec("cam", n_frames=160, fps=FPS, seed=21, events=[Event("flash", 64, 111)]),
                        tmp_path / "cam.mp4")
    result = tmp_path / "result.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    script = (f"ip link set lo up && exec {sys.executable} {ROOT / 'tests' / 'watchnet.py'} "
              f"{live['run']} {video} {tmp_path} {result}")
    r = subprocess.run(NS + ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.exists(), (r.stdout + r.stderr)[-4000:]
    res = json.loads(result.read_text())
    for name in ("udp", "http"):                            # both in one watch (two streams, one model)
        lines = [l for l in res["restart"] if l.get("stream") == name]
        kinds = [l["event"] for l in lines]
        conns = {l["conn"] for l in lines if l["event"] == "score"}
        assert conns == {1, 2}, (name, kinds)
        gaps = [l for l in lines if l["event"] == "gap"]
        assert len(gaps) == 1 and gaps[0]["conn"] == 2 and gaps[0]["wall_gap_s"] > 0.5, gaps
        assert "disconnected" in kinds
        # clips never span the gap: each connection's clips start at its own frame 0
        for c in (1, 2):
            first = [l for l in lines if l["event"] == "score" and l["conn"] == c][0]
            assert first["clip"] == 0 and first["frame"] == 0
        end = [l for l in lines if l["event"] == "end"][0]
        assert end["connections"] == 2 and end["gaps"] == 1 and end["reason"] == "signal SIGTERM"
    assert "retry" in [l["event"] for l in res["restart"] if l.get("stream") == "http"]   # server down: retried
    fast = res["fast"]
    end = [l for l in fast if l["event"] == "end"][0]
    scores = [l for l in fast if l["event"] == "score"]
    assert end["dropped"] > 0 and len([l for l in fast if l["event"] == "drop"]) == end["dropped"]
    assert max(l["latency_s"] for l in scores) < 0.5 * res["fast_wall_s"]


def test_watch_warms_the_network_up_before_the_streams_start(live, tmp_path, capsys, monkeypatch):
    """The network's first call for the stream's frame size (OpenVINO: convert and compile) happens
    before any reader starts, on the size the source's first frame gives; a UDP source is not probed
    (a second listener on its port would take its packets)."""
    from pipeline.apps import stream as S
    from pipeline.apps import watching

    order = []
    real_features = live["fx"].__class__.features

    def features(self, clips):
        order.append(("features", tuple(clips.shape)))
        return real_features(self, clips)

    real_start = S.StreamReader.start
    monkeypatch.setattr(live["fx"].__class__, "features", features)
    monkeypatch.setattr(S.StreamReader, "start", lambda self: order.append(("start",)) or real_start(self))
    rc = W.main([str(live["probe"]), "--checkpoint", str(live["run"]), "--jsonl", str(tmp_path / "o.jsonl"),
                 "--device", "cpu"])
    assert rc == 0
    info = live["fx"].extract(live["probe"])[1]
    h, w = info["height"], info["width"]
    assert order[0] == ("features", (1, 16, h, w, 3)) and order[1] == ("start",)
    assert f"warmed up the network for {w}x{h} frames" in capsys.readouterr().err
    assert not S.probe_safe("udp://127.0.0.1:5000") and not S.probe_safe("/dev/video0")
    assert S.probe_safe("rtsp://cam/1") and S.probe_safe(str(live["probe"]))
    assert watching.WARM_UP_PROBE_S <= 5.0
