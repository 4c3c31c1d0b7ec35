"""Size and speed of the review pages at full scale, in headless Chromium (loopback-only namespace).

    python bench/bench_review.py [--annotations /work/shared/data/ucf_crime/Temporal_Anomaly_Annotation_New.txt]

* report.html for the UCF-Crime test set's real geometry: its 290 videos, their frame counts,
  classes and ground truth (MIST's annotation file, which records each video's frame count), with
  synthetic scores (noise, raised on most ground-truth clips);
* review.html for one 1-hour video at 30 fps (108,000 frames, 6,750 clips), written with detect's
  own writers (scores CSV, intervals CSV, summary.json).

Prints the page sizes, the time Python takes to write them, and in the browser: load (navigation
to the page's ready flag), moving the threshold slider on the hour-long curve (intervals recomputed
over 108,000 frames and redrawn), opening a video's curve on the report, and drawing all 290
sparklines.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.model import data as D  # noqa: E402
from pipeline.apps import detection
from pipeline.scoring import timeline  # noqa: E402
from pipeline.scoring import review as RV  # noqa: E402
from pipeline.common.metrics import ScoredVideo, clip_to_frame_scores, frame_report  # noqa: E402

DEFAULT_ANN = ROOT.parent / "shared" / "data" / "ucf_crime" / "Temporal_Anomaly_Annotation_New.txt"


def smooth_noise(rng: np.random.Generator, n: int, scale: float = 0.35) -> np.ndarray:
    x = np.convolve(rng.random(n + 8), np.ones(8) / 8, mode="valid")[:n]
    return scale * x


def report_page(out: Path, ann_path: Path) -> tuple[Path, float]:
    ann = D.read_annotations(ann_path, "ucf")
    rng = np.random.default_rng(0)
    videos = []
    for name, n_frames in ann.n_frames.items():
        clips = -(-int(n_frames) // 16)
        labels = ann.frame_labels(name, 16 * clips)                                  # (16 clips,)
        s = smooth_noise(rng, clips) + 0.1
        clip_lab = labels.reshape(clips, 16).max(1).astype(bool)
        s[clip_lab] += rng.random() * 0.6                                             # most events raised
        cls = ann.classes.get(name, "")
        label = int(labels.any() or (cls not in ("", "Normal")))
        videos.append(ScoredVideo(name, label, cls or "Normal", clip_to_frame_scores(np.clip(s, 0, 1)), labels))
    report = frame_report(videos, 0.5)
    report.update(dataset="ucf", checkpoint="synthetic scores", checkpoint_epoch=None, selected_by="bench", headline="auc")
    t0 = time.perf_counter()
    page = RV.write_evaluation_review(out / "report.html", report, videos)
    return page, time.perf_counter() - t0


def hour_page(out: Path) -> tuple[Path, float]:
    fps, frames = 30.0, 108_000
    rng = np.random.default_rng(1)
    clips = -(-frames // 16)
    s = smooth_noise(rng, clips, 0.5)
    for start in rng.integers(0, clips - 60, 25):                                   # 25 events
        s[start:start + int(rng.integers(4, 60))] += 0.45
    fs = timeline.frame_scores(np.clip(s, 0, 1), frames)
    ivs = timeline.find_intervals(fs, fps)
    files = detection.output_paths(out, "one_hour")
    files.pop("plot")
    files["scores"].write_text(timeline.scores_csv(fs, fps))
    files["intervals"].write_text(timeline.intervals_csv(ivs))
    row = dict(video="one_hour", path=str(out / "one_hour.mp4"), status="ok", error=None, frames=frames, fps=fps,
               intervals=ivs, files={k: str(v) for k, v in files.items()},
               settings=dict(checkpoint="bench", threshold=0.5, min_duration_s=1.0, merge_gap_s=0.5))
    (out / "summary.json").write_text(json.dumps(dict(checkpoint="bench", threshold=0.5, min_duration_s=1.0,
                                                       merge_gap_s=0.5, extractor={"clip_len": 16}, videos=[row])))
    t0 = time.perf_counter()
    page = RV.write_detect_review(out)
    return page, time.perf_counter() - t0


def main() -> int:
    from browser import run_browser, unavailable

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", default=str(DEFAULT_ANN), help="MIST's UCF-Crime annotation (frame counts)")
    p.add_argument("--repeat", type=int, default=3, help="page loads per page (the median is printed)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "rep").mkdir()
        (tmp / "det").mkdir()
        rep, t_rep = report_page(tmp / "rep", Path(a.annotations))
        hour, t_hour = hour_page(tmp / "det")
        print(f"report.html (290 UCF test videos, 1,111,808 frames): {rep.stat().st_size / 1e6:.3f} MB, "
              f"written in {t_rep:.2f} s")
        print(f"review.html (1-hour video, 108,000 frames): {hour.stat().st_size / 1e6:.3f} MB, written in {t_hour:.2f} s")
        why = unavailable()
        if why:
            print(f"no browser measurements: {why}")
            return 0
        slider = ("(() => { const e = document.getElementById('threshold'), t = [];"
                  " for (const v of [0.3, 0.4, 0.6, 0.7, 0.8]) { const t0 = performance.now(); e.value = v;"
                  " e.dispatchEvent(new Event('input')); t.push(performance.now() - t0); }"
                  " return t.sort((a, b) => a - b)[2]; })()")
        open_row = ("(() => { const t0 = performance.now(); document.querySelector('#videos tr.video').click();"
                    " return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - t0)))); })()")
        sparks = ("new Promise(r => { const t0 = performance.now(); (function w() {"
                  " if (document.querySelector('#videos tbody').dataset.sparks === 'done') r(performance.now() - t0);"
                  " else requestAnimationFrame(w); })(); })")
        pages = []
        for _ in range(a.repeat):
            pages.append({"path": "det/review.html", "via": "file", "steps": [{"eval": slider}]})
            pages.append({"path": "rep/report.html", "via": "file", "steps": [{"eval": sparks}, {"eval": open_row},
                                                                              {"eval": "document.body.dataset.readyMs"},
                          {"eval": "performance.getEntriesByType('navigation')[0].loadEventEnd"}]})
        result = run_browser({"root": str(tmp), "pages": pages}, tmp / "browser")
        errors = [r.get("error") for r in result["pages"] if r.get("error")]
        if errors:
            print("browser errors:", errors)
            return 1
        med = lambda xs: float(np.median(xs))  # noqa: E731
        hp, rp = result["pages"][0::2], result["pages"][1::2]
        print(f"Chromium {result.get('browser')}, file://, median of {a.repeat} loads:")
        print(f"  review.html 1-hour: load {med([r['load_ms'] for r in hp]):.0f} ms; threshold slider step "
              f"(intervals over 108,000 frames + redraw) {med([r['results'][0] for r in hp]):.1f} ms")
        print(f"  report.html 290 videos: load {med([r['load_ms'] for r in rp]):.0f} ms; all sparklines drawn "
              f"{med([r['results'][0] for r in rp]):.0f} ms after load; open a video's curve "
              f"{med([r['results'][1] for r in rp]):.0f} ms; page script done {med([float(r['results'][2]) for r in rp]):.0f} ms "
              f"after navigation start, load event {med([r['results'][3] for r in rp]):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
