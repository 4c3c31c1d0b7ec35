"""Stage 2: training the clustering-guided GCN on video-level labels (the loop behind
``python -m pipeline.train``): the training set and its cache, balanced batches, the clustering step,
validation, checkpoints and resuming. :class:`TrainConfig` holds every setting; :func:`train` runs one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.model import data as D
from pipeline.common.cli import progress
from pipeline.model import diagnostics as DG
from pipeline.model.clustering import (CROSS_BATCH_WAYS, PSEUDO_LABELS, PSEUDO_RULES, CrossBatchMemory,
                                       clustering_input, far_pseudo_labels, kmeans2, novelty, pseudo_labels,
                                       random_pseudo_labels)
from pipeline.common.io import atomic_torch_save, atomic_write, atomic_write_json, atomic_write_text
from pipeline.model.losses import (batch_clustering_loss, centre_distance, kmax_k, kmax_loss,
                                   kmax_loss_logits, sparsity_loss, total_loss)
from pipeline.common.metrics import video_level_auc
from pipeline.model.network import CENTRES, GRAPH_FEATURES, PROXIMITIES, SIMILARITIES, VIEWS, AnomalyGCN, build_model
from pipeline.features.video import coverage_of

DEFAULT_T = {"ucf": 150, "sht": 100, "xd": 200}
CLUSTER_LAYERS = ("fc", "gcn1", "gcn2")
CLUSTER_CENTERS = ("video", "none")
#: --paper-literal: the paper's (and HL-Net's) literal forms where ours differ (README, "How the
#: paper's equations act here").
PAPER_LITERAL = dict(similarity="hlnet", graph_features="input", proximity="plain", cluster_center="none",
                     pseudo_rule="cosine", normal_subspace=0, cluster_layer="gcn1", bcg_gate=0.0,
                     adjacency="sum", residual=False, standardize=False, bc=True, bcg=True,
                     video_centre=False, smooth=1)

#: What --paper-literal cannot take from the paper, because the paper does not say (README).
LITERAL_KEEPS = ("the two graphs summed with equal weights (the paper builds 'a global graph' from both and "
                 "gives no rule), HL-Net's threshold 0.7, the optimiser settings (Adam, --lr, --weight-decay, "
                 "--dropout, --epochs), mu, lambda1 and the k-means iterations")


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults marked (ours) are not given by the paper."""
    dataset: str = "ucf"
    data_root: str | None = None       # default data/<dataset>
    out: str | None = None             # default runs/<dataset>
    train_list: str | None = None      # default: found in data_root (data.SPLIT_CANDIDATES)
    features: str | None = None        # default: data_root/features if present, else data_root
    feature_dim: int | None = None     # None: the first training file's width. I3D ResNet-50: 2048,
                                       # Inception-I3D (XD's official RGB): 1024, C3D fc6: 4096
    epochs: int = 50                   # (ours) checked on Ped2's TEVAD split (20 worse, 100 no better)
    seed: int = 0
    device: str = "auto"
    T: int | None = None               # segments per training video; paper: UCF 150, SHT 100
    batch_size: int = 64               # paper: 32 normal + 32 abnormal
    lr: float = 3e-4                   # (ours) Adam; checked on Ped2's TEVAD split (README "Choices", issue 15)
    weight_decay: float = 5e-4         # (ours)
    dropout: float = 0.6               # (ours)
    lambda1: float = 0.01              # (ours, by experiment: bench/RESULTS.md) weight of L_bc, eq. 3
    mu: float = 1.0                    # (ours) upper bound of the normal-cluster distance, eq. 1
    alpha: float = 1.3                 # paper: expansion factor, eq. 5
    cluster_layer: str = "fc"          # (ours) the FC output, before dropout; paper: GCN-1 (Table 3)
    cross_batch: str = "1"             # paper: way 1 (Table 4); "none" for no memory
    bc: bool = False                   # (ours, by measurement on real data) batch clustering loss (Table 2):
                                       # off by default, see README "Choices"; --bc turns it on
    bcg: bool = False                  # (ours, by experiment on real data) clustering-guided scores (Table 2):
                                       # off by default, see README "Choices"; --bcg turns them on
    bcg_gate: float = 0.0              # eq. 5 only in batches with d_abnormal >= bcg_gate * d_normal (0: always)
    kmeans_iters: int = 10             # (ours)
    adjacency: str = "proximity"       # (ours, by experiment on real data) the temporal-proximity graph alone;
                                       # "learned"/"sum" combine it with the similarity graph, see model.py
    residual: bool = True              # (ours, HL-Net's layer) a linear residual of H in each graph layer
    similarity: str = "hlnet"          # HL-Net's literal graph (real data, README "Choices"); "centred": masked,
                                       # video mean removed, see model.py
    graph_features: str = "input"      # HL-Net: the standardised input features; "fc": the FC output before dropout
    proximity: str = "gated"           # (ours, issue 22, Ped2 TEVAD) exp(-|i-j|/e) cut where centred cosines
                                       # disagree, an edge-preserving smoother; "plain": the paper's kernel
    cluster_center: str = "video"      # (ours) remove each video's mean before k-means ("none": literal)
    normal_subspace: int = 64          # (ours) leading directions of normal videos' variation removed before k-means
    pseudo_rule: str = "far"           # (ours) the cluster farther from the normal videos; "minority": the
                                       # smaller; "mean": higher mean score; "cosine": eq. 4 as printed
    pseudo_labels: str = "cluster"     # control: "ones" (every abnormal segment boosted), "random"
    views: str = "auto"                # (ours) the crop axis: "max" = spatial MIL over the regions of
                                       # --coverage grid features, "sample" = RTFM's random crop; auto: by
                                       # the features' extractor record (README "Choices", issue 22)
    sparsity: float = 0.0              # (ours) weight of the mean score of abnormal videos (Sultani's sparsity)
    video_centre: bool = True          # (ours, Ped2 TEVAD split) each segment beside its deviation from
                                       # its video's reference state, model.video_centred_input (issue 22)
    centre: str = "normal"             # (ours, issue 22) the reference: "normal" = the mean of the
                                       # --normal-share of the video's segments nearest the training
                                       # normals' mean (model.normal_reference); "median": the video's median
    normal_share: float = 0.1          # (ours, issue 22, chosen on TEVAD: 0.1 > 0.25 > 0.5)
    smooth: int = 3                    # (ours, issue 22) test-time mean of each clip's score with its
                                       # neighbours, this many clips (model.moving_mean); 1 = off
    standardize: bool = True           # (ours) z-score inputs with training statistics (Ped2: +0.08 AUC, issue 15)
    cache: bool = True                 # keep the resampled training set in <data_root>/.pipeline_cache
    val_fraction: float = 0.0          # held-out share of training videos for model selection
    keep_epochs: bool = False          # keep every epoch's model in epochs/ (for studies)
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False

    def resolved(self) -> "TrainConfig":
        """Fill the defaults that depend on the dataset."""
        c = TrainConfig(**asdict(self))
        if c.dataset not in D.DATASETS:
            raise ValueError(f"--dataset must be one of {D.DATASETS}, got {c.dataset!r}")
        c.data_root = c.data_root or f"data/{c.dataset}"
        c.out = c.out or f"runs/{c.dataset}"
        c.T = DEFAULT_T[c.dataset] if c.T is None else c.T
        for name, ok, rule in (("epochs", c.epochs >= 1, "at least 1"), ("T", c.T >= 1, "at least 1"),
                               ("feature_dim", c.feature_dim is None or c.feature_dim >= 1, "at least 1"),
                               ("lr", c.lr > 0 and math.isfinite(c.lr), "a positive number"),
                               ("weight_decay", 0 <= c.weight_decay < math.inf, ">= 0"),
                               ("dropout", 0 <= c.dropout < 1, "in [0, 1)"),
                               ("lambda1", 0 <= c.lambda1 < math.inf, ">= 0"),
                               ("sparsity", 0 <= c.sparsity < math.inf, ">= 0"),
                               ("normal_share", 0 < c.normal_share <= 1, "in (0, 1]"),
                               ("smooth", c.smooth >= 1 and c.smooth % 2 == 1, "an odd number >= 1"),
                               ("mu", 0 < c.mu < math.inf, "a positive number"),
                               ("bcg_gate", 0 <= c.bcg_gate < math.inf, ">= 0 (0: always boost)"),
                               ("alpha", 0 < c.alpha < math.inf, "a positive number (the paper uses 1.0-1.5)"),
                               ("kmeans_iters", c.kmeans_iters >= 1, "at least 1")):
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} must be {rule}, got {getattr(c, name)}")
        if c.centre not in CENTRES:
            raise ValueError(f"--centre must be one of {CENTRES}, got {c.centre!r}")
        if c.cluster_layer not in CLUSTER_LAYERS:
            raise ValueError(f"--cluster-layer must be one of {CLUSTER_LAYERS}")
        if c.normal_subspace < 0:
            raise ValueError(f"--normal-subspace must be >= 0, got {c.normal_subspace}")
        if c.cross_batch not in CROSS_BATCH_WAYS:
            raise ValueError(f"--cross-batch must be one of {CROSS_BATCH_WAYS}")
        for name, value, allowed in (("similarity", c.similarity, SIMILARITIES),
                                     ("graph-features", c.graph_features, GRAPH_FEATURES),
                                     ("proximity", c.proximity, PROXIMITIES),
                                     ("cluster-center", c.cluster_center, CLUSTER_CENTERS),
                                     ("pseudo-rule", c.pseudo_rule, PSEUDO_RULES),
                                     ("pseudo-labels", c.pseudo_labels, PSEUDO_LABELS)):
            if value not in allowed:
                raise ValueError(f"--{name} must be one of {allowed}, got {value!r}")
        if c.views not in ("auto",) + VIEWS:
            raise ValueError(f"--views must be one of {('auto',) + VIEWS}, got {c.views!r}")
        if c.batch_size < 2:
            raise ValueError("--batch-size must be at least 2 (half normal, half abnormal)")
        if not 0.0 <= c.val_fraction < 1.0:
            raise ValueError("--val-fraction must be in [0, 1)")
        return c


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- data

