"""Anomalies in your own videos: raw video -> per-frame scores, anomalous intervals, a plot.

    python -m pipeline.detect clip.mp4 --checkpoint runs/ucf
    python -m pipeline.detect videos/ more.avi --checkpoint runs/ucf/best.pt --out detections --threshold 0.6
    python -m pipeline.detect videos/ --checkpoint runs/ucf --backend ray --address auto

For each video: I3D features with the *same* extractor the checkpoint was trained on (network,
weights, crops, resize, read from the checkpoint's ``extractor`` record; a flag that contradicts
it is refused), then the trained model, then, in ``--out`` (default ``detections/``), named by the
video's key (its path relative to the input folder without extension, ``cam1/x`` for
``videos/cam1/x.mp4``; a file given directly: its stem; a frame folder: the folder's name):

* ``<video>.scores.csv``     ``frame,time_s,score``: one row per decoded frame, ``time_s`` the frame's
  own presentation time from the first frame (variable frame rates included). Clip c covers frames
  16c..16c+15 (as in evaluation); the padded part of the last clip (tail 'pad') is dropped, so the
  file has exactly as many rows as the video has frames. With tail 'drop' the frames after the last
  full clip take the last clip's score.
* ``<video>.intervals.csv``  ``start_frame,end_frame,start_s,end_s,duration_s,peak_score,peak_frame,
  mean_score``: runs of frames scored >= ``--threshold`` (default 0.5), runs closer than
  ``--merge-gap`` seconds (default 0.5) joined, then runs shorter than ``--min-duration`` seconds
  (default 1.0) dropped, all measured on the frames' times. Frames are 0-based with an inclusive end;
  ``start_s`` is the first frame's time, ``end_s`` the end of the last frame (``(end_frame + 1) / fps``
  at a constant rate).
* ``<video>.png``            the score over time with the detected intervals marked (paper Fig. 3).
* ``summary.json``           settings, extractor and per-video results of every video of the folder,
  rewritten after each video. A rerun skips videos finished with the same checkpoint and settings
  (after Ctrl-C, or with more videos added) and refuses results of other settings without
  ``--overwrite``.
* ``review.html``            (unless ``--no-html``) every video of the folder in a browser: the video,
  its curve with a playhead, the intervals, a live threshold slider (:mod:`pipeline.review`);
  rebuilt from ``summary.json`` on every run.

Long videos: the model's graph is dense over a video's clips, so memory grows with the square of
its length. Videos longer than ``--window`` clips (default 2048, ~18 minutes at 30 fps) are scored
in windows of that many clips overlapping by ``--overlap`` (default 0.5); a clip's score is the
mean over the windows that hold it. Shorter videos are scored exactly as ``pipeline.evaluate``
scores a test video (one graph over the whole video).

On a Ray cluster (``--backend ray --address auto``): every video's features are first extracted by
Ray actors with ``pipeline.extract``'s Ray backend into ``<out>/features/`` (with its manifest;
finished videos are reused on a rerun), then scored here by the same code as the local path.

Exit code: 0 when every video has results, 1 when any video failed (the others still get theirs)
or has a warning (truncated, shorter than one clip, rotation not applied: as ``pipeline.extract``'s
``partial``), 2 when nothing could run (missing or incompatible checkpoint, bad flags, unwritable
``--out``, no GPU for ``--device cuda``, results of other settings).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pipeline.scoring.checkpoint import DEFAULT_OVERLAP, DEFAULT_WINDOW
from pipeline.features.reproduce import CheckpointError, EXTRACTOR_FLAGS, RUNTIME_FLAGS, add_extractor_flags
from pipeline.apps.detection import detect
from pipeline.common.cli import HelpFormatter, interrupted, user_message
from pipeline.scoring.timeline import DEFAULT_MERGE_GAP, DEFAULT_MIN_DURATION, DEFAULT_THRESHOLD
from pipeline.features.video import DEFAULT_IMAGE_FPS

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.detect",
        description="Score your own videos with a trained model: per-frame anomaly scores (CSV), anomalous "
                    "intervals (CSV) and a score plot per video, plus summary.json. Features are extracted "
                    "with the same I3D settings the checkpoint was trained on (read from the checkpoint).",
        formatter_class=HelpFormatter)
    p.add_argument("videos", nargs="+", help="video files, or folders searched for videos and frame folders "
                                             "(results keep the folders below them: cam1/x.mp4 -> OUT/cam1/x.*)")
    p.add_argument("--checkpoint", required=True,
                   help="run directory (best.pt if validation-selected, else model.pt) or checkpoint file")
    p.add_argument("--out", default="detections", help="output folder")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="a frame is anomalous when its score >= this")
    p.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION,
                   help="drop anomalous intervals shorter than this many seconds")
    p.add_argument("--merge-gap", type=float, default=DEFAULT_MERGE_GAP,
                   help="join intervals separated by less than this many seconds")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help="score videos longer than this many 16-frame clips in overlapping windows, bounding memory")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP, help="overlap of consecutive windows, in [0, 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=8, help="clips per I3D forward")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every video, replacing its files (without it, videos finished with the same "
                        "settings are skipped and results of other settings are refused)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNGs")
    p.add_argument("--no-html", dest="html", action="store_false",
                   help="skip review.html (written by default: the folder's videos, curves and intervals in a browser)")
    p.add_argument("--fps", type=float, default=DEFAULT_IMAGE_FPS,
                   help="frame rate of frame folders (numbered images carry no timestamps); videos use their own")
    p.add_argument("--quiet", action="store_true", help="no progress or table")
    r = p.add_argument_group('Ray (pip install -e ".[ray]")')
    r.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: extract features in this process; ray: extract them first on a Ray cluster "
                        "(as python -m pipeline.extract --backend ray) into OUT/features, reused on rerun, "
                        "then score here")
    r.add_argument("--address", default=None,
                   help="Ray cluster: auto or HOST:PORT (default: start Ray on this machine); OUT and the "
                        "videos must be on a file system every node sees")
    add_extractor_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    flags = {k: getattr(a, k) for k in (*EXTRACTOR_FLAGS, *RUNTIME_FLAGS)}
    try:
        summary = detect(a.videos, a.checkpoint, a.out, a.threshold, a.min_duration, a.merge_gap, a.window,
                         a.overlap, a.device, a.overwrite, flags, a.batch_size, a.plot, a.quiet, a.html,
                         a.backend, a.address, a.fps)
    except KeyboardInterrupt:
        return interrupted()
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    failed = [r for r in summary["this_run"] if r["status"] != "ok"]
    warned = [r for r in summary["this_run"] if r["status"] == "ok" and r.get("warning")]
    for r in warned:
        print(f"warning: {r['warning']}", file=sys.stderr)
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    return 1 if failed or warned else 0


if __name__ == "__main__":
    sys.exit(main())
