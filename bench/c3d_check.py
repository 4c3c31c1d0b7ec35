"""Second real check (issue 15): train on the 23 real BKU road-accident videos (C3D, video labels),
test on the 17 real UCF-Crime test videos with frame truth.

    python bench/c3d_check.py [--seeds 3] [--configs defaults,mil,literal,bc,full] [--work DIR]

Both sets are Sultani-format C3D fc6 features, 32 segments x 4096 per video (``../shared/realdata/
ucf_crime_c3d``, loaded by ``bench/realdata.py``). Training: ``pipeline.train --dataset sht --T 32``
(the 32 segments are the T segments) with each configuration's flags, the final model. Testing: each
test video's 32 segment scores (``pipeline.scoring.checkpoint.score_clips``) are mapped to its frames by
Sultani's rule (``realdata.sultani_frame_rows``) and frame AUC / AP are taken over all 17 videos
concatenated. The training set is tiny (13 anomalous + 10 normal videos, all road accidents) and
the test set holds 4 classes, so this checks the direction of the comparisons, not absolute levels.
Prints a markdown table. Skips cleanly when the real data is absent.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata as R  # noqa: E402
from pipeline.model import training
from pipeline import train as TR  # noqa: E402
from pipeline.scoring.checkpoint import load_model, score_clips  # noqa: E402
from pipeline.common.metrics import safe_ap, safe_auc  # noqa: E402

CONFIGS = {"defaults": "", "mil": "--adjacency none", "literal": "--paper-literal", "bc": "--bc",
           "full": "--bc --bcg"}


def training_root(work: Path) -> Path:
    """A ShanghaiTech-format data root of the 23 BKU videos: features/<video>.npy (32, 4096), train.list."""
    rows = [r for r in csv.DictReader(open(R.REALDATA / "index.csv")) if r["dataset"].startswith("BKU")]
    (work / "features").mkdir(parents=True, exist_ok=True)
    for r in rows:
        np.save(work / "features" / f"{r['video']}.npy", R._c3d(R.REALDATA, r))
    (work / "train.list").write_text("".join(f"{r['video']},{r['label']}\n" for r in rows))
    return work


def test_score(run_dir: Path, test: R.FeatureSet) -> tuple[float, float]:
    """Frame AUC and AP of a trained model on the 17 UCF-Crime test videos (Sultani's frame mapping)."""
    model, _ = load_model(run_dir, "cpu")
    scores, labels = [], []
    for v in test.videos:
        s = score_clips(model, v.x.astype(np.float32)[:, None, :], "cpu")      # (32,)
        scores.append(s[v.frame_row])
        labels.append(v.frames)
    y, s = np.concatenate(labels), np.concatenate(scores)
    return safe_auc(y, s), safe_ap(y, s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ",".join(CONFIGS))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "out" / "c3d")
    args = p.parse_args(argv)
    if not (R.REALDATA / "index.csv").is_file():
        print(f"skipped: {R.REALDATA / 'index.csv'} not found")
        return 0
    test = R.load_ucf_c3d()
    root = training_root(args.work / "root")
    print(f"| configuration | flags | frame AUC (%) | AP (%) | per seed AUC |")
    print("|---|---|---|---|---|")
    for name in args.configs.split(","):
        aucs, aps = [], []
        for seed in range(args.seeds):
            out = args.work / "runs" / name / f"seed{seed}"
            cfg = TR.config_from_args(TR.build_parser().parse_args(shlex.split(CONFIGS[name])))
            cfg = replace(cfg, dataset="sht", data_root=str(root), out=str(out), T=32, seed=seed,
                          epochs=args.epochs, quiet=True, overwrite=True, cache=False, device="cpu")
            with contextlib.redirect_stdout(io.StringIO()):
                training.train(cfg)
            auc, ap = test_score(out / "model.pt", test)
            aucs.append(auc)
            aps.append(ap)
        print(f"| {name} | `{CONFIGS[name]}` | {100 * np.mean(aucs):.1f} ± {100 * np.std(aucs):.1f} | "
              f"{100 * np.mean(aps):.1f} | {' '.join(f'{100 * a:.1f}' for a in aucs)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
