"""Stage 3: frame-level evaluation of a trained model on a test split.

    python -m pipeline.evaluate --dataset ucf                       # runs/ucf on data/ucf
    python -m pipeline.evaluate --dataset sht --checkpoint runs/sht/best.pt --out reports/sht

Protocol (RTFM's, see metrics.py): every test video is scored at full length (no resampling);
with several crops, each crop is scored and the probabilities are averaged; clip c's score covers
frames 16c .. 16c+15; frames of all videos are concatenated; ROC-AUC (UCF-Crime, ShanghaiTech)
and AP (XD-Violence) by scikit-learn. The partial last clip of RTFM's ``ceil`` features counts
as a full 16 frames, as in RTFM's ground-truth files.

A run directory as --checkpoint means its validation-selected ``best.pt`` when there is one,
else its final ``model.pt``; never a checkpoint picked by test AUC.

Annotations are checked against the features before anything is scored: intervals ending up to
``data.OVERRUN_TOLERANCE`` (3) frames past a video's scored frames are clipped quietly (the official
UCF-Crime file does that for a few videos); anything further, and frame counts in the annotation
(MIST's format) that do not match the features' clip counts, print a warning naming the videos and
are recorded in the report; ``--strict`` refuses them instead.

With --out DIR: ``report.json`` (auc, ap, auc_abnormal, far, per_class, n_videos, n_frames, ...)
and ``scores.npz`` (one array of clip scores per video, keyed by video name); with --html also
``report.html`` (ROC/PR curves, per-class AUC, each test video's curve against its ground truth,
worst first; :mod:`pipeline.review`).
"""
from __future__ import annotations

import argparse
import sys

from pipeline.scoring.evaluation import evaluate
from pipeline.model import data as D
from pipeline.common.cli import HelpFormatter, check_device, run_cli

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.evaluate",
        description="Frame-level evaluation (RTFM protocol): ROC-AUC for UCF-Crime and ShanghaiTech, "
                    "AP for XD-Violence, plus AUC on anomalous videos, per-class AUC and false-alarm rate.",
        formatter_class=HelpFormatter)
    p.add_argument("--dataset", default="ucf", choices=D.DATASETS, help="dataset rules (labels, lists, headline metric)")
    p.add_argument("--data-root", default=None, help="data root (default data/<dataset>)")
    p.add_argument("--checkpoint", default=None,
                   help="run directory (uses best.pt if validation-selected, else model.pt) or checkpoint file "
                        "(default runs/<dataset>)")
    p.add_argument("--out", default=None, help="write report.json and scores.npz here")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--test-list", default=None, help="test list (default: found in the data root)")
    p.add_argument("--annotations", default=None, help="ground truth (default: found in the data root)")
    p.add_argument("--features", default=None, help="feature folder (default: <data-root>/features or the data root)")
    p.add_argument("--far-threshold", type=float, default=0.5, help="score threshold of the false-alarm rate")
    p.add_argument("--html", action="store_true",
                   help="also write report.html (ROC/PR, per-class AUC, every test video's curve; opens offline)")
    p.add_argument("--strict", action="store_true",
                   help="refuse annotations that run more than 3 frames past the features, or whose frame "
                        "counts do not match them (default: warn and clip)")
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors (needs --out)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.quiet and not a.out:
        p.error("--quiet without --out would print and write nothing; add --out DIR")
    def run():
        check_device(a.device)                     # before anything is read or written
        evaluate(a.dataset, a.data_root, a.checkpoint, a.out, a.device, a.test_list,
                 a.annotations, a.features, a.far_threshold, a.quiet, a.html, a.strict)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
