"""Review pages (pipeline.review): page data, offline pages, and the pages in a real headless browser.

Browser tests run Debian's Chromium through playwright inside a loopback-only network namespace
(tests/browser.py) and skip, with the reason, where that cannot run. Screenshots of every page
they open are kept in $REVIEW_SCREENSHOTS when set, else in the test's tmp folder (printed).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.apps import detection
from pipeline import detect as det
from pipeline.scoring import timeline
from pipeline import evaluate as E
from pipeline import review as RV
from pipeline.scoring import review
from pipeline.common.metrics import ScoredVideo, clip_to_frame_scores, frame_report
from pipeline.synth.videos import Event, VideoSpec, write_video

sys.path.insert(0, str(Path(__file__).parent))
from browser import run_browser, unavailable  # noqa: E402

FPS = 16.0
trapz = getattr(np, "trapezoid", None) or getattr(np, "trapz")   # numpy 2 renamed it
SETTINGS = dict(threshold=0.5, min_duration_s=1.0, merge_gap_s=0.5)


# ----------------------------------------------------------------------------- test data

def _clip_curve(seed: int, n_clips: int) -> np.ndarray:
    """Clip scores with a few clear bumps, some near the threshold."""
    rng = np.random.default_rng(seed)
    s = rng.random(n_clips) * 0.35
    s[2:4] = 0.62
    s[5] = 0.55                        # one clip (1 s at 16 fps) after a 1-clip gap: joined at merge gap 2 s
    s[n_clips - 3] = 0.5               # exactly at the threshold
    s[n_clips // 2] = 0.9
    return s


def write_detect_folder(root: Path, codecs=(("h264clip", "libx264", ".mp4"), ("mpeg4clip", "mpeg4", ".avi")),
                        n_frames: int = 200) -> Path:
    """A pipeline.detect output folder written with detect's own writers for generated videos
    (one H.264 .mp4 a browser plays, one MPEG-4 part 2 .avi it does not) and known score curves."""
    out = root / "det"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (name, codec, ext) in enumerate(codecs):
        video = write_video(VideoSpec(name, n_frames=n_frames, fps=int(FPS), size=64, seed=k,
                                      events=[Event("flash", 40, 71)]), root / "in" / f"{name}{ext}", codec=codec)
        fs = timeline.frame_scores(_clip_curve(k, -(-n_frames // 16)) * (1.0 - 0.05 * k), n_frames)       # (frames,)
        ivs = timeline.find_intervals(fs, FPS, 0.5, 1.0, 0.5)
        files = detection.output_paths(out, name)
        files.pop("plot")
        files["scores"].write_text(timeline.scores_csv(fs, FPS))
        files["intervals"].write_text(timeline.intervals_csv(ivs))
        rows.append(dict(video=name, path=str(video), status="ok", error=None, frames=n_frames, fps=FPS,
                         duration_s=n_frames / FPS, max_score=float(fs.max()), intervals=ivs,
                         files={k: str(v) for k, v in files.items()}, settings=dict(SETTINGS, checkpoint="run")))
    rows.append(dict(video="broken", path=str(root / "in" / "broken.mp4"), status="error",
                     error="broken.mp4: not a video"))
    summary = dict(SETTINGS, checkpoint="run/model.pt", random_weights=True, extractor={"clip_len": 16}, videos=rows)
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def page_data(page: Path) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(m.group(1))


def assert_offline(page: Path) -> None:
    """Everything inline: no external script, style, image or font, no URL to another host."""
    text = page.read_text()
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+stylesheet", text)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", text)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text)) - {"http://www.w3.org/2000/svg"}
    assert not urls, urls


# ----------------------------------------------------------------------------- page data (fast)

@pytest.mark.parametrize("n_frames", [160, 165, 7])
def test_scores_encoding_round_trip(n_frames):
    fs = timeline.frame_scores(np.random.default_rng(0).random(-(-n_frames // 16)), n_frames)
    enc = review.encode_scores(fs)
    assert enc["step"] == 16 and len(enc["v"]) == -(-n_frames // 16)
    np.testing.assert_array_equal(review.decode_scores(enc), np.round(fs, 6))
    noisy = np.random.default_rng(1).random(n_frames)                     # not piecewise constant
    enc = review.encode_scores(noisy)
    assert enc["step"] == 1 and np.array_equal(review.decode_scores(enc), np.round(noisy, 6))


def test_label_runs_and_curve_thinning():
    assert review.label_runs(np.array([0, 1, 1, 0, 0, 1])) == [[1, 2], [5, 5]]
    assert review.label_runs(np.zeros(4)) == []
    x = np.linspace(0, 1, 50_000) ** 2
    tx, ty = review.thin_curve(x, np.sqrt(x), 300)
    assert len(tx) <= 2 * 300 + 2 and (tx[0], tx[-1]) == (0.0, 1.0)
    assert np.all(np.diff(tx) >= 0) and np.all(np.diff(ty) >= 0)
    assert trapz(ty, tx) == pytest.approx(trapz(np.sqrt(x), x), abs=2e-3)


def test_detect_page_is_offline_sorted_with_video_or_thumbnails(tmp_path):
    out = write_detect_folder(tmp_path)
    page = review.write_detect_review(out)
    assert page == out / "review.html" and oct(page.stat().st_mode & 0o044) == oct(0o044)
    assert_offline(page)
    data = page_data(page)
    videos = {v["name"]: v for v in data["videos"]}
    assert [v["max_score"] for v in data["videos"]] == sorted((v["max_score"] for v in data["videos"]), reverse=True)
    h264, mpeg4 = videos["h264clip"], videos["mpeg4clip"]
    assert h264["src"] == "../in/h264clip.mp4" and h264["thumbs"] == []          # the browser plays it
    assert mpeg4["src"] is None and 1 <= len(mpeg4["thumbs"]) <= review.N_THUMBS     # it does not: thumbnails
    assert all(t["src"].startswith("data:image/jpeg;base64,") for t in mpeg4["thumbs"])
    assert [t["t"] for t in mpeg4["thumbs"]] == sorted(t["t"] for t in mpeg4["thumbs"])
    # the curve and the intervals are detect's, exactly
    np.testing.assert_array_equal(review.decode_scores(h264["scores"]), timeline.read_scores_csv(out / "h264clip.scores.csv"))
    assert h264["intervals"] == timeline.read_intervals_csv(out / "h264clip.intervals.csv")
    assert any("broken" in p for p in data["problems"])
    # a folder without results: a clear error naming it
    with pytest.raises(FileNotFoundError, match="summary.json"):
        review.write_detect_review(tmp_path / "empty")


def test_review_cli_rebuilds_page(tmp_path, capsys):
    out = write_detect_folder(tmp_path, codecs=(("clip", "libx264", ".mp4"),), n_frames=112)
    assert RV.main([str(out), "--no-thumbnails"]) == 0
    assert "review.html" in capsys.readouterr().out and page_data(out / "review.html")["videos"][0]["frames"] == 112
    assert RV.main([str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def _scored_videos(n: int = 12, seed: int = 0) -> list[ScoredVideo]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        abnormal = i % 3 != 0
        clips = int(rng.integers(10, 60))
        s = rng.random(clips) * 0.6
        lab = np.zeros(16 * clips)
        if abnormal:
            a = int(rng.integers(0, clips - 5))
            lab[16 * a:16 * (a + 4)] = 1
            s[a:a + 4] += rng.random() * 0.5
        out.append(ScoredVideo(f"v{i:02d}", int(abnormal), ["Arson", "Abuse"][i % 2] if abnormal else "Normal",
                               clip_to_frame_scores(np.clip(s, 0, 1)), lab))
    return out


def test_report_page_worst_first_with_curves(tmp_path):
    videos = _scored_videos()
    report = frame_report(videos, 0.5)
    page = review.write_evaluation_review(tmp_path / "report.html", report, videos)
    assert_offline(page)
    data = page_data(page)
    assert data["report"]["auc"] == report["auc"] and len(data["videos"]) == len(videos)
    by_name = {v.name: v for v in videos}
    for row in data["videos"]:
        v = by_name[row["name"]]
        lab = v.frame_labels.astype(bool)
        assert row["missed"] == int((lab & (v.frame_scores < 0.5)).sum())
        assert row["false_alarms"] == int((~lab & (v.frame_scores >= 0.5)).sum())
        assert row["gt"] == review.label_runs(v.frame_labels)
        np.testing.assert_allclose(review.decode_scores(row["scores"]), v.frame_scores, atol=5e-4)
    errors = [r["missed"] + r["false_alarms"] for r in data["videos"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    # the drawn ROC curve is the report's: its area is the AUC
    assert trapz(data["roc"]["y"], data["roc"]["x"]) == pytest.approx(report["auc"], abs=5e-3)


def test_flags(tmp_path, capsys):
    assert det.build_parser().parse_args(["v.mp4", "--checkpoint", "c"]).html is True
    assert det.build_parser().parse_args(["v.mp4", "--checkpoint", "c", "--no-html"]).html is False
    assert E.main(["--data-root", str(tmp_path), "--html"]) == 2
    assert "--out" in capsys.readouterr().err


# ----------------------------------------------------------------------------- in a browser (slow)

REASON = unavailable()
browser = pytest.mark.skipif(REASON is not None, reason=f"no headless browser: {REASON}")

# Pixels of a colour on a canvas (the curve is #1f4e9c, detected intervals #ff7f0e).
COUNT_PIXELS = """(([id, r, g, b]) => {
  const c = document.getElementById(id), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40 && d[i + 3] > 200) n++;
  return n; })"""


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("REVIEW_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {d}")
    return d


def set_value(selector: str, value) -> dict:
    return {"eval": f"(() => {{ const e = document.querySelector('{selector}'); e.value = '{value}'; "
                    f"e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); "
                    f"return window.review.state.intervals.length; }})()"}


def interval_cases(data: dict) -> list[list]:
    """(scores, fps, threshold, min_duration, merge_gap) cases for JS-vs-Python, from the page's
    own curves and from irregular per-frame curves with values exactly at the thresholds."""
    rng = np.random.default_rng(5)
    curves = [(review.decode_scores(v["scores"]), v["fps"]) for v in data["videos"]]
    noisy = np.round(rng.random(700), 2)
    noisy[100:140] = 0.8
    curves += [(noisy, 25.0), (np.round(np.sin(np.arange(900) / 37.0) ** 2, 3), 29.97), (np.array([0.7]), 10.0)]
    cases = []
    for scores, fps in curves:
        for thr, md, gap in [(0.5, 1.0, 0.5), (0.3, 0.0, 0.0), (0.55, 0.5, 2.0), (0.62, 0.25, 0.1), (0.8, 3.0, 1.0)]:
            cases.append([scores.tolist(), fps, thr, md, gap])
    return cases


@pytest.mark.slow
@browser
def test_detect_page_in_browser(tmp_path):
    out = write_detect_folder(tmp_path)
    page = review.write_detect_review(out)
    data = page_data(page)
    h264 = next(v for v in data["videos"] if v["name"] == "h264clip")
    scores = review.decode_scores(h264["scores"])
    at_07 = timeline.find_intervals(scores, FPS, 0.7, 1.0, 0.5)
    assert len(at_07) != len(h264["intervals"])
    shots = shots_dir(tmp_path)
    cases = interval_cases(data)
    steps = lambda via: [                                                       # noqa: E731
        {"eval": "window.review.state.intervals.length"},                       # 0
        {"eval": f"{COUNT_PIXELS}(['curve', 31, 78, 156])"},                    # 1 curve drawn
        {"eval": f"{COUNT_PIXELS}(['curve', 255, 127, 14])"},                   # 2 intervals drawn
        {"eval": "document.querySelectorAll('#intervals tr.iv').length"},       # 3
        {"wait": "document.querySelector('video') && document.querySelector('video').readyState >= 1"},
        {"click": "#intervals tr.iv", "nth": 1},                                # 5 click the 2nd interval
        {"wait": "!document.querySelector('video').seeking"},
        {"eval": "document.querySelector('video').currentTime"},                # 7
        {"press": "p"},                                                         # 8 keyboard: previous
        {"wait": "!document.querySelector('video').seeking"},
        {"eval": "document.querySelector('video').currentTime"},                # 10
        {"press": "n"},
        {"wait": "!document.querySelector('video').seeking"},
        {"eval": "document.querySelector('video').currentTime"},                # 13
        {"screenshot": str(shots / f"review_{via}.png")},                       # 14
        set_value("#threshold", 0.7),                                           # 15 slider -> count
        {"eval": "document.getElementById('iv-count').textContent"},            # 16
        {"eval": "document.getElementById('curve').dataset.intervals"},         # 17
        {"eval": f"({json.dumps(cases)}).map(c => findIntervals(c[0], c[1], c[2], c[3], c[4]))"},   # 18
        {"eval": "(() => { const b = document.getElementById('curvebox').getBoundingClientRect();"
                 " const L = window.review.state.layout;"
                 " document.getElementById('curvebox').dispatchEvent(new MouseEvent('click', {bubbles: true,"
                 " clientX: b.left + L.pad.l + 0.75 * L.pw, clientY: b.top + 40}));"
                 " return true; })()"},                                         # 19 click at 3/4 of the curve
        {"wait": "!document.querySelector('video').seeking"},
        {"eval": "document.querySelector('video').currentTime"},                # 21
    ]
    thumbs = [{"eval": "document.querySelectorAll('#media .strip img').length"},
              {"eval": "document.querySelector('video') === null"},
              {"click": "#intervals tr.iv", "nth": 0},
              {"eval": "window.review.state.pos"},
              {"screenshot": str(shots / "review_thumbnails.png")}]
    result = run_browser({"root": str(tmp_path), "pages": [
        {"path": "det/review.html", "hash": "#video=h264clip", "via": "file", "steps": steps("file")},
        {"path": "det/review.html", "hash": "#video=h264clip", "via": "http", "steps": steps("http")},
        {"path": "det/review.html", "hash": "#video=mpeg4clip", "via": "file", "steps": thumbs},
    ]}, tmp_path / "browser")
    for rec in result["pages"]:
        assert "error" not in rec, rec
        assert rec["console_errors"] == [] and rec["page_errors"] == [] and rec["external_requests"] == [], rec
    ivs = h264["intervals"]
    assert len(ivs) >= 2
    for rec in result["pages"][:2]:
        r = rec["results"]
        assert r[0] == len(ivs) == r[3]                                          # listed as detect found them
        assert r[1] > 100 and r[2] > 20                                          # curve and intervals drawn
        assert r[7] == pytest.approx(ivs[1]["start_s"], abs=1e-3)                # click -> video.currentTime
        assert r[10] == pytest.approx(ivs[0]["start_s"], abs=1e-3)               # 'p'
        assert r[13] == pytest.approx(ivs[1]["start_s"], abs=1e-3)               # 'n'
        assert Path(r[14]).stat().st_size > 10_000
        assert r[15] == len(at_07) and r[16] == str(len(at_07)) == r[17]         # the slider redrew them
        assert r[21] == pytest.approx(0.75 * h264["duration_s"], abs=0.2)         # click on the curve seeks
        for (scores_, fps, thr, md, gap), js in zip(cases, r[18]):               # JS rule == Python rule
            py = timeline.find_intervals(np.asarray(scores_), fps, thr, md, gap)
            assert [(i["start_frame"], i["end_frame"], i["peak_frame"]) for i in js] == \
                   [(i["start_frame"], i["end_frame"], i["peak_frame"]) for i in py], (thr, md, gap)
            for a, b in zip(js, py):
                for key in ("start_s", "end_s", "duration_s", "peak_score", "mean_score"):
                    assert a[key] == pytest.approx(b[key], abs=2e-6)
    t = result["pages"][2]["results"]
    mpeg4 = next(v for v in data["videos"] if v["name"] == "mpeg4clip")
    assert t[0] == len(mpeg4["thumbs"]) > 0 and t[1] is True
    assert t[3] == pytest.approx(mpeg4["intervals"][0]["start_s"])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A small trained model evaluated through the CLI with --html (as tests/test_evaluate.py)."""
    from pipeline import train as T
    from pipeline.synth.features import make_dataset

    base = tmp_path_factory.mktemp("review_eval")
    root = base / "data"
    make_dataset(root, "ucf", n_train_normal=6, n_train_abnormal=6, n_test_normal=4, n_test_abnormal=5,
                 min_clips=12, max_clips=30, dim=256, crops=2, seed=3)
    assert T.main(["--data-root", str(root), "--out", str(base / "run"), "--epochs", "2", "--batch-size", "8",
                   "--T", "16", "--feature-dim", "256", "--quiet"]) == 0
    assert E.main(["--data-root", str(root), "--checkpoint", str(base / "run"), "--out", str(base / "rep"),
                   "--html", "--quiet"]) == 0
    return base / "rep"


