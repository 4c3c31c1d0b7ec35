"""What K=2 batch k-means finds before any training (issue 8, bench/RESULTS.md).

On a generated data root (per-clip truth in ``synth_truth.npz``), builds the default model with random
weights and standardised inputs, draws balanced batches of the training videos (T segments each) and
clusters the abnormal videos' segments the way training does, with and without removing the normal
videos' leading directions (``--normal-subspace``). Reports cluster purity against the truth, the
precision of the batch's smaller cluster (``--pseudo-rule minority``) and of eq. 4's mean rule with
the untrained scores, and the anomaly rate (the precision of a guess).

    python bench/kmeans_at_init.py --data-root /tmp/hard13 --batches 6
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.model import data as D  # noqa: E402
from pipeline.model import diagnostics as DG  # noqa: E402
from pipeline.model import training as TR  # noqa: E402
from pipeline.model.clustering import clustering_input, kmeans2, pseudo_labels, random_init  # noqa: E402


def cluster_abnormal(h: torch.Tensor, n_normal: int, dims: int, seed: int, iters: int = 10) -> torch.Tensor:
    """Cluster the abnormal videos' segments as training does: h (B, T, D') with the n_normal normal videos
    first -> K=2 assignments (B - n_normal, T) from a seeded random start."""
    z = clustering_input(h, True, dims, n_normal)[n_normal:]              # (b, T, D')
    pts = z.reshape(-1, z.shape[-1])
    assign, _ = kmeans2(pts, random_init(pts, torch.Generator().manual_seed(seed)), iters)
    return assign.reshape(z.shape[:2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subspaces", default="0,16,32,64,128", help="comma list of --normal-subspace values")
    args = p.parse_args()
    root = Path(args.data_root)
    videos = D.load_split(root, "ucf", "train")
    fs = TR.load_training_set(videos, args.T, D.FEATURE_DIM, True, cache_dir=root / TR.CACHE_DIR)
    truth = TR.load_segment_truth(root, fs.names, args.T)
    if truth is None:
        sys.exit(f"{root}: no synth_truth.npz for these videos; this needs a generated data root")
    cfg = TR.TrainConfig().resolved()
    torch.manual_seed(args.seed)
    model = TR.model_from_config(cfg, fs.feats.shape[-1])
    everything = list(range(len(fs.names)))
    TR.standardize_inputs(model, fs, everything)
    model.eval()                                     # random weights, no dropout
    gen = torch.Generator().manual_seed(args.seed)
    batches = TR.BalancedBatches(fs.labels, everything, cfg.batch_size, gen)
    rows: dict[tuple, list] = {}
    for b, (normal, abnormal) in enumerate(batches):
        if b >= args.batches:
            break
        x, _ = TR.batch_features(fs, normal, abnormal, gen, torch.device("cpu"))
        tr = truth[torch.tensor(abnormal)]                                  # (b, T)
        n = len(normal)
        with torch.no_grad():
            out = model(x)
        inputs = {"input (standardised)": (x - model.feature_mean) / model.feature_std, "fc": out["fc"],
                  "gcn1": out["gcn1"]}
        for layer, h in inputs.items():
            for r in (int(v) for v in args.subspaces.split(",")):
                assign = cluster_abnormal(h, n, r, b, cfg.kmeans_iters)      # (b, T)
                key = (layer, min(r, h.shape[-1] // 2))
                rows.setdefault(key, []).append((
                    DG.cluster_purity(assign, tr),
                    DG.precision_recall(pseudo_labels(out["scores"][n:], assign, "minority"), tr)[0],
                    DG.precision_recall(pseudo_labels(out["scores"][n:], assign, "mean"), tr)[0]))
    rate = float(truth[fs.labels == 1].float().mean())
    print(f"{root}: {args.batches} batches of {cfg.batch_size}, T={args.T}, random weights (seed {args.seed}); "
          f"anomaly rate {rate:.3f}, majority share {1 - rate:.3f}")
    print("| clustered | normal subspace removed | purity | minority-rule precision | mean-rule precision |")
    print("|---|---|---|---|---|")
    for (layer, r), vals in rows.items():
        v = np.nanmean(np.array(vals, dtype=float), axis=0)
        print(f"| {layer} | {r} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.3f} |")


if __name__ == "__main__":
    main()