#: Training features are kept in memory as float16 (half the memory: UCF-Crime's 1610 ten-crop
#: videos at T=150 take 9.9 GB instead of 19.8 GB); bench/RESULTS.md measures that scoring
#: float16-rounded instead of float32 features moves clip scores by at most 4e-6 and the AUC not at
#: all. Values beyond float16's range would become inf, so they are refused with the file named.
FLOAT16_MAX = float(np.finfo(np.float16).max)     # 65504


@dataclass
class FeatureSet:
    """Training videos resampled to T segments, kept in memory as float16 (see FLOAT16_MAX)."""
    names: list[str]
    labels: torch.Tensor               # (N,) long
    feats: torch.Tensor                # (N, T, crops, D) float16
    crops: int = field(init=False)

    def __post_init__(self):
        self.crops = self.feats.shape[2]


CACHE_DIR = ".pipeline_cache"
CACHE_VERSION = 1


def training_cache_path(videos: list, T: int, dim: int, cache_dir: Path) -> Path:
    """Where the resampled training set of ``videos`` is cached: the name holds a hash of the
    videos (name, label, every feature file's absolute path, size and mtime), T, the feature width
    and the stored dtype, so any change to the list or the files means another cache file."""
    key = {"version": CACHE_VERSION, "T": int(T), "dim": int(dim), "dtype": "float16",
           "videos": [[v.name, int(v.label), [[str(Path(p).resolve()), Path(p).stat().st_size,
                                               Path(p).stat().st_mtime_ns] for p in v.paths]] for v in videos]}
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"train_T{T}_{digest}.cache"   # not *.npy: never taken for a feature file