@pytest.mark.slow
@browser
def test_report_page_in_browser(evaluated, tmp_path):
    page = evaluated / "report.html"
    assert_offline(page)
    report = json.loads((evaluated / "report.json").read_text())
    data = page_data(page)
    assert data["report"]["auc"] == report["auc"] and set(data["report"]["per_class"]) == set(report["per_class"])
    shots = shots_dir(tmp_path)
    steps = lambda via: [                                                       # noqa: E731
        {"eval": "document.querySelectorAll('#videos tr.video').length"},        # 0
        {"eval": "document.querySelector('#roc polyline.curve').getAttribute('points').split(' ').length"},  # 1
        {"eval": "document.querySelector('#pr polyline.curve').getAttribute('points').split(' ').length"},   # 2
        {"eval": "document.querySelectorAll('#per-class tr').length"},          # 3
        {"eval": "[...document.querySelectorAll('#videos tr.video')].map(r => r.dataset.name)"},             # 4
        {"click": "#videos tr.video", "nth": 0},                                # 5 open the worst
        {"wait": "document.querySelector('tr.detail canvas[data-drawn]')"},
        {"wait": "document.querySelector('#videos tbody').dataset.sparks === 'done'"},
        {"screenshot": str(shots / f"report_{via}.png"), "full_page": True},    # 8
        {"click": "#videos th[data-key=name]"},                                 # 9 sort by name
        {"eval": "[...document.querySelectorAll('#videos tr.video')].map(r => r.dataset.name)"},             # 10
    ]
    result = run_browser({"root": str(evaluated), "pages": [
        {"path": "report.html", "via": "file", "steps": steps("file")},
        {"path": "report.html", "via": "http", "steps": steps("http")}]}, tmp_path / "browser")
    for rec in result["pages"]:
        assert "error" not in rec, rec
        assert rec["console_errors"] == [] and rec["page_errors"] == [] and rec["external_requests"] == [], rec
        r = rec["results"]
        assert r[0] == report["n_videos"] == len(data["videos"])
        assert r[1] == len(data["roc"]["x"]) > 2 and r[2] == len(data["pr"]["x"]) > 2
        assert r[3] == len(report["per_class"])
        assert r[4] == [v["name"] for v in data["videos"]]                       # worst first, as computed
        assert Path(r[8]).stat().st_size > 10_000
        assert r[10] == sorted(r[4])


