"""Review pages: one self-contained HTML file to look at detections and evaluations.

    python -m pipeline.review detections/          # (re)build detections/review.html
    python -m pipeline.detect clip.mp4 --checkpoint runs/ucf          # writes it by default
    python -m pipeline.evaluate --dataset ucf --out reports/ucf --html  # writes reports/ucf/report.html

Both pages work offline, from ``file://`` or any static server: styles, scripts and data are
inline (``pipeline/review_assets/``, data as inline JSON), plots are drawn in the page on
``<canvas>`` / SVG. Nothing is fetched from the network.

* ``review.html`` (detect): an index of the videos of a detection folder (its ``summary.json``),
  sorted by peak score; for the chosen video the video itself (an HTML5 ``<video>`` pointing at
  the source file by relative path when a browser can play its codec and container, otherwise a
  strip of thumbnails taken here with PyAV), the score curve with a playhead, the detected
  intervals listed and drawn, click to seek, keys ``n`` / ``p`` for the next / previous interval,
  and a threshold slider that recomputes the intervals in the page with the rule of
  :func:`pipeline.scoring.timeline.find_intervals` (mirrored in ``common.js``; a browser test checks that
  both agree).
* ``report.html`` (evaluate): AUC, AP, FAR, ROC and PR curves, per-class AUC, and each test
  video's score curve against its ground truth, worst first (missed anomalous frames plus
  false-alarm frames at the FAR threshold).

Scores travel compactly: a per-frame curve that is a per-clip curve repeated (as detect and
evaluate produce) is stored as its clip values, ``{"n": frames, "step": 16, "v": [...]}``; the
page expands it with the same rule as :func:`pipeline.scoring.timeline.frame_scores`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pipeline.scoring.review import write_detect_review

# ----------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.common.cli import run_cli

    p = argparse.ArgumentParser(prog="python -m pipeline.review",
                                description="(Re)build review.html in a pipeline.detect output folder.")
    p.add_argument("folder", help="a pipeline.detect --out folder (holds summary.json)")
    p.add_argument("--no-thumbnails", dest="thumbnails", action="store_false",
                   help="no thumbnail strips for videos a browser cannot play")
    a = p.parse_args(argv)
    return run_cli(lambda: print(f"wrote {write_detect_review(a.folder, a.thumbnails)}"))


if __name__ == "__main__":
    sys.exit(main())
