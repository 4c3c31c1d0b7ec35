"""Real vs generated feature statistics (issue 15): does ``pipeline.synth`` look like real features?

Measures the same statistics on the real feature sets (``bench/realdata.py``: UCSD Ped2 Inception-I3D
clips, 17 UCF-Crime test videos' C3D segments, normal ShanghaiTech and XD-Violence I3D videos) and on
generated data roots, and prints one markdown table: a row per statistic, a column per set. Per-video
statistics are summarised as ``median [q1, q3]`` over the set's videos.

Statistics (``h`` = a video's rows minus the video's mean):

* ``PC1 share`` / ``PC1-5 share``: share of sum ||h||^2 along the video's first (five) principal directions;
  ``PC1-5 overlap``: ``||U_i^T U_j||^2 / 5`` between two videos' first five directions (1: shared, ~5/D: own);
* ``anomaly share``: between-group sum of squares of anomalous vs normal rows / sum ||h||^2 (anomalous
  videos with both kinds of rows);
* ``k-means purity`` / ``majority share``: K=2 k-means (``pipeline.model.clustering.kmeans2``, random starts,
  averaged) on one anomalous video's ``h``; purity equal to the majority share means it found nothing;
* ``cos within`` / ``cos between``: mean cosine between two rows of one video / of different videos,
  raw and after removing the set's mean row (``centred``);
* ``between-video variance``: share of the set's variance around its mean row that the video means hold;
* ``zeros`` / ``near zeros``: share of exact zeros / of values under 5% of the set's mean activation;
* ``mean activation``, ``row RMS`` (||x||/sqrt(D)), ``row norm CV`` (std/mean of a video's row norms),
  ``dim-mean CV`` (std/mean over dimensions of the set's mean row: how peaked the mean profile is);
* ``lag-1 autocorrelation``: mean <h_t, h_t+1> / mean ||h_t||^2;
* ``anomaly fraction`` (frames) of anomalous videos, ``clips`` per video;
* ``distance AUC``: frame-level ROC-AUC of an untrained score, each row's distance to the mean of the
  set's normal reference rows (real UCF C3D: 0.776, ``ucf_crime_c3d/SOURCES.md``).

Without ``--generated`` it generates three small sets into a temporary folder: ``--profile ped2``
(Ped2's lengths), ``--profile ucf`` (compared after pooling to 32 L2-normalised segments, the
C3D release's format) and the original ``--profile old`` generator.

    python bench/real_stats.py [--ped2 data/ped2/features] [--realdata ../shared/realdata]
                               [--generated DIR [--generated DIR ...]] [--segments 32]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import realdata as R  # noqa: E402
from pipeline.synth import features as synth  # noqa: E402
from pipeline.model.clustering import kmeans2, random_init  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NEAR_ZERO = 0.05   # "near zero": below this share of the set's mean activation
# the generated sets made when no --generated is given: (name, make_dataset arguments, segments)
GENERATED = [
    ("gen ped2", dict(profile="ped2", n_train_normal=16, n_train_abnormal=12, n_test_normal=12,
                      n_test_abnormal=12), None),
    ("gen ucf (32 seg)", dict(profile="ucf", n_train_normal=20, n_train_abnormal=4, n_test_normal=25,
                              n_test_abnormal=25), R.SEGMENTS),
    ("gen old", dict(n_train_normal=16, n_train_abnormal=12, n_test_normal=12, n_test_abnormal=12), None),
]


# --------------------------------------------------------------------------------------------
# per-video statistics
# --------------------------------------------------------------------------------------------
def pc_shares(x: np.ndarray, k: int = 5) -> tuple[float, float]:
    """(n, D) -> share of the mean-removed sum of squares along the first and the first k principal directions."""
    h = x - x.mean(0)
    s = np.linalg.svd(h, compute_uv=False) ** 2
    return float(s[0] / s.sum()), float(s[:k].sum() / s.sum())


def subspace_overlap(xs: list[np.ndarray], k: int = 5) -> list[float]:
    """Per video: mean overlap ``||U_i^T U_j||_F^2 / k`` of its first k principal directions with those of
    each other video (1: the same subspace; about k/D: unrelated)."""
    bases = [np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:k] for x in xs if len(x) > k]   # (k, D) each
    return [float(np.mean([np.sum((a @ b.T) ** 2) / k for j, b in enumerate(bases) if j != i]))
            for i, a in enumerate(bases)] if len(bases) > 1 else []


def anomaly_share(x: np.ndarray, y: np.ndarray) -> float:
    """Between-group (anomalous vs normal rows) sum of squares / total, both around the video's mean."""
    h = x - x.mean(0)
    m = y.astype(bool)
    between = m.sum() * (h[m].mean(0) ** 2).sum() + (~m).sum() * (h[~m].mean(0) ** 2).sum()
    return float(between / (h ** 2).sum())


def lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation of the mean-removed rows: mean <h_t, h_t+1> / mean ||h_t||^2."""
    h = x - x.mean(0)
    return float((h[:-1] * h[1:]).sum(1).mean() / (h ** 2).sum(1).mean())


def kmeans_purity(x: np.ndarray, y: np.ndarray, starts: int = 10) -> float:
    """Purity of K=2 k-means on the mean-removed rows against y, averaged over random starts."""
    pts = torch.from_numpy(x - x.mean(0)).float()
    out = []
    for s in range(starts):
        a, _ = kmeans2(pts, random_init(pts, torch.Generator().manual_seed(s)), 20)
        a = a.numpy()
        out.append(sum(max(int(y[a == k].sum()), int((a == k).sum() - y[a == k].sum())) for k in (0, 1)) / len(y))
    return float(np.mean(out))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosines(videos: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per video: mean cosine between two of its rows, and between its rows and other videos' rows."""
    u = [_unit(x) for x in videos]
    allu = np.concatenate(u)
    tot = allu.sum(0)
    within, between = [], []
    for ui in u:
        n = len(ui)
        s = ui.sum(0)
        same = float(s @ s - n)                                   # sum over ordered pairs i != j
        within.append(same / max(1, n * (n - 1)))
        between.append(float(s @ (tot - s)) / (n * (len(allu) - n)) if len(allu) > n else np.nan)
    return within, between


# --------------------------------------------------------------------------------------------
# one set
# --------------------------------------------------------------------------------------------
def measure(fs: R.FeatureSet) -> dict[str, object]:
    """All statistics of one set: name -> list of per-video values, or one float for set-level ones."""
    vids = fs.videos
    xs = [v.x for v in vids]
    allx = np.concatenate(xs)
    mu = allx.mean(0)
    st: dict[str, object] = {}
    pcs = [pc_shares(x) for x in xs if len(x) > 2]
    st["PC1 share"] = [a for a, _ in pcs]
    st["PC1-5 share"] = [b for _, b in pcs]
    st["PC1-5 overlap between videos"] = subspace_overlap(xs)
    mixed = [v for v in vids if v.truth is not None and 0 < v.truth.mean() < 1]
    st["anomaly share"] = [anomaly_share(v.x, v.truth) for v in mixed]
    st["k-means purity"] = [kmeans_purity(v.x, v.truth) for v in mixed]
    st["majority share"] = [max(v.truth.mean(), 1 - v.truth.mean()) for v in mixed]
    st["k-means purity - majority"] = [a - b for a, b in zip(st["k-means purity"], st["majority share"])]
    st["cos within"], st["cos between"] = cosines(xs)
    st["cos within (centred)"], st["cos between (centred)"] = cosines([x - mu for x in xs])
    within = sum(((x - x.mean(0)) ** 2).sum() for x in xs)
    st["between-video variance"] = float(1 - within / ((allx - mu) ** 2).sum())
    act = float(allx.mean())
    st["zeros"] = [float((x == 0).mean()) for x in xs]
    st["near zeros"] = [float((x < NEAR_ZERO * act).mean()) for x in xs]
    st["mean activation"] = [float(x.mean()) for x in xs]
    norms = [np.linalg.norm(x, axis=1) for x in xs]
    st["row RMS"] = [float(n.mean() / np.sqrt(allx.shape[1])) for n in norms]
    st["row norm CV"] = [float(n.std() / n.mean()) for n in norms]
    st["dim-mean CV"] = float(mu.std() / mu.mean())
    st["lag-1 autocorrelation"] = [lag1(x) for x in xs if len(x) > 2]
    st["anomaly fraction"] = [float(v.frames.mean()) for v in vids if v.label and v.frames is not None]
    st["clips"] = [v.n_clips for v in vids]
    st["videos (anomalous)"] = f"{len(vids)} ({sum(v.label for v in vids)})"
    st["dim"] = str(allx.shape[1])
    st["distance AUC"] = distance_auc(fs)
    return st


