"""Loaders for the real feature sets under ``../shared/realdata`` (and Ped2 clip features), shared by the benches.

Every loader returns a :class:`FeatureSet`: a list of :class:`Video` (features ``(n, D)`` float64, one row
per clip or segment, and per-row truth where known) plus the videos whose frames are scored by a
distance-to-normal baseline and the normal rows that baseline measures distance to.

* :func:`load_ucf_c3d`: the 17 UCF-Crime test videos with public C3D fc6 features (Sultani's format,
  32 segments x 4096, rows L2-normalised), per-segment truth by ``diagnostics.segment_truth``, frame
  truth from ``index.csv``; the baseline's reference is the 10 normal BKU road-accident videos (same
  C3D pipeline, not UCF-Crime), as in ``ucf_crime_c3d/SOURCES.md``.
* :func:`load_ped2`: UCSD Ped2 Inception-I3D clip features ``<features>/<video>.npy`` ``(clips, 1024)``,
  clip c covering frames 16c..16c+15 (tail padded), truth from ``ucsd_ped2/videos.json``, split by TEVAD's
  ``ped2-i3d.list`` / ``ped2-i3d-test.list`` (the baseline's reference: the train list's normal videos).
* :func:`load_sht`, :func:`load_xd`: the 7 normal ShanghaiTech (10-crop, averaged) and 28 normal
  XD-Violence (centre crop) I3D videos; no anomalies, so no truth statistics.
* :func:`load_generated`: a ``pipeline.synth`` data root, truth from ``synth_truth.npz``; with
  ``segments=32`` every video is pooled to 32 segments and L2-normalised like Sultani's C3D release.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.model import data as D  # noqa: E402
from pipeline.model import diagnostics as DG  # noqa: E402
from pipeline.synth import features as synth  # noqa: E402

REALDATA = next((d for d in (Path(__file__).resolve().parents[2] / "shared" / "realdata", Path("/work/shared/realdata"))
                 if d.is_dir()), Path(__file__).resolve().parents[2] / "shared" / "realdata")
SEGMENTS = 32
CLIP = 16


@dataclass
class Video:
    name: str
    x: np.ndarray                          # (n, D) float64: clips or segments
    label: int                             # 1: the video holds an anomaly
    truth: np.ndarray | None = None        # (n,) uint8 per row, None when unknown
    frames: np.ndarray | None = None       # (F,) uint8 frame truth, None when unknown
    frame_row: np.ndarray | None = None    # (F,) row of x that scores each frame
    n_clips: int = 0                       # underlying 16-frame clips (= n unless pooled)
    test: bool = False                     # scored by the distance-to-normal baseline


@dataclass
class FeatureSet:
    name: str
    videos: list[Video]
    reference: np.ndarray | None = None    # (m, D) normal rows for the distance-to-normal baseline
    note: str = ""
    extra: dict = field(default_factory=dict)


def sultani_frame_rows(n_frames: int, segments: int = SEGMENTS) -> np.ndarray:
    """Which of the 32 segments scores each frame, by Sultani's ``Evaluate_Anomaly_Detector.m``:
    ``edges = round(linspace(1, nclip, 33))`` over ``nclip = n_frames // 16`` clips, clip c covers
    frames 16(c-1)+1..16c, frames after the last clip take the last segment. -> (n_frames,) int."""
    nclip = max(1, n_frames // CLIP)
    edges = np.round(np.linspace(1, nclip, segments + 1)).astype(int)          # 1-based clip numbers
    clip_seg = np.full(nclip, segments - 1)
    for i in range(segments):
        ss, ee = edges[i], edges[i + 1] - 1 if i < segments - 1 else edges[i + 1]
        ee = max(ee, ss)
        clip_seg[ss - 1:ee] = i
    rows = np.repeat(clip_seg, CLIP)
    return np.concatenate([rows, np.full(n_frames - len(rows), rows[-1])])[:n_frames]


def _c3d(realdata: Path, r: dict) -> np.ndarray:
    return np.loadtxt(realdata / r["file"], dtype=np.float32).reshape(SEGMENTS, -1)


def _frame_truth(n: int, spans: str, one_based: bool) -> np.ndarray:
    y = np.zeros(n, np.uint8)
    for span in filter(None, spans.split(";")):
        a, b = (int(v) for v in span.split("-"))
        y[a - one_based:b + (not one_based)] = 1
    return y


def load_ucf_c3d_arrays(realdata: Path = REALDATA):
    """The 17 UCF-Crime test videos, normal first: features (N, 32, 4096) float32, segment truth (N, 32)
    uint8, the number of normal videos and the index.csv rows (in that order)."""
    rows = [r for r in csv.DictReader(open(realdata / "index.csv"))
            if r["dataset"] == "UCF-Crime" and r["role"] == "test" and r["file"].startswith("ucf_crime_c3d/")]
    rows.sort(key=lambda r: (int(r["label"]), r["video"]))
    feats, truth = [], []
    for r in rows:
        frame = _frame_truth(int(r["n_frames"]), r["anomaly_frames"], one_based=True)
        clips = frame[: len(frame) // CLIP * CLIP].reshape(-1, CLIP).mean(1) >= 0.5   # 16-frame clips
        truth.append(DG.segment_truth(clips, SEGMENTS))       # Sultani's 32 segments split the clips evenly
        feats.append(_c3d(realdata, r))
    n_normal = sum(r["label"] == "0" for r in rows)
    return np.stack(feats), np.array(truth, np.uint8), n_normal, rows


def load_ucf_c3d(realdata: Path = REALDATA) -> FeatureSet:
    x, truth, _, rows = load_ucf_c3d_arrays(realdata)
    vids = []
    for xi, ti, r in zip(x, truth, rows):
        n = int(r["n_frames"])
        vids.append(Video(r["video"], xi.astype(np.float64), int(r["label"]), ti,
                          _frame_truth(n, r["anomaly_frames"], one_based=True), sultani_frame_rows(n), n // CLIP, True))
    ref = [r for r in csv.DictReader(open(realdata / "index.csv"))
           if r["dataset"].startswith("BKU") and r["label"] == "0"]
    reference = np.concatenate([_c3d(realdata, r) for r in ref]).astype(np.float64)
    return FeatureSet("UCF C3D", vids, reference,
                      f"{len(vids)} UCF-Crime test videos, 32 C3D segments each; reference: {len(ref)} BKU normals")


def load_ped2(features: Path, realdata: Path = REALDATA) -> FeatureSet | None:
    """Ped2 clip features, or None when ``features`` holds none of the listed videos."""
    features = Path(features)
    meta = json.loads((realdata / "ucsd_ped2" / "videos.json").read_text())
    split = {}
    for role, f in (("train", "ped2-i3d.list"), ("test", "ped2-i3d-test.list")):
        for line in (realdata / "ucsd_ped2" / f).read_text().split():
            split[Path(line).name.removesuffix("_i3d.npy")] = role
    vids, reference, missing = [], [], []
    for name in sorted(split):
        f = features / f"{name}.npy"
        if not f.is_file():
            missing.append(name)
            continue
        x = np.load(f).astype(np.float64)                                     # (clips, 1024)
        m = meta[name]
        frames = np.zeros(m["frames"], np.uint8)
        for a, b in m["intervals"]:
            frames[a:b + 1] = 1
        if len(x) != -(-len(frames) // CLIP):
            raise ValueError(f"{f}: {len(x)} clips, expected ceil({len(frames)} / 16)")
        pad = np.concatenate([frames, np.full(len(x) * CLIP - len(frames), frames[-1])])
        truth = (pad.reshape(-1, CLIP).mean(1) >= 0.5).astype(np.uint8)
        label = int(frames.any())
        test = split[name] == "test"
        vids.append(Video(name, x, label, truth, frames, np.arange(len(frames)) // CLIP, len(x), test))
        if not test and not label:
            reference.append(x)
    if not vids:
        return None
    note = f"{len(vids)} videos ({sum(v.label for v in vids)} anomalous)"
    if missing:
        note += f"; {len(missing)} missing from {features}"
    return FeatureSet("Ped2 I3D", vids, np.concatenate(reference) if reference else None, note)


def load_sht(realdata: Path = REALDATA) -> FeatureSet:
    files = sorted((realdata / "shanghaitech_i3d").glob("SH_*_ten_crop_i3d/*_i3d.npy"))
    vids = [Video(f.stem, np.load(f).mean(1).astype(np.float64), 0, n_clips=len(np.load(f))) for f in files]
    return FeatureSet("SHT I3D", vids, note=f"{len(vids)} normal videos, 10 crops averaged")


def load_xd(realdata: Path = REALDATA) -> FeatureSet:
    files = sorted((realdata / "xd_violence_i3d").glob("RGB*/*__0.npy"))
    vids = []
    for f in files:
        x = np.load(f).astype(np.float64)
        vids.append(Video(f.stem, x, 0, n_clips=len(x)))
    return FeatureSet("XD I3D", vids, note=f"{len(vids)} normal videos, centre crop")


def load_generated(root: Path, segments: int | None = None, name: str | None = None) -> FeatureSet:
    """A ``pipeline.synth`` data root (any of its formats). ``segments``: pool each video to that many
    segments (``data.resample``) and L2-normalise them, as Sultani's C3D release is."""
    root = Path(root)
    info = json.loads((root / "synth.json").read_text())
    truth = synth.load_truth(root)
    dim, ds = info["dim"], info["dataset"]
    vids, reference = [], []
    for split in ("train", "test"):
        for v in D.load_split(root, ds, split):
            x = D.load_features(v.paths, dim).mean(1).astype(np.float64)     # (clips, D)
            y = truth[v.name]["clip_labels"]
            n = len(x)
            frames = np.repeat(y, CLIP)
            rows = np.arange(n * CLIP) // CLIP
            if segments:
                y = DG.segment_truth(y, segments)
                x = D.resample(x, segments).astype(np.float64)
                x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
                edges = np.linspace(0, n, segments + 1).astype(int)        # data.resample's spans
                rows = np.searchsorted(edges[1:], rows, side="right")    # the span holding each clip
            vids.append(Video(v.name, x, v.label, y, frames, rows, n, split == "test"))
            if split == "train" and not v.label:
                reference.append(x)
    label = name or f"gen {info.get('profile', 'old')}"
    return FeatureSet(label, vids, np.concatenate(reference),
                      f"{root}: {len(vids)} videos" + (f", pooled to {segments} segments" if segments else ""),
                      extra=info)