@pytest.mark.slow
@browser
def test_detect_cli_writes_review_page(tmp_path):
    """detect end to end (random-weight I3D at 64x64, a random model) writes a page that opens;
    --no-html writes none."""
    from pipeline.model.network import AnomalyGCN

    torch.manual_seed(0)
    record = dict(profile="32x2", weights=None, weights_sha256=None, random_init=True, seed=0, crops=1,
                  short_side=64, crop_size=56, norm="kinetics", tail="pad", clip_len=16, feature_dim=2048)
    ckpt = tmp_path / "model.pt"
    torch.save({"model": AnomalyGCN(in_dim=2048).state_dict(), "config": {"dropout": 0.0, "adjacency": "learned"},
                "in_dim": 2048, "epoch": 0, "extractor": record}, ckpt)
    video = write_video(VideoSpec("probe", n_frames=64, fps=16, size=64, seed=1), tmp_path / "in" / "probe.mp4")
    assert det.main([str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "nohtml"), "--no-html",
                     "--quiet", "--device", "cpu"]) == 0
    assert not (tmp_path / "nohtml" / "review.html").exists()
    assert det.main([str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "det"), "--quiet",
                     "--device", "cpu"]) == 0
    page = tmp_path / "det" / "review.html"
    assert page.exists() and page_data(page)["videos"][0]["frames"] == 64
    result = run_browser({"root": str(tmp_path), "pages": [{"path": "det/review.html", "via": "file", "steps": [
        {"eval": "document.getElementById('vname').textContent"},
        {"wait": "document.querySelector('video') && document.querySelector('video').readyState >= 1"},
        {"eval": "document.querySelector('video').duration"}]}]}, tmp_path / "browser")
    rec = result["pages"][0]
    assert "error" not in rec and rec["console_errors"] == [] and rec["page_errors"] == [], rec
    assert rec["results"][0] == "probe" and rec["results"][2] == pytest.approx(4.0, abs=0.1)


SHARED = Path(__file__).resolve().parents[2] / "shared"
MIST = SHARED / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation_New.txt"


@pytest.mark.skipif(not MIST.exists(), reason="../shared/data (real UCF-Crime annotation) not present")
def test_report_page_for_the_ucf_test_set_stays_small(tmp_path):
    """UCF-Crime's real test geometry (290 videos, 1.1 M frames, from MIST's annotation, which
    records frame counts) with random scores: the page holds every video and stays under 0.6 MB."""
    from pipeline.model import data as D
    ann = D.read_annotations(MIST, "ucf")
    rng = np.random.default_rng(0)
    videos = []
    for name, n in ann.n_frames.items():
        clips = -(-int(n) // 16)
        lab = ann.frame_labels(name, 16 * clips)
        videos.append(ScoredVideo(name, int(lab.any()), ann.classes.get(name, ""),
                                  clip_to_frame_scores(rng.random(clips)), lab))
    page = review.write_evaluation_review(tmp_path / "report.html", {"far_threshold": 0.5, "n_videos": 290}, videos)
    data = page_data(page)
    assert len(data["videos"]) == 290 and sum(v["frames"] for v in data["videos"]) == sum(len(v.frame_scores) for v in videos)
    assert page.stat().st_size < 600_000
