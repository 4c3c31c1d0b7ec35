"""Does keeping training features in float16 matter? Train once, then score the test split with
float32 features and with the same features rounded to float16 (what training sees).

    python bench/bench_precision.py [--preset small] [--epochs 15] [--out /tmp/precision]

Prints the largest clip-score difference and both frame AUCs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.model import data as D
from pipeline.scoring import checkpoint as E
from pipeline import train as T
from pipeline.common.metrics import ScoredVideo, clip_to_frame_scores, frame_report
from pipeline.synth.features import PRESETS, make_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("/tmp/precision"))
    a = p.parse_args()
    root = a.out / "data"
    if not root.exists():
        make_dataset(root, "ucf", seed=0, progress=False, **PRESETS[a.preset])
    run = a.out / "run"
    if not (run / "model.pt").exists():
        assert T.main(["--data-root", str(root), "--out", str(run), "--epochs", str(a.epochs), "--T", str(a.T),
                       "--quiet", "--no-cache", "--overwrite"]) == 0
    model, _ = E.load_model(run)
    ann = D.read_annotations(D.find_file(root, "ucf", "annotations"), "ucf")
    videos = D.load_split(root, "ucf", "test", annotation=ann)
    scored = {"float32": [], "float16": []}
    worst = 0.0
    for v in videos:
        f = D.load_features(v.paths, dim=model.in_dim)                       # (clips, crops, D) float32
        s32 = E.score_clips(model, f)
        s16 = E.score_clips(model, f.astype(np.float16).astype(np.float32))
        worst = max(worst, float(np.abs(s32 - s16).max()))
        labels = ann.frame_labels(v.name, 16 * len(s32))
        for k, s in (("float32", s32), ("float16", s16)):
            scored[k].append(ScoredVideo(v.name, v.label, v.cls or "x", clip_to_frame_scores(s), labels))
    aucs = {k: frame_report(s)["auc"] for k, s in scored.items()}
    print(f"{len(videos)} test videos; largest clip-score difference {worst:.2e}; frame AUC float32 "
          f"{100 * aucs['float32']:.4f} %, float16 {100 * aucs['float16']:.4f} % "
          f"(difference {100 * abs(aucs['float32'] - aucs['float16']):.4f} points)")


if __name__ == "__main__":
    main()