def _read_cache(path: Path, n: int, T: int, dim: int) -> torch.Tensor | None:
    """The cached (N, T, crops, D) float16 array (``.npy`` content), or None when absent or of another shape."""
    if not path.is_file():
        return None
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if a.dtype != np.float16 or a.ndim != 4 or a.shape[:2] != (n, T) or a.shape[3] != dim:
        return None
    return torch.from_numpy(a)


def load_training_set(videos: list, T: int, dim: int = D.FEATURE_DIM, quiet: bool = False,
                      cache_dir: str | Path | None = None) -> FeatureSet:
    """Load and resample every training video (RTFM's rule, data.resample) -> FeatureSet.

    With ``cache_dir``, the resampled set is read from / written to an atomic ``.npy``-format file
    there (see :func:`training_cache_path`); a folder that cannot be written only costs the speed-up.
    """
    if not videos:
        raise D.DataError("the training list holds no videos")
    labels = torch.tensor([v.label for v in videos], dtype=torch.long)
    cache = training_cache_path(videos, T, dim, cache_dir) if cache_dir is not None else None
    if cache is not None:
        feats = _read_cache(cache, len(videos), T, dim)
        if feats is not None:
            if not quiet:
                print(f"training set: {len(videos)} videos resampled to T={T}, from the cache {cache}")
            return FeatureSet([v.name for v in videos], labels, feats)
    arrays, crops = [], None
    for v in progress(videos, quiet, desc="loading features", unit="video"):
        f = D.load_features(v.paths, dim=dim)                            # (clips, crops, D)
        if crops is None:
            crops = f.shape[1]
        elif f.shape[1] != crops:
            raise D.DataError(f"{v.paths[0]}: {f.shape[1]} crops, but earlier videos have {crops}")
        r = D.resample(f, T)                                             # (T, crops, D) float32
        peak = float(np.abs(r).max())
        if peak > FLOAT16_MAX:
            raise D.DataError(f"{v.paths[0]}: feature values up to {peak:.4g} exceed float16's range "
                              f"(+-{FLOAT16_MAX:.0f}), in which training keeps its features; rescale them")
        arrays.append(torch.from_numpy(r.astype(np.float16)))            # (T, crops, D)
    feats = torch.stack(arrays)                                          # (N, T, crops, D) float16
    if cache is not None:
        try:
            atomic_write(cache, lambda f: np.save(f, feats.numpy()))
        except OSError as e:
            print(f"warning: cannot write the training-set cache {cache} ({e.strerror or e}); "
                  f"going on without it (--no-cache to skip)", file=sys.stderr)
    return FeatureSet([v.name for v in videos], labels, feats)


