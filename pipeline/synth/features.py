"""Synthetic feature datasets in the field's real on-disk formats (tests, examples, benchmarks).

``make_dataset(out, dataset="ucf")`` writes a data root that :mod:`pipeline.model.data` reads exactly like
the public releases:

* ``ucf``: RTFM's layout -- ``UCF_Train_ten_crop_i3d/<name>_i3d.npy``, ``UCF_Test_ten_crop_i3d/...``,
  ``ucf-i3d.list`` / ``ucf-i3d-test.list`` (Windows paths ``G:\\UCF_Train_ten_crop_i3d\\..._i3d.npy``,
  CRLF, anomalous videos first) and the official
  ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt`` (``Name_x264.mp4  Class  s1  e1  s2  e2  ``,
  -1 for none, class 'Normal' for normal videos, lines sorted by name). Names ``Abuse001_x264`` ...
  (the 13 UCF-Crime classes round robin), training normals ``Normal_Videos001_x264``, test normals
  ``Normal_Videos_001_x264``.
* ``sht``: ``features/<video>_i3d.npy``, ``SH_Train_new.txt`` (``video,label``), ``SH_Test_NEW.txt``
  (``video,label,n_frames``, -1 for anomalous videos as in MIST's file) and ``test_frame_mask/<video>.npy``
  uint8 masks (16 frames per clip) for every anomalous video, train and test (as in the real data).
* ``xd``: ``RGB/<video>__<k>.npy`` and ``RGBTest/...`` (one ``(clips, dim)`` file per crop),
  ``rgb.list`` / ``rgbtest.list`` (one line per crop, violent first) and ``annotations.txt``
  (``video s1 e1 [s2 e2]``, violent test videos only, no final newline); normal names hold ``label_A``.

Plus ``synth_truth.npz`` (per-clip truth, see :func:`load_truth`) and ``synth.json`` (the parameters).

Feature model (per dataset, all random draws from ``seed``). Every direction below is a random
vector with a per-dimension RMS of 1, so amplitudes are per-dimension RMS values and the difficulty
does not depend on ``dim``:

* ``base``: a nonnegative Gamma(2, 0.15) profile (mean activation ~0.3, like pooled I3D features,
  whose real mean is ~0.2);
* normal *scenes*: ``N_SCENES`` prototypes ``base + 0.15 * (random mix of 8 scene directions)``;
  each video draws one scene, plus a small per-video offset (0.04);
* smooth temporal variation: an AR(1) latent (8-d, rho = 0.95) through 8 more directions (0.08),
  plus white noise (0.05);
* normal *distractors*: unusual-looking but normal bursts (3 directions, amplitude 0.08-0.16,
  each 3-10% of the video, Poisson(0.8) per video) in normal and abnormal videos alike, so a
  plain MIL model and distance-to-normal scores get false alarms;
* anomalies: abnormal videos get 1 or 2 contiguous intervals covering 5-40% of their clips whose
  clips add ``signal * ANOMALY_SCALE * (class direction) * (1 + 0.2 * smooth wobble)``; the 13
  class directions are ``0.6 * common + 0.8 * own`` (a shared "anomalous" component);
* a ReLU at the end (features are nonnegative); with ``crops > 1`` each crop adds its own white
  noise (0.03) before the ReLU.

``signal`` sets the difficulty: at ``signal = 1`` an untrained distance-to-normal-mean score
(frame level, normal training clips as reference) gives an AUC of about 0.73-0.84 depending on the
seed (well above chance, far from perfect; cf. 0.78 for the same score on 17 real UCF-Crime test
videos); ``signal = 0`` gives chance (0.4-0.6), ``signal = 3`` makes the task easy (> 0.98).

That is the ``old`` profile (the default), kept bit for bit. Measured against real features
(``bench/real_stats.py``) it is too easy in the way that matters to the method: the anomaly holds
as much of a video's variation as its first principal direction, so K=2 k-means on one video's clips
partly finds it (purity 0.92 against a majority share of 0.79), which it does not on real features
(purity = majority share); it also has 14% zeros (real I3D: under 1%) and almost constant clip norms.
``profile="ped2"`` / ``"ucf"`` (``--profile``) select the *calibrated* model instead, with the
parameters in ``PROFILES`` (fitted to real UCSD Ped2 Inception-I3D clips and to UCF-Crime's C3D
segments). Per dimension d, video v, clip t, before a final ReLU::

    x[t, d] = m[d] * gain[t] + s[d] * (video * o[d] + motion * sum_j sqrt(l_j) z[t, j] u[j, d]
                                       + noise * e[t, d] + anomaly[t] * a[d])

* ``m ~ Gamma(mean_shape, mean_level / mean_shape)``: the mean profile (mean ``mean_level``, CV
  ``1/sqrt(mean_shape)``); ``s = spread * mean_level^(1-p) * m^p`` (:func:`spread_profile`): busier
  dimensions vary more, as in real I3D features (per-dimension std ~ mean^0.6 in Ped2);
* ``o``: the video's own offset (N(0, 1) per dimension): sets the between-video share of variance;
* motion: ``motion_rank`` AR(1) series ``z`` (coefficient ``rho``, centred on the video's mean) with
  variances ``l_j ~ j^-motion_decay`` summing to 1 (:func:`motion_variances`), along directions
  ``u = sqrt(1 - private) * shared + sqrt(private) * own`` (unit per-dimension RMS);
* ``e``: white noise; ``gain[t] = 1 + gain * (AR(1), centred)``: clip-to-clip changes of overall
  activity (spread of clip norms);
* anomalies: 1-2 intervals covering a uniform ``anomaly_fraction`` share of an abnormal video (draws
  above 1 cover the whole video, as Ped2's anomalies often do) add ``signal * anomaly * (1 + 0.2 *
  wobble)`` along the class direction ``a = anomaly_common * common + sqrt(1 - anomaly_common^2) *
  own`` (unit per-dimension RMS). No distractors; ``scene`` is -1 in the truth;
* with ``crops > 1`` each crop adds its own white noise (``0.1 * noise``, in units of s) before the ReLU.

Profile defaults: ``ped2`` 1024-d, Ped2's lengths (8, 10 or 12 clips); ``ucf`` 2048-d, UCF-Crime's
lengths. The ``ucf`` profile takes its structure from the C3D segments (pooled to 32 segments and
L2-normalised, a generated ucf set matches them) but keeps I3D's dense, mean-0.25 activations,
since the pipeline reads I3D features (C3D fc6 is 75% zeros). At ``signal = 1`` the
distance-to-normal AUC is near the real sets' (ped2 0.67-0.70 vs 0.67; ucf 0.72-0.80 vs 0.78;
bench/RESULTS.md, "Real vs generated feature statistics").

CLI: ``python -m pipeline.synth --out DIR [--dataset ucf|sht|xd] [--preset tiny|small|ucf-scale] ...``
(``--help`` lists everything). Output is built in a temporary folder beside ``out`` and renamed into
place; a non-empty ``out`` is refused unless ``--overwrite``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.model.data import UCF_CLASSES

CLIP_LEN = 16  # frames per clip
N_SCENES = 8
ANOMALY_SCALE = 0.11  # per-dim RMS of the anomaly added at signal = 1 (calibrated, see docstring)
XD_CODES = ("B1-0-0", "B2-0-0", "B4-0-0", "B5-0-0", "B6-0-0", "G-0-0")

PRESETS: dict[str, dict] = {
    "tiny": dict(n_train_normal=8, n_train_abnormal=8, n_test_normal=4, n_test_abnormal=4,
                 min_clips=20, max_clips=40, dim=2048, crops=1),
    "small": dict(n_train_normal=60, n_train_abnormal=60, n_test_normal=30, n_test_abnormal=30,
                  min_clips=30, max_clips=150),
    "ucf-scale": dict(n_train_normal=800, n_train_abnormal=810, n_test_normal=150, n_test_abnormal=140,
                      min_clips=10, max_clips=3000, lengths="ucf", dtype="float16", crops=1),
}

# UCSD Ped2's 28 videos: 3 of 120 frames, 10 of 150, 15 of 180 (ucsd_ped2/videos.json) -> 8, 10, 12 clips
PED2_FRAMES = (120,) * 3 + (150,) * 10 + (180,) * 15

_SHARED_UCF = [Path(__file__).resolve().parents[3] / "shared" / "data" / "ucf_crime",
               Path("/work/shared/data/ucf_crime")]


# --------------------------------------------------------------------------------------------
# the feature model
# --------------------------------------------------------------------------------------------
def _directions(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """(n, dim) random directions with per-dim RMS 1."""
    g = rng.standard_normal((n, dim)).astype(np.float32)
    return g / np.sqrt((g ** 2).mean(axis=1, keepdims=True))


class _World:
    """Dataset-level random structure shared by all videos (scenes, directions)."""

    def __init__(self, rng: np.random.Generator, dim: int, n_classes: int):
        self.dim = dim
        self.base = rng.gamma(2.0, 0.15, dim).astype(np.float32)  # (D,)
        scene_dirs = _directions(rng, 8, dim)  # (8, D)
        mix = rng.standard_normal((N_SCENES, 8)).astype(np.float32) / math.sqrt(8)
        self.scenes = self.base + 0.15 * (mix @ scene_dirs)  # (S, D)
        self.offset_dirs = _directions(rng, 8, dim)  # (8, D)
        self.ar_dirs = _directions(rng, 8, dim)  # (8, D)
        self.distractors = _directions(rng, 3, dim)  # (3, D)
        common = _directions(rng, 1, dim)[0]
        own = _directions(rng, n_classes, dim)
        cls = 0.6 * common + 0.8 * own
        self.classes = cls / np.sqrt((cls ** 2).mean(axis=1, keepdims=True))  # (K, D)


def _ar1(rng: np.random.Generator, n: int, k: int, rho: float = 0.95) -> np.ndarray:
    """(n, k) stationary AR(1) sequence with unit variance."""
    eps = rng.standard_normal((n, k)).astype(np.float32)
    z = np.empty_like(eps)
    z[0] = eps[0]
    s = math.sqrt(1 - rho * rho)
    for t in range(1, n):
        z[t] = rho * z[t - 1] + s * eps[t]
    return z


def _intervals(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """1-2 disjoint clip intervals [a, b) covering 5-40% of n clips."""
    total = max(1, int(round(rng.uniform(0.05, 0.40) * n)))
    if n >= 10 and rng.random() < 0.5 and total >= 2:
        l1 = int(rng.integers(1, total))
        lens = [l1, total - l1]
    else:
        lens = [total]
    free = n - sum(lens) - (len(lens) - 1)  # one clip gap between two intervals
    cuts = np.sort(rng.integers(0, free + 1, len(lens)))
    out, pos = [], 0
    for i, ln in enumerate(lens):
        a = pos + int(cuts[i] - (cuts[i - 1] if i else 0))
        out.append((a, a + ln))
        pos = a + ln + 1
    return out


def _video(rng: np.random.Generator, w: _World, n: int, crops: int, cls_idx: int | None,
           signal: float, private_motion: float = 0.0) -> tuple[np.ndarray, dict]:
    """One video's features ``(n, D)`` or ``(n, crops, D)`` float32 and its truth.

    ``private_motion`` in [0, 1]: the share of the smooth temporal variation's variance that runs along
    this video's own random directions instead of the dataset's shared ones (0: all shared).
    """
    D = w.dim
    scene = int(rng.integers(N_SCENES))
    off = 0.04 * (rng.standard_normal(8).astype(np.float32) / math.sqrt(8)) @ w.offset_dirs  # (D,)
    dirs = w.ar_dirs                                                                          # (8, D)
    if private_motion > 0:
        dirs = math.sqrt(1 - private_motion) * dirs + math.sqrt(private_motion) * _directions(rng, 8, D)
    x = w.scenes[scene] + off + 0.08 * (_ar1(rng, n, 8) / math.sqrt(8)) @ dirs  # (n, D)
    x += 0.05 * rng.standard_normal((n, D), dtype=np.float32)
    distractor = np.zeros(n, np.uint8)
    for _ in range(rng.poisson(0.8)):
        ln = max(1, int(round(rng.uniform(0.03, 0.10) * n)))
        a = int(rng.integers(0, n - ln + 1))
        x[a:a + ln] += rng.uniform(0.08, 0.16) * w.distractors[rng.integers(len(w.distractors))]
        distractor[a:a + ln] = 1
    labels = np.zeros(n, np.uint8)
    ivs: list[tuple[int, int]] = []
    if cls_idx is not None:
        ivs = _intervals(rng, n)
        wobble = 1 + 0.2 * _ar1(rng, n, 1, rho=0.8)[:, 0]  # (n,)
        for a, b in ivs:
            x[a:b] += (signal * ANOMALY_SCALE * wobble[a:b, None]) * w.classes[cls_idx]
            labels[a:b] = 1
    if crops > 1:
        x = x[:, None, :] + 0.03 * rng.standard_normal((n, crops, D), dtype=np.float32)  # (n, C, D)
    np.maximum(x, 0, out=x)
    return x, dict(labels=labels, distractor=distractor, scene=scene, intervals=ivs)


# --------------------------------------------------------------------------------------------
# the calibrated feature model (--profile ped2 | ucf)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """Parameters of the calibrated feature model (see the module docstring; values in ``PROFILES``)."""

    dim: int                                 # default feature width
    min_clips: int                           # default clip-count range and distribution
    max_clips: int
    lengths: str
    anomaly_fraction: tuple[float, float]    # uniform range of the share of an abnormal video's clips inside
                                             # its intervals; draws above 1 make the whole video anomalous
    mean_shape: float                        # Gamma shape of the per-dimension mean profile m (CV 1/sqrt(shape))
    mean_level: float                        # mean of m (the mean activation before the ReLU)
    scale_power: float                       # per-dimension spread s_d = spread * mean_level^(1-p) * m_d^p
    spread: float
    video: float                             # a video's own offset, in units of s
    motion: float                            # within-video smooth variation, in units of s
    motion_rank: int                         # its directions; variances ~ j^-motion_decay, j = 1..rank
    motion_decay: float
    private: float                           # share of the motion's variance along the video's own directions
    rho: float                               # AR(1) coefficient of consecutive clips
    noise: float                             # white noise per clip, in units of s
    gain: float                              # std of a smooth per-clip gain (1 + gain * AR(1)) on m
    anomaly: float                           # anomaly amplitude at signal 1, in units of s
    anomaly_common: float                    # weight of the component all anomaly classes share


PROFILES: dict[str, Profile] = {   # calibrated with bench/real_stats.py (bench/RESULTS.md, issue 15)
    "ped2": Profile(dim=1024, min_clips=1, max_clips=3000, lengths="ped2", anomaly_fraction=(0.45, 1.25),
                    mean_shape=2.8, mean_level=0.25, scale_power=0.6, spread=0.25, video=0.8, motion=1.1,
                    motion_rank=12, motion_decay=1.0, private=0.3, rho=0.7, noise=0.75, gain=0.1,
                    anomaly=0.55, anomaly_common=0.9),
    "ucf": Profile(dim=2048, min_clips=10, max_clips=3000, lengths="ucf", anomaly_fraction=(0.04, 0.26),
                   mean_shape=2.8, mean_level=0.25, scale_power=0.6, spread=0.25, video=1.8, motion=1.1,
                   motion_rank=12, motion_decay=1.0, private=0.9, rho=0.93, noise=0.65, gain=0.1,
                   anomaly=1.0, anomaly_common=0.9),
}
OLD_DEFAULTS = dict(dim=2048, min_clips=20, max_clips=120, lengths="uniform")   # --profile old


def spread_profile(m: np.ndarray, spread: float, power: float, level: float) -> np.ndarray:
    """Per-dimension spread ``spread * level^(1-power) * m^power``: proportional to the mean when
    power = 1, equal for every dimension when power = 0, ``spread * level`` where m = level."""
    return spread * level ** (1 - power) * np.power(np.maximum(m, 0), power)


def motion_variances(rank: int, decay: float) -> np.ndarray:
    """(rank,) variances ``j^-decay`` of the motion directions, j = 1..rank, scaled to sum to 1."""
    v = np.arange(1, rank + 1, dtype=np.float64) ** -decay
    return (v / v.sum()).astype(np.float32)


class _RealWorld:
    """Dataset-level structure of the calibrated model: mean profile, spreads, shared directions."""

    def __init__(self, rng: np.random.Generator, dim: int, n_classes: int, p: Profile):
        self.dim, self.p = dim, p
        self.mean = (rng.gamma(p.mean_shape, p.mean_level / p.mean_shape, dim)).astype(np.float32)     # (D,)
        self.spread = spread_profile(self.mean, p.spread, p.scale_power, p.mean_level).astype(np.float32)  # (D,)
        self.motion_dirs = _directions(rng, p.motion_rank, dim)                                       # (r, D)
        self.motion_sd = np.sqrt(motion_variances(p.motion_rank, p.motion_decay))                      # (r,)
        common = _directions(rng, 1, dim)[0]
        own = _directions(rng, n_classes, dim)
        cls = p.anomaly_common * common + math.sqrt(1 - p.anomaly_common ** 2) * own
        self.classes = cls / np.sqrt((cls ** 2).mean(axis=1, keepdims=True))                           # (K, D)


def _real_intervals(rng: np.random.Generator, n: int, lo: float, hi: float) -> list[tuple[int, int]]:
    """1-2 disjoint clip intervals [a, b) covering a uniform lo-hi share of n clips, at most all n (one
    interval when it covers n - 1 or more clips, in videos under 10 clips, or by a coin flip)."""
    total = min(n, max(1, int(round(rng.uniform(lo, hi) * n))))
    if total >= n - 1 or n < 10 or total < 2 or rng.random() >= 0.5:
        a = int(rng.integers(0, n - total + 1))
        return [(a, a + total)]
    l1 = int(rng.integers(1, total))
    free = n - total - 1                                     # one clip gap between the two
    c1, c2 = np.sort(rng.integers(0, free + 1, 2))
    a1 = int(c1)
    a2 = a1 + l1 + 1 + int(c2 - c1)
    return [(a1, a1 + l1), (a2, a2 + total - l1)]


def _real_video(rng: np.random.Generator, w: _RealWorld, n: int, crops: int, cls_idx: int | None,
                signal: float) -> tuple[np.ndarray, dict]:
    """One video of the calibrated model: features ``(n, D)`` or ``(n, crops, D)`` float32 and its truth."""
    p, D = w.p, w.dim
    own = _directions(rng, p.motion_rank, D)                                                  # (r, D)
    dirs = math.sqrt(1 - p.private) * w.motion_dirs + math.sqrt(p.private) * own              # (r, D)
    z = _ar1(rng, n, p.motion_rank, p.rho) * w.motion_sd                                      # (n, r)
    z -= z.mean(0)                                   # motion around the video's own mean (its offset)
    h = p.video * rng.standard_normal(D, dtype=np.float32) + p.motion * (z @ dirs)            # (n, D)
    h += p.noise * rng.standard_normal((n, D), dtype=np.float32)
    labels = np.zeros(n, np.uint8)
    ivs: list[tuple[int, int]] = []
    if cls_idx is not None:
        ivs = _real_intervals(rng, n, *p.anomaly_fraction)
        wobble = 1 + 0.2 * _ar1(rng, n, 1, rho=0.8)[:, 0]                                     # (n,)
        for a, b in ivs:
            h[a:b] += (signal * p.anomaly * wobble[a:b, None]) * w.classes[cls_idx]
            labels[a:b] = 1
    g = _ar1(rng, n, 1, p.rho)[:, 0]
    gain = 1 + p.gain * (g - g.mean())                                                        # (n,)
    x = gain[:, None] * w.mean + w.spread * h                                                 # (n, D)
    if crops > 1:
        x = x[:, None, :] + 0.1 * p.noise * w.spread * rng.standard_normal((n, crops, D), dtype=np.float32)
    np.maximum(x, 0, out=x)
    return x, dict(labels=labels, distractor=np.zeros(n, np.uint8), scene=-1, intervals=ivs)


# --------------------------------------------------------------------------------------------
# clip counts
# --------------------------------------------------------------------------------------------
def _ucf_frame_counts() -> tuple[dict[str, list[int]], str]:
    """Real UCF-Crime frame counts (normal / abnormal, train / test) when the annotation files exist."""
    for d in _SHARED_UCF:
        tr = d / "Train_Annotation.txt"
        if tr.is_file():
            pools: dict[str, list[int]] = {"train_normal": [], "train_abnormal": [],
                                           "test_normal": [], "test_abnormal": []}
            for split, f in (("train", tr), ("test", d / "Test_Annotation.txt")):
                if not f.is_file():
                    continue
                for line in f.read_text().splitlines():
                    tok = line.split()
                    if len(tok) >= 2 and tok[1].isdigit():
                        kind = "normal" if "Normal_Videos" in tok[0] else "abnormal"
                        pools[f"{split}_{kind}"].append(int(tok[1]))
            for kind in ("normal", "abnormal"):
                if not pools[f"test_{kind}"]:
                    pools[f"test_{kind}"] = pools[f"train_{kind}"]
            return pools, str(tr)
    return {}, ""


def _clip_counts(rng, n: int, group: str, lengths: str, min_clips: int, max_clips: int,
                 pools: dict[str, list[int]]) -> np.ndarray:
    if lengths == "ucf":
        pool = pools.get(group)
        if pool:
            frames = rng.choice(np.asarray(pool), size=n, replace=True)
            c = np.ceil(frames / CLIP_LEN).astype(int)
        else:
            c = np.round(rng.lognormal(math.log(250), 1.0, n)).astype(int)
        return np.clip(c, min_clips, max_clips)
    if lengths == "ped2":
        c = np.ceil(rng.choice(np.asarray(PED2_FRAMES), size=n, replace=True) / CLIP_LEN).astype(int)
        return np.clip(c, min_clips, max_clips)
    if lengths != "uniform":
        raise ValueError(f"lengths must be 'uniform', 'ucf' or 'ped2', got {lengths!r}")
    return rng.integers(min_clips, max_clips + 1, n)


# --------------------------------------------------------------------------------------------
# naming and writing
# --------------------------------------------------------------------------------------------
def _plan(dataset: str, counts: dict[str, int], rng) -> list[dict]:
    """Names, splits, labels and classes of every video (anomalous first within a split)."""
    vids = []
    if dataset == "ucf":
        num = {c: 0 for c in UCF_CLASSES}
        for split in ("train", "test"):
            for i in range(counts[f"{split}_abnormal"]):
                k = i % len(UCF_CLASSES)
                c = UCF_CLASSES[k]
                num[c] += 1
                vids.append(dict(name=f"{c}{num[c]:03d}_x264", split=split, label=1, cls=c, k=k))
            for i in range(counts[f"{split}_normal"]):
                name = f"Normal_Videos{i + 1:03d}_x264" if split == "train" else f"Normal_Videos_{i + 1:03d}_x264"
                vids.append(dict(name=name, split=split, label=0, cls="Normal", k=None))
    elif dataset == "sht":
        num = [0] * 14
        for split in ("train", "test"):
            for label in (1, 0):
                for i in range(counts[f"{split}_{'abnormal' if label else 'normal'}"]):
                    sc = int(rng.integers(1, 14))
                    num[sc] += 1
                    name = f"{sc:02d}_{num[sc]:04d}" if label else f"{sc:02d}_{num[sc]:03d}"
                    vids.append(dict(name=name, split=split, label=label, cls="", k=int(rng.integers(13)) if label else None))
    elif dataset == "xd":
        g = 0
        for split in ("train", "test"):
            for label in (1, 0):
                for i in range(counts[f"{split}_{'abnormal' if label else 'normal'}"]):
                    k = i % len(XD_CODES) if label else None
                    code = XD_CODES[k] if label else "A"
                    hh, mm = divmod(g, 60)
                    name = f"Synth.Movie.{2000 + g % 20}__#{hh:02d}-{mm:02d}-00_{hh:02d}-{mm:02d}-59_label_{code}"
                    vids.append(dict(name=name, split=split, label=label, cls=code, k=k))
                    g += 1
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected ucf, sht or xd")
    return vids


def _frame_intervals(ivs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Clip intervals [a, b) -> frame intervals (16a, 16b - 1), 0-based with inclusive end."""
    return [(CLIP_LEN * a, CLIP_LEN * b - 1) for a, b in ivs]