def distance_auc(fs: R.FeatureSet) -> float:
    """Frame-level ROC-AUC of each row's distance to the mean normal reference row, over the scored videos."""
    test = [v for v in fs.videos if v.test and v.frames is not None]
    if fs.reference is None or not test or not any(v.frames.any() for v in test):
        return float("nan")
    mu = fs.reference.mean(0)
    scores = np.concatenate([np.linalg.norm(v.x - mu, axis=1)[v.frame_row] for v in test])
    return float(roc_auc_score(np.concatenate([v.frames for v in test]), scores))


def fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)):
        return "-" if np.isnan(v) else f"{v:.3f}"
    v = np.asarray(v, dtype=float)
    if not len(v):
        return "-"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    if np.all(v == np.round(v)) and med >= 10:
        return f"{med:.0f} [{q1:.0f}, {q3:.0f}]"
    return f"{med:.3f} [{q1:.3f}, {q3:.3f}]"


def table(stats: dict[str, dict]) -> str:
    names = list(stats)
    keys = list(next(iter(stats.values())))
    lines = ["| statistic | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(fmt(stats[n][k]) for n in names) + " |")
    return "\n".join(lines)


def generate(tmp: Path, seed: int) -> list[tuple[str, Path, int | None]]:
    out = []
    for name, kw, seg in GENERATED:
        root = tmp / name.split()[1]
        synth.make_dataset(root, "ucf", seed=seed, **kw)
        out.append((name, root, seg))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realdata", type=Path, default=R.REALDATA, help="the shared real-data folder")
    p.add_argument("--ped2", type=Path, default=REPO / "data" / "ped2" / "features",
                   help="UCSD Ped2 clip features <video>.npy (clips, 1024); skipped when absent "
                        "(default data/ped2/features)")
    p.add_argument("--generated", type=Path, action="append", default=[],
                   help="a pipeline.synth data root to measure (repeatable); default: generate ped2, ucf "
                        "and old sets in a temporary folder")
    p.add_argument("--segments", type=int, default=0,
                   help="pool --generated sets to this many L2-normalised segments (32: like the C3D release)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sets")
    a = p.parse_args(argv)
    sets: list[R.FeatureSet] = []
    if a.ped2.is_dir() and (ped2 := R.load_ped2(a.ped2, a.realdata)) is not None:
        sets.append(ped2)
    else:
        print(f"note: no Ped2 features in {a.ped2}; Ped2 column skipped", file=sys.stderr)
    if (a.realdata / "index.csv").is_file():
        sets += [R.load_ucf_c3d(a.realdata), R.load_sht(a.realdata), R.load_xd(a.realdata)]
    else:
        print(f"note: no {a.realdata / 'index.csv'}; real UCF/SHT/XD columns skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        gen = ([(f"{d.name}", d, a.segments or None) for d in a.generated] if a.generated
               else generate(Path(tmp), a.seed))
        sets += [R.load_generated(root, seg, name) for name, root, seg in gen]
        stats = {}
        for fs in sets:
            print(f"{fs.name}: {fs.note}", file=sys.stderr)
            stats[fs.name] = measure(fs)
    print(table(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