def extractor_meta(videos: list, top: Path | None = None) -> dict | None:
    """The extraction settings of the training features, from the ``manifest.jsonl`` that
    ``extract`` wrote for them: in the file's folder or a folder above it up to ``top`` (the
    features root), its row keyed by the file's path below that folder (``Explosion/x``).

    Written by ``pipeline.extract``; detect and watch use it to extract new videos the same way.
    Every recorded key is carried (``featstore.extraction_record``), so a new extractor setting
    needs no change here. Returns None when no manifest describes the features (e.g. RTFM's public
    files). Two training files extracted differently are refused, naming both.
    """
    from pipeline.features.featstore import extraction_record, find_record, record_diff

    cache: dict = {}
    found, unknown, partial = [], [], []
    for v in videos:
        hit = find_record(v.paths[0], top, cache, v.name)
        if hit is None and v.paths[0].is_symlink():      # a data root of links: the linked file's manifest
            hit = find_record(v.paths[0].resolve(), None, cache, v.name)
        if hit is None:
            unknown.append(v.paths[0])
        else:
            found.append((v.paths[0], hit[0], extraction_record(hit[1])))
            if hit[1].get("status") == "partial":
                partial.append(f"{v.paths[0]} ({hit[1].get('error') or 'decoded in part'})")
    if partial:      # features of the frames that decoded: usable, but not the whole video
        print(f"warning: {len(partial)} training feature file(s) cover only part of their video (manifest status "
              f"partial): {'; '.join(partial[:3])}{' ...' if len(partial) > 3 else ''}", file=sys.stderr)
    if not found:
        return None
    first_path, first_manifest, first = found[0]
    for path, manifest, rec in found[1:]:
        diff = record_diff(first, rec)
        if diff:
            raise D.DataError(f"{first_path} (in {first_manifest}) and {path} (in {manifest}) were extracted "
                              f"with different settings ("
                              + "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
                              + "): their features do not mean the same; extract them again with the "
                                "same settings, or train on one kind")
    if unknown:
        print(f"warning: {len(unknown)} of {len(videos)} training feature files have no extraction record "
              f"(no manifest.jsonl row for them at or above their folder, e.g. {unknown[0]}); the checkpoint "
              f"records the settings of the other {len(found)}", file=sys.stderr)
    meta = dict(first)
    meta["videos_described"] = len(found)
    return meta


def resolve_views(views: str, extractor: dict | None) -> str:
    """--views auto: "max" (spatial MIL) for features of regions (``--coverage grid``), else "sample"."""
    if views != "auto":
        return views
    return "max" if extractor is not None and coverage_of(extractor) == "grid" else "sample"


def load_segment_truth(root: Path, names: list[str], T: int) -> torch.Tensor | None:
    """Per-segment anomaly truth (N, T) uint8 of the training videos, resampled like their features,
    when the data root has per-clip truth (``clip_truth.npz``, or a generated root's
    ``synth_truth.npz``: ``diagnostics.TRUTH_FILES``) for all of them; else None. Only for measuring."""
    path = DG.find_clip_truth(root)
    if path is None:
        return None
    truth = DG.load_clip_truth(path)
    if not all(n in truth for n in names):
        return None
    return torch.from_numpy(np.stack([DG.segment_truth(truth[n]["clip_labels"], T) for n in names]))


def split_validation(labels: torch.Tensor, fraction: float, generator: torch.Generator):
    """Stratified hold-out: ``round(fraction * n)`` videos of each label (at least one when fraction > 0)."""
    train, val = [], []
    for lab in (0, 1):
        idx = torch.nonzero(labels == lab).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if fraction > 0 else 0
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)


