"""Issue 8 evidence: does the clustering find anomalies, and does each part of the method pay?

Trains named configurations over seeds on a generated data root (which has per-clip truth in
``synth_truth.npz``), evaluates the validation-selected and the final model on the test split, and
reports mean ± std of frame AUC / AP, the mean score outside the anomalous intervals of anomalous
videos (smearing), and what the clustering found in training (``pipeline.model.diagnostics``, averaged
over the last third of the epochs).

    python bench/mechanism.py --data-root /tmp/ucf_s05 --configs backbone,full,full-ones --seeds 0,1,2 \
        --epochs 15 --T 32 --out /tmp/mech_s05

Runs are cached in ``<out>/<config>-s<seed>/result.json``; rerunning only adds missing runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.scoring import evaluation as E  # noqa: E402
from pipeline.model import training as TR  # noqa: E402
from pipeline.apps.ablation import mechanism_summary, shared_training_set  # noqa: E402

LITERAL = TR.PAPER_LITERAL
CONFIGS = {
    "mil": dict(adjacency="none", bc=False, bcg=False, cross_batch="none"),      # plain top-k MIL, no graph
    "backbone": dict(bc=False, bcg=False, cross_batch="none"),
    "bc": dict(bcg=False, cross_batch="none"),
    "cbl": dict(bcg=False),
    "full": dict(),
    "full-ones": dict(pseudo_labels="ones"),
    "full-random": dict(pseudo_labels="random"),
    "bcg-only": dict(bc=False),
    "literal-backbone": dict(bc=False, bcg=False, cross_batch="none", **LITERAL),
    "literal-full": dict(LITERAL),
    "old-main": dict(similarity="hlnet", graph_features="fc", cluster_center="none"),
    # the defaults before the normal-subspace clustering (stop 12): GCN-1, mean rule, lr 1e-3
    "stop12": dict(cluster_layer="gcn1", normal_subspace=0, pseudo_rule="mean", lr=1e-3),
}
MECH = ("purity", "pseudo_precision", "pseudo_recall", "anomaly_rate", "topk_precision", "single_cluster",
        "boosted", "d_normal", "d_abnormal")


def parse_override(text: str) -> dict:
    """'name=value,name=value' -> dict with the TrainConfig field types."""
    out = {}
    if not text:
        return out
    types = {f: type(v) for f, v in vars(TR.TrainConfig()).items() if v is not None}
    for item in text.split(","):
        k, v = item.split("=")
        k = k.replace("-", "_")
        t = types.get(k, str)
        out[k] = (v.lower() in ("1", "true", "yes")) if t is bool else t(v)
    return out


def run(name: str, overrides: dict, seed: int, args) -> dict:
    run_dir = Path(args.out) / f"{name}-s{seed}"
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    cfg = replace(TR.TrainConfig(), data_root=args.data_root, out=str(run_dir), epochs=args.epochs, T=args.T,
                  seed=seed, val_fraction=args.val_fraction, quiet=True, overwrite=True, device="cpu",
                  **overrides)
    t0 = time.time()
    TR.train(cfg)
    secs = time.time() - t0
    log = [json.loads(l) for l in (run_dir / "log.jsonl").read_text().splitlines() if l.strip()]
    mech = mechanism_summary(run_dir, MECH)
    res = {"name": name, "seed": seed, "overrides": overrides, "train_seconds": round(secs, 1), "mechanism": mech,
           "per_epoch": [{k: r.get(k) for k in ("epoch", "purity", "pseudo_precision", "topk_precision", "val_auc")}
                         for r in log]}
    keys = ("auc", "ap", "auc_abnormal", "far", "mean_inside", "mean_outside", "mean_normal", "checkpoint_epoch")
    for sel, ckpt in (("final", run_dir / "model.pt"), ("validation", run_dir / "best.pt")):
        if sel == "validation" and res.get("final") and ckpt.exists() and \
                torch.load(ckpt, weights_only=True)["epoch"] == res["final"]["checkpoint_epoch"]:
            res[sel] = res["final"]                       # the same weights: no second pass
        elif ckpt.exists():
            r = E.evaluate("ucf", args.data_root, str(ckpt), None, "cpu", quiet=True)
            res[sel] = {k: r[k] for k in keys}
    done.write_text(json.dumps(res, indent=1))
    for p in run_dir.glob("*.pt"):       # results are kept; checkpoints are not needed again
        p.unlink()
    return res


def take_off(result: dict, level: float = 0.9) -> str:
    """The first epoch whose validation (video-level) AUC reaches ``level``; '>E' when none did."""
    for e in result["per_epoch"]:
        if e.get("val_auc") is not None and e["val_auc"] >= level:
            return str(e["epoch"])
    return f">{len(result['per_epoch'])}"


def fmt(vals: list) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--configs", default="backbone,full", help=f"comma list of {sorted(CONFIGS)} or name:field=v,...")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--select", default="validation", choices=("validation", "final"))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = []
    with shared_training_set():
        for item in args.configs.split(";") if ";" in args.configs else args.configs.split(","):
            name, _, extra = item.partition(":")
            overrides = {**CONFIGS.get(name, {}), **parse_override(extra)}
            results = [run(name, overrides, int(s), args) for s in args.seeds.split(",")]
            sel = [r.get(args.select) or r["final"] for r in results]
            mech = lambda k: fmt([r["mechanism"].get(k) for r in results])
            per_seed = ", ".join(f"{s['auc']:.3f}" for s in sel)
            row = (f"| {name} | {fmt([s['auc'] for s in sel])} ({per_seed}) | "
                   f"{fmt([s['ap'] for s in sel])} | {', '.join(take_off(r) for r in results)} | "
                   f"{fmt([s['mean_outside'] for s in sel])} | {fmt([s['mean_inside'] for s in sel])} | "
                   f"{mech('purity')} | {mech('pseudo_precision')} | {mech('anomaly_rate')} | "
                   f"{mech('topk_precision')} | {mech('single_cluster')} | {np.mean([r['train_seconds'] for r in results]):.0f} |")
            print(row, flush=True)
            rows.append(row)
    print(f"\n{args.data_root}, {args.epochs} epochs, T={args.T}, seeds {args.seeds}, {args.select} model")
    print("| config | AUC (per seed) | AP | take-off epoch (val AUC >= 0.9) | mean score outside (anomalous videos) | "
          "inside | purity | pseudo-label precision | anomaly rate | top-k precision | single-cluster share | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
