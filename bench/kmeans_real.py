"""What K=2 k-means finds in *real* features, with and without the normal subspace removed (issue 8).

Uses the 17 UCF-Crime test videos whose public C3D features (32 segments x 4096, Sultani's format) are
in ``../shared/realdata/ucf_crime_c3d`` (10 anomalous, 7 normal, frame-level truth in its ``index.csv``).
The 7 normal videos play the batch's normal half, the 10 anomalous ones its abnormal half. Segments
are clustered as training does (``clustering.clustering_input``: video mean removed, then the
normal videos' leading directions, then L2-normalised), in the standardised input and in the FC
output of an untrained model. Reports cluster purity against the per-segment truth (a segment is
anomalous when most of its frames are), the precision of the smaller cluster (``--pseudo-rule
minority``) and the anomaly rate. No training: this asks whether the clusters carry anomaly
information on real features before any learning.

    python bench/kmeans_real.py [--realdata ../shared/realdata]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from kmeans_at_init import cluster_abnormal  # noqa: E402
from pipeline.model import diagnostics as DG  # noqa: E402
from pipeline.model.clustering import minority_pseudo_labels  # noqa: E402
from pipeline.model.network import AnomalyGCN  # noqa: E402
from realdata import REALDATA, SEGMENTS, load_ucf_c3d_arrays  # noqa: E402


def load(realdata: Path):
    """-> features (N, 32, 4096) with the normal videos first, segment truth (N, 32), n_normal, rows."""
    x, truth, n_normal, rows = load_ucf_c3d_arrays(realdata)
    return torch.from_numpy(x), torch.from_numpy(truth), n_normal, rows


def variance_shares(x: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """One video (T, D), truth (T,): the share of its within-video variance that the anomalous/normal split
    explains (between-group sum of squares / total), and the share of its first principal direction."""
    h = x - x.mean(0)                                                      # (T, D)
    m = truth.bool()
    total = (h ** 2).sum()
    between = m.sum() * (h[m].mean(0) ** 2).sum() + (~m).sum() * (h[~m].mean(0) ** 2).sum()
    sv = torch.linalg.svdvals(h) ** 2
    return float(between / total), float(sv[0] / sv.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realdata", default=str(REALDATA))
    p.add_argument("--subspaces", default="0,4,8,16,32,64,108")
    p.add_argument("--inits", type=int, default=20, help="k-means starts averaged over")
    args = p.parse_args()
    x, truth, n, rows = load(Path(args.realdata))
    tr = truth[n:]
    rate = float(tr.float().mean())
    x = (x - x.mean((0, 1))) / x.std((0, 1)).clamp_min(1e-6)             # standardised over these videos
    torch.manual_seed(0)
    model = AnomalyGCN(in_dim=x.shape[-1]).eval()
    with torch.no_grad():
        fc = model(x)["fc"]
    print(f"{len(rows)} real UCF-Crime test videos (C3D): {n} normal, {len(rows) - n} anomalous; "
          f"anomaly rate of the anomalous videos' segments {rate:.3f}, majority share {1 - rate:.3f}")
    shares = [variance_shares(x[i], truth[i]) for i in range(n, len(rows)) if truth[i].any()]
    print(f"share of an anomalous video's within-video variance (standardised input) explained by its anomaly: "
          f"{min(a for a, _ in shares):.2f}-{max(a for a, _ in shares):.2f}; by its first principal direction: "
          f"{min(b for _, b in shares):.2f}-{max(b for _, b in shares):.2f} ({len(shares)} videos with an anomalous segment)")
    print("| clustered | normal subspace removed | purity | minority-rule precision |")
    print("|---|---|---|---|")
    for name, h in (("input (standardised)", x), ("fc (random weights)", fc)):
        for r in (int(v) for v in args.subspaces.split(",")):
            vals = []
            for s in range(args.inits):
                assign = cluster_abnormal(h, n, r, s)                          # (10, 32)
                vals.append((DG.cluster_purity(assign, tr),
                             DG.precision_recall(minority_pseudo_labels(assign), tr)[0]))
            v = np.nanmean(np.array(vals, dtype=float), axis=0)
            eff = min(r, h.shape[-1] // 2, n * (SEGMENTS - 1) // 2)
            print(f"| {name} | {eff} | {v[0]:.3f} | {v[1]:.3f} |")


if __name__ == "__main__":
    main()
