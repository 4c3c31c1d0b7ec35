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
from pathlib import Path

import numpy as np
import torch

from . import data as D
from .cli import HelpFormatter, check_device, progress, run_cli
from .io import atomic_save_npz, atomic_write_json
from .metrics import CLIP_LEN, ScoredVideo, clip_to_frame_scores, frame_report
from .model import AnomalyGCN, build_model

HEADLINE = {"ucf": "auc", "sht": "auc", "xd": "ap"}


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory -> its best.pt (validation-selected) or model.pt."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "model.pt"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path}: no best.pt or model.pt in this run directory; train first "
                                f"(python -m pipeline.train --out {path})")
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return path


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[AnomalyGCN, dict]:
    """Load a trained model (``weights_only=True``) -> (model in eval mode, checkpoint dict without weights)."""
    path = resolve_checkpoint(checkpoint)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path}: not a pipeline checkpoint (no 'model'/'config' entries)")
    cfg = state["config"]
    try:
        model = build_model(cfg, state["in_dim"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:   # wrong shapes, missing or extra weights
        detail = " ".join(str(e).split())
        raise ValueError(f"{path}: the checkpoint does not fit this version's model "
                         f"({e.__class__.__name__}: {detail[:300]}{'...' if len(detail) > 300 else ''})") from e
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k != "model"}
    meta["path"] = str(path)
    return model, meta


@torch.no_grad()
def score_clips(model: AnomalyGCN, feats: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Score one video at full length: feats (clips, crops, D) -> clip scores (clips,), its views
    (crops or regions) combined as the model was trained (``AnomalyGCN.clip_scores``)."""
    x = torch.from_numpy(np.ascontiguousarray(feats.transpose(1, 0, 2))).float().to(device)   # (crops, clips, D)
    return model.clip_scores(x).cpu().numpy().astype(np.float64)                                # (clips,)


def evaluate(dataset: str = "ucf", data_root: str | None = None, checkpoint: str | None = None,
             out: str | None = None, device: str = "auto", test_list: str | None = None,
             annotations: str | None = None, features: str | None = None, far_threshold: float = 0.5,
             quiet: bool = False, html: bool = False, strict: bool = False) -> dict:
    """Score the test split and return the report (also written under ``out`` when given).

    ``strict``: refuse annotations that run past the features or whose frame counts do not match
    them (otherwise a warning on stderr and in the report)."""
    if html and not out:
        raise ValueError("--html writes report.html into --out; give --out DIR")
    if dataset not in D.DATASETS:
        raise ValueError(f"--dataset must be one of {D.DATASETS}, got {dataset!r}")
    if not 0.0 <= far_threshold <= 1.0:
        raise ValueError(f"--far-threshold must be in [0, 1], got {far_threshold}")
    root = Path(data_root or f"data/{dataset}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model, meta = load_model(checkpoint or f"runs/{dataset}", dev)
    ann_path = Path(annotations) if annotations else D.find_file(root, dataset, "annotations")
    annotation = D.read_annotations(ann_path, dataset)
    videos = D.load_split(root, dataset, "test", list_path=test_list, features_root=features, annotation=annotation)
    annotation.check_names([v.name for v in videos])
    unmasked = [v.name for v in videos if v.label_from == "no mask"]
    rows = extraction_rows(videos, Path(features) if features else
                           (root / "features" if (root / "features").is_dir() else root))
    if dataset == "sht":
        D.check_mask_lengths(annotation, {v.name: D.feature_clips(v.paths) for v in videos},
                             {n: r["frames"] for n, r in rows.items() if isinstance(r.get("frames"), int)}, CLIP_LEN)
    partial = [n for n, r in rows.items() if r.get("status") == "partial"]
    if partial:         # scored on the frames that decoded; the annotation may cover more
        print(f"warning: {len(partial)} test video(s) have features of only part of their frames (manifest status "
              f"partial): {', '.join(partial)}", file=sys.stderr)
    if unmasked and not quiet:   # the list gives no labels: no mask file is taken to mean normal, and said so
        print(f"warning: {len(unmasked)} test video(s) have no frame mask in {annotation.path} and are taken as "
              f"normal: {', '.join(unmasked)}", file=sys.stderr)
    extent = D.check_extent(annotation, {v.name: D.feature_clips(v.paths) for v in videos}, CLIP_LEN)
    problems = extent.problems(ann_path)
    if problems and strict:
        raise D.DataError(problems[0] + "; refused (--strict)")
    for line in problems:
        print(f"warning: {line}; anomalous frames past the end are dropped (--strict refuses)", file=sys.stderr)

    scored, clip_scores = [], {}
    for v in progress(videos, quiet, desc="scoring test videos", unit="video"):
        feats = D.load_features(v.paths, dim=model.in_dim)           # (clips, crops, D)
        s = score_clips(model, feats, dev)                            # (clips,)
        clip_scores[v.name] = s.astype(np.float32)
        n_frames = CLIP_LEN * len(s)
        cls = v.cls or annotation.classes.get(v.name, "")
        scored.append(ScoredVideo(v.name, int(v.label), cls or ("Normal" if v.label == 0 else ""),
                                  clip_to_frame_scores(s), annotation.frame_labels(v.name, n_frames)))
    report = frame_report(scored, far_threshold)
    report.update(no_mask_taken_as_normal=unmasked, partial_features=partial, dataset=dataset, checkpoint=meta["path"], checkpoint_epoch=meta.get("epoch"),
                  selected_by=checkpoint_label(meta), headline=HEADLINE[dataset],
                  annotations=str(ann_path), clip_len=CLIP_LEN, annotation_warnings=problems)
    if out:
        out_dir = Path(out)
        atomic_save_npz(out_dir / "scores.npz", clip_scores)
        atomic_write_json(out_dir / "report.json", report)
        if html:                                # the review page (pipeline/review.py)
            from .review import write_evaluation_review
            write_evaluation_review(out_dir / "report.html", report, scored)
    if not quiet:
        print(format_report(report))
        if out:
            print(f"wrote {Path(out) / 'report.json'} and {Path(out) / 'scores.npz'}"
                  + (f" and {Path(out) / 'report.html'}" if html else ""))
    return report


def extraction_rows(videos: list, top: Path) -> dict[str, dict]:
    """video -> its extraction manifest row (pipeline.extract), for the videos that have one."""
    from .featstore import find_record

    cache: dict = {}
    out = {}
    for v in videos:
        hit = find_record(v.paths[0], Path(top), cache, v.name)
        if hit is not None:
            out[v.name] = hit[1]
    return out


def checkpoint_label(meta: dict) -> str:
    """How the checkpoint was chosen: 'validation', 'final', or for ``last.pt`` (the resume state,
    which may be any epoch) 'resume state, epoch N of M'."""
    if meta.get("selected_by"):
        return meta["selected_by"]
    if "optimizer" in meta:          # last.pt: written after every epoch, for --resume
        total = (meta.get("config") or {}).get("epochs")
        return f"resume state, epoch {meta.get('epoch')} of {total}" if total else "resume state"
    return "final"


def _pct(x) -> str:
    return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_report(r: dict) -> str:
    """A short table a person reads."""
    lines = [f"{r['dataset']}: {r['n_videos']} test videos ({r['n_abnormal_videos']} anomalous), "
             f"{r['n_frames']} frames; checkpoint {r['checkpoint']} "
             + (f"({r['selected_by']})" if r['selected_by'].startswith("resume state")
                else f"(epoch {r['checkpoint_epoch']}, {r['selected_by']})"),
             f"  frame AUC (%)            {_pct(r['auc'])}",
             f"  frame AP (%)             {_pct(r['ap'])}",
             f"  AUC anomalous only (%)   {_pct(r['auc_abnormal'])}",
             f"  {'false alarms @' + format(r['far_threshold'], '.2f') + ' (%)':<25}{_pct(r['far'])}",
             "  mean score: inside anomalies {}, outside them in anomalous videos {}, normal videos {}".format(
                 *(f"{r[k]:.3f}" if r.get(k) is not None else "n/a" for k in ("mean_inside", "mean_outside", "mean_normal")))]
    if r["per_class"]:
        lines.append("  per class AUC (%): " + ", ".join(f"{c} {_pct(a).strip()}" for c, a in r["per_class"].items()))
    return "\n".join(lines)


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