class BalancedBatches:
    """Each batch: ``half`` normal and ``half`` abnormal videos, each kind reshuffled when exhausted.

    An epoch has ``ceil(max(n_normal, n_abnormal) / half)`` batches, so every video of the larger
    kind is seen once per epoch.
    """

    def __init__(self, labels: torch.Tensor, indices: list[int], batch_size: int, generator: torch.Generator):
        self.pools = {k: [i for i in indices if int(labels[i]) == k] for k in (0, 1)}
        for k, name in ((0, "normal"), (1, "abnormal")):
            if not self.pools[k]:
                raise D.DataError(f"the training set has no {name} videos; both kinds are needed")
        self.half = min(batch_size // 2, max(len(p) for p in self.pools.values()))
        self.gen = generator
        self.queues = {0: [], 1: []}

    def __len__(self) -> int:
        return math.ceil(max(len(p) for p in self.pools.values()) / self.half)

    def _take(self, k: int, n: int) -> list[int]:
        out = []
        while len(out) < n:
            if not self.queues[k]:
                pool = self.pools[k]
                self.queues[k] = [pool[i] for i in torch.randperm(len(pool), generator=self.gen).tolist()]
            out.append(self.queues[k].pop())
        return out

    def __iter__(self):
        self.queues = {0: [], 1: []}   # every epoch reshuffles, so a resumed run draws the same batches
        for _ in range(len(self)):
            yield self._take(0, self.half), self._take(1, self.half)


def batch_features(fs: FeatureSet, normal: list[int], abnormal: list[int], generator: torch.Generator,
                   device: torch.device, views: str = "sample") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch -> x, y (B,). ``views`` "sample": one random crop per video, x (B, T, D) float32;
    "max": every view, x (B, V, T, D) (regions of the frame, scored by ``AnomalyGCN.forward_views``)."""
    idx = torch.tensor(normal + abnormal)
    if views == "max":
        x = fs.feats[idx].permute(0, 2, 1, 3).float()   # (B, V, T, D)
        return x.to(device), fs.labels[idx].to(device)
    crop = torch.randint(fs.crops, (len(idx),), generator=generator)
    x = fs.feats[idx, :, crop].float()              # (B, T, D)
    return x.to(device), fs.labels[idx].to(device)


def rng_state(device: torch.device) -> dict:
    """The global RNG states a resumed run must restore (CPU, and CUDA when training there)."""
    state = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


# ----------------------------------------------------------------------------- one step

def clustering_step(z: torch.Tensor, n_normal: int, memories: dict, cfg: TrainConfig,
                    generator: torch.Generator) -> dict:
    """Batch k-means (Sec. 2.2) of the normal and the abnormal videos' segments, separately.

    z: (B, T, D') clustering input (``clustering.clustering_input``), normal videos first. Returns
    the centres, the abnormal videos' cluster labels (n_abnormal, T) and the loss terms of eq. 1.
    """
    B, T, Dz = z.shape
    result = {}
    for kind, part in (("normal", z[:n_normal]), ("abnormal", z[n_normal:])):
        pts = part.reshape(-1, Dz)                                          # (b * T, D')
        mem = memories[kind]
        assign, centres = kmeans2(pts, mem.init_for(pts, generator), cfg.kmeans_iters, mem.extra_points(pts))
        mem.store(centres)
        result[f"bc_{kind}"] = batch_clustering_loss(centres, kind == "normal", cfg.mu)
        result[f"d_{kind}"] = centre_distance(centres).detach()
        result[f"assign_{kind}"] = assign.reshape(-1, T)                    # (b, T)
        result[f"centres_{kind}"] = centres
    return result


def guided_boost(scores: torch.Tensor, assign: torch.Tensor, cfg: TrainConfig,
                 generator: torch.Generator, nov: torch.Tensor | None = None) -> torch.Tensor:
    """Pseudo-labels of the abnormal videos' segments (eq. 4, or a control) -> (b, T) float in {0, 1}.

    scores: (b, T) the abnormal videos' scores; assign: (b, T) their k-means cluster labels.
    ``--pseudo-labels ones`` boosts every segment (eq. 5's clamp alone); ``random`` draws labels at the
    rate the clustering gave in this batch, so only the clustering's information differs.
    """
    if cfg.pseudo_labels == "ones":
        return torch.ones_like(scores, dtype=torch.float)
    if cfg.pseudo_rule == "far":
        pseudo = far_pseudo_labels(assign, nov)                                # (b, T), one decision per batch
    else:
        pseudo = pseudo_labels(scores, assign, cfg.pseudo_rule)                # (b, T), one decision per video
    if cfg.pseudo_labels == "random":
        return random_pseudo_labels(pseudo.shape, float(pseudo.mean()), generator).to(pseudo)
    return pseudo


def clusters_found_anomalies(d_normal: torch.Tensor, d_abnormal: torch.Tensor, gate: float) -> bool:
    """``--bcg-gate``: eq. 5 acts on a batch only when ``d_abnormal >= gate * d_normal``.

    The distances are those of eq. 1 between the two k-means centres of the batch's abnormal and of
    its normal videos' segments (same space, same normalisation). A split of the abnormal videos no
    wider than the normal videos' own says the clusters hold nothing the normal videos lack, and
    their pseudo-labels would be guesses. gate = 0 always boosts (the paper).
    """
    return gate <= 0 or float(d_abnormal) >= gate * float(d_normal)


def training_step(model, x, y, n_normal: int, memories: dict, cfg: TrainConfig,
                  generator: torch.Generator, truth: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Forward one balanced batch and return the total loss (eq. 3) and its parts for the log.

    x: (B, T, D), or (B, V, T, D) for every view (``--views max``), with the n_normal normal videos
    first; y: (B,). truth: (B, T) per-segment anomaly truth when the data root has it
    (``load_segment_truth``): only measured (``diagnostics``), never trained on.
    """
    out = model(x) if x.dim() == 3 else model.forward_views(x)
    parts, boost = {}, None
    l_bc = torch.zeros((), device=x.device)
    if cfg.bc or cfg.bcg:
        z = clustering_input(out[cfg.cluster_layer], cfg.cluster_center == "video",      # (B, T, D')
                             cfg.normal_subspace, n_normal)
        cl = clustering_step(z, n_normal, memories, cfg, generator)
        parts.update(d_normal=cl["d_normal"].item(), d_abnormal=cl["d_abnormal"].item(),
                     single_cluster=DG.single_cluster_share(cl["assign_abnormal"]))
        if cfg.bc:
            l_bc = cl["bc_normal"] + cl["bc_abnormal"]
            parts.update(bc_normal=cl["bc_normal"].item(), bc_abnormal=cl["bc_abnormal"].item())
        pseudo = None
        if cfg.bcg:
            nov = novelty(out[cfg.cluster_layer], n_normal)[n_normal:] if cfg.pseudo_rule == "far" else None
            pseudo = guided_boost(out["scores"][n_normal:], cl["assign_abnormal"], cfg, generator, nov)   # (b, T)
            guided = clusters_found_anomalies(cl["d_normal"], cl["d_abnormal"], cfg.bcg_gate)
            boost = torch.zeros_like(out["scores"], dtype=torch.bool)       # (B, T): eq. 5's condition
            boost[n_normal:] = (pseudo > 0.5) & guided
            parts.update(boosted=pseudo.mean().item() if guided else 0.0, guided=float(guided))
        if truth is not None:
            parts.update(DG.mechanism_metrics(cl["assign_abnormal"], pseudo, out["scores"][n_normal:].detach(),
                                              truth[n_normal:]))
    l_kmax = kmax_loss_logits(out["logits"], y, boost, cfg.alpha)         # eq. 2 on eq. 5's scores
    loss = total_loss(l_kmax, l_bc, cfg.lambda1)
    if cfg.sparsity > 0:                                                    # (ours) Sultani's sparsity
        l_sp = sparsity_loss(out["scores"][n_normal:])
        loss = loss + cfg.sparsity * l_sp
        parts.update(sparsity=l_sp.item())
    parts.update(loss=loss.item(), kmax=l_kmax.item(), bc=l_bc.item())
    return loss, parts


def feature_statistics(arrays) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over all rows of ``arrays`` (each (..., D)), one array at a time.

    The std is floored at 1% of its mean over dimensions, so a dimension that is (almost) constant in
    training cannot blow up at test time. -> mean (D,), std (D,) float64.
    """
    total = squares = None
    n = 0
    for a in arrays:
        x = torch.as_tensor(a).double().reshape(-1, a.shape[-1])                # (rows, D)
        total = x.sum(0) if total is None else total + x.sum(0)
        squares = (x * x).sum(0) if squares is None else squares + (x * x).sum(0)
        n += x.shape[0]
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    return mean, std.clamp_min(1e-2 * float(std.mean()) + 1e-12)


def standardize_inputs(model: AnomalyGCN, fs: FeatureSet, indices: list[int]) -> None:
    """``--standardize``: the training segments' statistics into the model's input buffers."""
    mean, std = feature_statistics(fs.feats[i] for i in indices)                # (D,), (D,)
    model.feature_mean.copy_(mean)
    model.feature_std.copy_(std)


def set_normal_statistics(model: AnomalyGCN, fs: FeatureSet, indices: list[int]) -> None:
    """``--centre normal``: the training normal videos' per-dimension mean and std (after the input
    standardisation) into the model's buffers, the z-space of ``network.normal_reference``."""
    normal = [i for i in indices if int(fs.labels[i]) == 0]
    if not normal:
        raise ValueError("--centre normal needs normal training videos; none in the training split")
    mean, std = feature_statistics(model.standardize(fs.feats[i].float()) for i in normal)   # (D,), (D,)
    model.normal_mean.copy_(mean)
    model.normal_std.copy_(std)


@torch.no_grad()
def validate(model, fs: FeatureSet, indices: list[int], device: torch.device) -> dict:
    """Video-level criterion on held-out training videos: AUC of the mean of each video's
    top-k segment scores (k of eq. 2) against its label; also their k-max loss."""
    model.eval()
    video_scores, losses = [], []
    for i in indices:
        x = fs.feats[i].permute(1, 0, 2).float().to(device)                # (crops, T, D)
        s = model.clip_scores(x)[None]                                      # (1, T)
        k = kmax_k(s.shape[1])
        video_scores.append(float(torch.topk(s, k, dim=1).values.mean()))
        losses.append(float(kmax_loss(s, fs.labels[i:i + 1].to(device))))
    model.train()
    labels = fs.labels[indices].numpy()
    return {"val_auc": video_level_auc(np.array(video_scores), labels), "val_kmax": float(np.mean(losses))}


#: Fewer held-out videos of a kind than this make best.pt a coin toss: warned about.
MIN_VALIDATION_PER_CLASS = 5


def warn_small_validation(labels: torch.Tensor, val_idx: list[int]) -> None:
    """A warning on stderr when --val-fraction leaves fewer than MIN_VALIDATION_PER_CLASS videos of a kind."""
    if not val_idx:
        return
    counts = [int((labels[val_idx] == k).sum()) for k in (0, 1)]
    if min(counts) < MIN_VALIDATION_PER_CLASS:
        print(f"warning: --val-fraction holds out only {counts[0]} normal and {counts[1]} abnormal video(s); "
              f"best.pt is chosen on so few that it is mostly chance (raise --val-fraction, or use model.pt)",
              file=sys.stderr)


def better(new: dict, best: dict | None) -> bool:
    """Model selection: higher validation video-level AUC, then lower validation k-max loss."""
    if best is None:
        return True
    key = lambda m: (m["val_auc"] if m["val_auc"] is not None else -1.0, -m["val_kmax"])
    return key(new) > key(best)


# ----------------------------------------------------------------------------- run

def model_from_config(cfg: TrainConfig, in_dim: int) -> AnomalyGCN:
    return build_model(asdict(cfg), in_dim)


def model_checkpoint(model, cfg: TrainConfig, epoch: int, in_dim: int, extractor: dict | None,
                     extra: dict | None = None) -> dict:
    """What evaluate/detect need: weights, the run's settings, the feature width and how the
    features were extracted (None when unknown)."""
    return {"model": model.state_dict(), "config": asdict(cfg), "epoch": epoch, "in_dim": in_dim,
            "extractor": extractor, **(extra or {})}


def prepare_run_dir(cfg: TrainConfig) -> Path:
    """Check the run directory before any work; it is created only when the first file is written,
    so a run that fails on its input leaves nothing behind."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: --out is a file, not a folder")
    if out.exists() and any(out.glob("*.pt")) and not (cfg.resume or cfg.overwrite):
        raise FileExistsError(f"{out} already holds a training run; pass --resume to continue it, "
                              f"--overwrite to start again, or choose another --out")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{out}: cannot write here ({existing} is not writable)")
    return out


def read_resume_state(path: Path) -> dict:
    """``last.pt`` for --resume, checked before any data is loaded; one line naming the file if unusable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign files get the same clear message
        raise ValueError(f"{path}: cannot resume from this file ({e.__class__.__name__}: {e}); delete it to "
                         f"start from scratch, or pass --overwrite") from e
    needed = ("model", "optimizer", "memory", "generator", "kmeans_generator", "torch_rng", "epoch", "best")
    missing = [k for k in needed if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path}: not a training state of pipeline.train (missing {', '.join(missing)}); "
                         f"delete it to start from scratch, or pass --overwrite")
    return state


def resume_training(state: dict, last: Path, out: Path, model, opt, memories: dict, gen: torch.Generator,
                    kgen: torch.Generator, device: torch.device, quiet: bool):
    """Load a run's ``last.pt`` state into the model, optimiser, memories and generators; returns
    (first epoch to run, best so far, the log lines up to the saved epoch)."""
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for k in memories:
            memories[k].load_state_dict(state["memory"][k])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"{last}: this training state does not fit the run's settings "
                         f"({e.__class__.__name__}: {' '.join(str(e).split())[:200]}); "
                         f"delete it to start from scratch, or pass --overwrite") from e
    gen.set_state(state["generator"])
    kgen.set_state(state["kmeans_generator"])
    set_rng_state(state, device)
    log = out / "log.jsonl"
    log_lines = [line for line in log.read_text().splitlines()
                 if line.strip() and json.loads(line)["epoch"] <= state["epoch"]] if log.exists() else []
    if not quiet:
        print(f"resuming {out} after epoch {state['epoch']}")
    return state["epoch"] + 1, state["best"], log_lines


