"""Stage 3: frame-level evaluation of a checkpoint on a benchmark's test split (what
``python -m pipeline.evaluate`` runs): scores, the report (ROC-AUC, AP, AUC within anomalous videos,
false alarms) and its text table.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.scoring.checkpoint import load_model, score_clips
from pipeline.model import data as D
from pipeline.common.cli import progress
from pipeline.common.io import atomic_save_npz, atomic_write_json
from pipeline.common.metrics import CLIP_LEN, ScoredVideo, clip_to_frame_scores, frame_report

HEADLINE = {"ucf": "auc", "sht": "auc", "xd": "ap"}


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
            from pipeline.scoring.review import write_evaluation_review
            write_evaluation_review(out_dir / "report.html", report, scored)
    if not quiet:
        print(format_report(report))
        if out:
            print(f"wrote {Path(out) / 'report.json'} and {Path(out) / 'scores.npz'}"
                  + (f" and {Path(out) / 'report.html'}" if html else ""))
    return report


def extraction_rows(videos: list, top: Path) -> dict[str, dict]:
    """video -> its extraction manifest row (pipeline.extract), for the videos that have one."""
    from pipeline.features.featstore import find_record

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