def _write_text(path: Path, lines: list[str], newline: str = "\n", final: bool = True) -> None:
    text = newline.join(lines) + (newline if final and lines else "")
    path.write_bytes(text.encode("utf-8"))


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")


def _finalize(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{os.getpid()}-{tmp.name[-8:]}"
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_dataset(out, dataset: str = "ucf", n_train_normal: int = 40, n_train_abnormal: int = 40,
                 n_test_normal: int = 20, n_test_abnormal: int = 20, min_clips: int | None = None,
                 max_clips: int | None = None, crops: int = 1, dim: int | None = None, dtype: str = "float32",
                 signal: float = 1.0, seed: int = 0, lengths: str | None = None, private_motion: float = 0.0,
                 profile: str = "old", overwrite: bool = False, progress: bool | None = None) -> dict:
    """Write a synthetic feature dataset in ``dataset``'s real format into ``out``.

    ``lengths``: 'uniform' draws clip counts uniformly in [min_clips, max_clips]; 'ucf' draws them
    like UCF-Crime's real lengths (frame counts from ekosman's Train/Test_Annotation.txt under
    ``../shared`` when present, else a lognormal around 250 clips), 'ped2' like UCSD Ped2's (8, 10 or
    12 clips, ``PED2_FRAMES``), both clipped to [min_clips, max_clips].
    ``private_motion``: share of each video's smooth temporal variation that runs along directions
    of its own rather than the dataset's shared ones (0, the default, keeps every earlier set as it
    was; 1 is closer to real features, whose dominant within-video variation differs between videos).
    ``profile``: the feature model. 'old' (the default) is the original generator, bit for bit;
    'ped2' and 'ucf' are the calibrated model (module docstring) with the parameters in ``PROFILES``,
    fitted to real UCSD Ped2 Inception-I3D clips and to UCF-Crime's C3D segments (bench/real_stats.py).
    ``dim``, ``min_clips``, ``max_clips`` and ``lengths`` default to the profile's (old: 2048, 20, 120,
    'uniform'; ped2: 1024, 1, 3000, 'ped2'; ucf: 2048, 10, 3000, 'ucf').
    ``private_motion`` applies to the old profile only.
    ``progress``: tqdm bar (default: on for more than 200 videos). Returns a summary dict
    (counts, clips, paths), also saved as ``out/synth.json``.
    """
    out = Path(out)
    if profile != "old" and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected old, {', '.join(PROFILES)}")
    prof = PROFILES.get(profile)
    dflt = OLD_DEFAULTS if prof is None else dict(dim=prof.dim, min_clips=prof.min_clips,
                                                    max_clips=prof.max_clips, lengths=prof.lengths)
    dim = dflt["dim"] if dim is None else dim
    min_clips = dflt["min_clips"] if min_clips is None else min_clips
    max_clips = dflt["max_clips"] if max_clips is None else max_clips
    lengths = dflt["lengths"] if lengths is None else lengths
    if prof is not None and private_motion:
        raise ValueError("private_motion applies to profile 'old' only (the calibrated profiles set their own)")
    if dataset not in ("ucf", "sht", "xd"):
        raise ValueError(f"unknown dataset {dataset!r}; expected ucf, sht or xd")
    if not (1 <= min_clips <= max_clips):
        raise ValueError(f"need 1 <= min_clips <= max_clips, got {min_clips}, {max_clips}")
    if crops < 1 or dim < 1:
        raise ValueError(f"crops and dim must be >= 1, got {crops}, {dim}")
    if not 0.0 <= private_motion <= 1.0:
        raise ValueError(f"private_motion must be in [0, 1], got {private_motion}")
    np_dtype = np.dtype(dtype)
    if np_dtype.kind != "f":
        raise ValueError(f"dtype must be a float type, got {dtype}")
    counts = dict(train_normal=n_train_normal, train_abnormal=n_train_abnormal,
                  test_normal=n_test_normal, test_abnormal=n_test_abnormal)
    if any(v < 0 for v in counts.values()) or not counts["train_normal"] + counts["train_abnormal"]:
        raise ValueError(f"bad video counts {counts}")
    _prepare_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    n_classes = len(XD_CODES) if dataset == "xd" else len(UCF_CLASSES)
    world = _World(rng, dim, n_classes) if prof is None else _RealWorld(rng, dim, n_classes, prof)
    vids = _plan(dataset, counts, rng)
    pools, lengths_src = _ucf_frame_counts() if lengths == "ucf" else ({}, "")
    if lengths == "ucf" and not pools:
        lengths_src = "lognormal(log 250, 1)"
    for group in counts:
        split, kind = group.split("_")
        sel = [v for v in vids if v["split"] == split and v["label"] == (kind == "abnormal")]
        for v, c in zip(sel, _clip_counts(rng, len(sel), group, lengths, min_clips, max_clips, pools)):
            v["clips"] = int(c)

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        if dataset == "ucf":
            fdir = {"train": tmp / "UCF_Train_ten_crop_i3d", "test": tmp / "UCF_Test_ten_crop_i3d"}
        elif dataset == "sht":
            fdir = {"train": tmp / "features", "test": tmp / "features"}
        else:
            fdir = {"train": tmp / "RGB", "test": tmp / "RGBTest"}
        for d in fdir.values():
            d.mkdir(exist_ok=True)
        if progress is None:
            progress = len(vids) > 200
        from pipeline.common.cli import progress_bar
        bar = progress_bar(not progress, total=len(vids), desc=f"synth {dataset}", unit="video")
        files = []
        for v in vids:
            if prof is None:
                x, truth = _video(rng, world, v["clips"], crops, v["k"], signal, private_motion)
            else:
                x, truth = _real_video(rng, world, v["clips"], crops, v["k"], signal)
            v.update(truth)
            if dataset == "xd":  # one (clips, D) file per crop
                xs = x if x.ndim == 3 else x[:, None, :]
                v["files"] = []
                for k in range(xs.shape[1]):
                    f = fdir[v["split"]] / f"{v['name']}__{k}.npy"
                    np.save(f, np.ascontiguousarray(xs[:, k]).astype(np_dtype))
                    v["files"].append(f)
            else:
                f = fdir[v["split"]] / f"{v['name']}_i3d.npy"
                np.save(f, x.astype(np_dtype))
                v["files"] = [f]
            files += v["files"]
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

        paths = _write_lists(tmp, dataset, vids)
        _save_truth(tmp / "synth_truth.npz", vids)
        summary = dict(
            dataset=dataset, out=str(out), seed=seed, profile=profile, signal=signal, private_motion=private_motion,
            dim=dim, crops=crops,
            dtype=np_dtype.name, lengths=lengths, lengths_source=lengths_src, counts=counts,
            clips={s: int(sum(v["clips"] for v in vids if v["split"] == s)) for s in ("train", "test")},
            n_files=len(files),
            bytes=int(sum(f.stat().st_size for f in files)),
            paths={k: str(out / p) for k, p in paths.items()} | {"truth": str(out / "synth_truth.npz")},
        )
        if prof is not None:
            summary["profile_parameters"] = asdict(prof)
        (tmp / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
        _finalize(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _write_lists(root: Path, dataset: str, vids: list[dict]) -> dict[str, str]:
    """Split lists and test annotation in the dataset's real format; returns their relative paths."""
    def order(split):  # anomalous first, each part sorted by name
        sel = [v for v in vids if v["split"] == split]
        return sorted(sel, key=lambda v: (-v["label"], v["name"]))

    test = [v for v in vids if v["split"] == "test"]
    if dataset == "ucf":
        for split, fname, folder in (("train", "ucf-i3d.list", "UCF_Train_ten_crop_i3d"),
                                     ("test", "ucf-i3d-test.list", "UCF_Test_ten_crop_i3d")):
            _write_text(root / fname, [f"G:\\{folder}\\{v['name']}_i3d.npy" for v in order(split)], "\r\n")
        lines = []
        for v in sorted(test, key=lambda v: v["name"] + ".mp4"):
            ivs = _frame_intervals(v["intervals"]) + [(-1, -1)] * (2 - len(v["intervals"]))
            nums = "  ".join(f"{s}  {e}" for s, e in ivs)
            lines.append(f"{v['name']}.mp4  {v['cls']}  {nums}  ")
        _write_text(root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", lines)
        return dict(train_list="ucf-i3d.list", test_list="ucf-i3d-test.list",
                    annotations="Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
                    features_train="UCF_Train_ten_crop_i3d", features_test="UCF_Test_ten_crop_i3d")
    if dataset == "sht":
        train = sorted((v for v in vids if v["split"] == "train"), key=lambda v: v["name"])
        _write_text(root / "SH_Train_new.txt", [f"{v['name']},{v['label']}" for v in train])
        _write_text(root / "SH_Test_NEW.txt", [
            f"{v['name']},{v['label']},{-1 if v['label'] else CLIP_LEN * v['clips']}"
            for v in sorted(test, key=lambda v: v["name"])])
        mdir = root / "test_frame_mask"
        mdir.mkdir()
        for v in vids:
            if v["label"]:
                np.save(mdir / f"{v['name']}.npy", np.repeat(v["labels"], CLIP_LEN).astype(np.uint8))
        return dict(train_list="SH_Train_new.txt", test_list="SH_Test_NEW.txt",
                    annotations="test_frame_mask", features_train="features", features_test="features")
    # xd
    for split, fname, folder in (("train", "rgb.list", "RGB"), ("test", "rgbtest.list", "RGBTest")):
        _write_text(root / fname, [f"/data/xd/{folder}/{f.name}" for v in order(split) for f in v["files"]])
    lines = [" ".join([v["name"]] + [f"{s} {e}" for s, e in _frame_intervals(v["intervals"])])
             for v in test if v["label"]]
    _write_text(root / "annotations.txt", lines, final=False)
    return dict(train_list="rgb.list", test_list="rgbtest.list", annotations="annotations.txt",
                features_train="RGB", features_test="RGBTest")


def _save_truth(path: Path, vids: list[dict]) -> None:
    """synth_truth.npz: ``diagnostics.save_clip_truth`` of the generated videos (their ``labels``)."""
    from pipeline.model.diagnostics import save_clip_truth
    save_clip_truth(path, [dict(v, clip_labels=v["labels"]) for v in vids])


def load_truth(out) -> dict[str, dict]:
    """Per-video truth of a synthetic dataset: name -> dict(split, label, cls, scene,
    clip_labels (clips,) uint8, distractor (clips,) uint8). Frame labels are the clip labels
    repeated 16 times (``np.repeat(clip_labels, 16)``)."""
    from pipeline.model.diagnostics import load_clip_truth
    return load_clip_truth(Path(out) / "synth_truth.npz")