def run_epoch(model, opt, batches: BalancedBatches, fs: FeatureSet, memories: dict, cfg: TrainConfig,
              gen: torch.Generator, kgen: torch.Generator, device: torch.device,
              seg_truth: torch.Tensor | None, epoch: int) -> dict:
    """One pass over the balanced batches; returns the epoch's log row (mean of each loss part)."""
    t0, sums, counts = time.time(), {}, {}
    bar = progress(batches, cfg.quiet, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False)
    for normal, abnormal in bar:
        x, y = batch_features(fs, normal, abnormal, gen, device, cfg.views)
        truth = seg_truth[torch.tensor(normal + abnormal)] if seg_truth is not None else None
        loss, parts = training_step(model, x, y, len(normal), memories, cfg, kgen, truth)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch}: loss is {float(loss)}; lower --lr or check the features")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        bar.set_postfix(loss=f"{parts['loss']:.4f}")
    for m in memories.values():
        m.end_epoch()
    return {"epoch": epoch, **{k: v / counts[k] for k, v in sums.items()}, "seconds": round(time.time() - t0, 3)}


def save_epoch(out: Path, row: dict, model, opt, memories: dict, cfg: TrainConfig, in_dim: int,
               extractor: dict | None, gen: torch.Generator, kgen: torch.Generator, device: torch.device,
               best: dict | None, log_lines: list[str]) -> None:
    """What an epoch leaves behind: its checkpoint under ``epochs/`` (``--keep-epochs``), the log,
    and ``last.pt`` with everything a resume needs."""
    epoch = row["epoch"]
    if cfg.keep_epochs:
        atomic_torch_save(model_checkpoint(model, cfg, epoch, in_dim, extractor), out / "epochs" / f"epoch_{epoch:04d}.pt")
    log_lines.append(json.dumps(row))
    atomic_write_text(out / "log.jsonl", "\n".join(log_lines) + "\n")
    atomic_torch_save({**model_checkpoint(model, cfg, epoch, in_dim, extractor), "optimizer": opt.state_dict(),
                       "memory": {k: m.state_dict() for k, m in memories.items()},
                       "generator": gen.get_state(), "kmeans_generator": kgen.get_state(),
                       **rng_state(device), "best": best},
                      out / "last.pt")


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the run directory."""
    cfg = cfg.resolved()
    out = prepare_run_dir(cfg)
    last = out / "last.pt"
    resume_state = read_resume_state(last) if cfg.resume and last.exists() else None
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)            # data: validation split, batches, crops
    kgen = torch.Generator().manual_seed(cfg.seed + 10_000)  # k-means starts: ablations keep the same batches

    root = Path(cfg.data_root)
    videos = D.load_split(root, cfg.dataset, "train", list_path=cfg.train_list, features_root=cfg.features)
    if cfg.feature_dim is None:                              # every other file must have the same width
        cfg = replace(cfg, feature_dim=D.feature_width(videos[0].paths))
    fs = load_training_set(videos, cfg.T, cfg.feature_dim, cfg.quiet,
                           cache_dir=Path(cfg.data_root) / CACHE_DIR if cfg.cache else None)
    in_dim = fs.feats.shape[-1]
    extractor = extractor_meta(videos, Path(cfg.features) if cfg.features else
                               (root / "features" if (root / "features").is_dir() else root))
    cfg = replace(cfg, views=resolve_views(cfg.views, extractor))
    train_idx, val_idx = split_validation(fs.labels, cfg.val_fraction, gen)
    warn_small_validation(fs.labels, val_idx)
    batches = BalancedBatches(fs.labels, train_idx, cfg.batch_size, gen)
    seg_truth = load_segment_truth(root, fs.names, cfg.T)       # (N, T) or None: measured, never trained on

    model = model_from_config(cfg, in_dim)
    if cfg.standardize:
        standardize_inputs(model, fs, train_idx)
    if cfg.video_centre and cfg.centre == "normal":
        set_normal_statistics(model, fs, train_idx)
    model = model.to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                           lr=cfg.lr, weight_decay=cfg.weight_decay)
    memories = {"normal": CrossBatchMemory(cfg.cross_batch, cfg.kmeans_iters),
                "abnormal": CrossBatchMemory(cfg.cross_batch, cfg.kmeans_iters)}
    start, best, log_lines = 1, None, []
    if resume_state is not None:
        start, best, log_lines = resume_training(resume_state, last, out, model, opt, memories, gen, kgen,
                                                 device, cfg.quiet)
    elif cfg.resume and not cfg.quiet:
        print(f"--resume: no checkpoint in {out}, starting from scratch")
    atomic_write_json(out / "config.json", {**asdict(cfg), "n_train": len(train_idx), "n_val": len(val_idx),
                                             "in_dim": in_dim, "crops": fs.crops, "extractor": extractor,
                                             "val_videos": [fs.names[i] for i in val_idx]})
    if not cfg.quiet:
        n_abn = int(fs.labels[train_idx].sum())
        print(f"training on {len(train_idx)} videos ({n_abn} abnormal, {len(train_idx) - n_abn} normal), "
              f"{len(val_idx)} held out; T={cfg.T}, {fs.crops} crop(s), {len(batches)} batches/epoch, device {device}")

    model.train()
    for epoch in range(start, cfg.epochs + 1):
        row = run_epoch(model, opt, batches, fs, memories, cfg, gen, kgen, device, seg_truth, epoch)
        if val_idx:
            row.update(validate(model, fs, val_idx, device))
            if better(row, best):
                best = {"epoch": epoch, "val_auc": row["val_auc"], "val_kmax": row["val_kmax"]}
                atomic_torch_save(model_checkpoint(model, cfg, epoch, in_dim, extractor, {"selected_by": "validation"}),
                                  out / "best.pt")
        save_epoch(out, row, model, opt, memories, cfg, in_dim, extractor, gen, kgen, device, best, log_lines)
        if not cfg.quiet:
            msg = " ".join(f"{k}={row[k]:.4f}" for k in ("loss", "kmax", "bc", "d_normal", "d_abnormal", "purity",
                                                          "pseudo_precision", "val_auc")
                           if isinstance(row.get(k), float))
            print(f"epoch {epoch}/{cfg.epochs} {msg} ({row['seconds']:.1f}s)", flush=True)
    final_epoch = max(cfg.epochs, start - 1)
    atomic_torch_save(model_checkpoint(model, cfg, final_epoch, in_dim, extractor,
                                       {"selected_by": "final", "best": best}),
                      out / "model.pt")
    if not cfg.quiet:
        sel = f"; validation picked epoch {best['epoch']} (best.pt)" if best else ""
        print(f"done: {out / 'model.pt'}{sel}")
    return out
