"""Anomalies in your own videos: raw video -> per-frame scores, anomalous intervals, a plot.

    python -m pipeline.detect clip.mp4 --checkpoint runs/ucf
    python -m pipeline.detect videos/ more.avi --checkpoint runs/ucf/best.pt --out detections --threshold 0.6
    python -m pipeline.detect videos/ --checkpoint runs/ucf --backend ray --address auto

For each video: I3D features with the *same* extractor the checkpoint was trained on (network,
weights, crops, resize, read from the checkpoint's ``extractor`` record; a flag that contradicts
it is refused), then the trained model, then, in ``--out`` (default ``detections/``), named by the
video's key (its path relative to the input folder without extension, ``cam1/x`` for
``videos/cam1/x.mp4``; a file given directly: its stem; a frame folder: the folder's name):

* ``<video>.scores.csv``     ``frame,time_s,score``: one row per decoded frame, ``time_s`` the frame's
  own presentation time from the first frame (variable frame rates included). Clip c covers frames
  16c..16c+15 (as in evaluation); the padded part of the last clip (tail 'pad') is dropped, so the
  file has exactly as many rows as the video has frames. With tail 'drop' the frames after the last
  full clip take the last clip's score.
* ``<video>.intervals.csv``  ``start_frame,end_frame,start_s,end_s,duration_s,peak_score,peak_frame,
  mean_score``: runs of frames scored >= ``--threshold`` (default 0.5), runs closer than
  ``--merge-gap`` seconds (default 0.5) joined, then runs shorter than ``--min-duration`` seconds
  (default 1.0) dropped, all measured on the frames' times. Frames are 0-based with an inclusive end;
  ``start_s`` is the first frame's time, ``end_s`` the end of the last frame (``(end_frame + 1) / fps``
  at a constant rate).
* ``<video>.png``            the score over time with the detected intervals marked (paper Fig. 3).
* ``summary.json``           settings, extractor and per-video results of every video of the folder,
  rewritten after each video. A rerun skips videos finished with the same checkpoint and settings
  (after Ctrl-C, or with more videos added) and refuses results of other settings without
  ``--overwrite``.
* ``review.html``            (unless ``--no-html``) every video of the folder in a browser: the video,
  its curve with a playhead, the intervals, a live threshold slider (:mod:`pipeline.review`);
  rebuilt from ``summary.json`` on every run.

Long videos: the model's graph is dense over a video's clips, so memory grows with the square of
its length. Videos longer than ``--window`` clips (default 2048, ~18 minutes at 30 fps) are scored
in windows of that many clips overlapping by ``--overlap`` (default 0.5); a clip's score is the
mean over the windows that hold it. Shorter videos are scored exactly as ``pipeline.evaluate``
scores a test video (one graph over the whole video).

On a Ray cluster (``--backend ray --address auto``): every video's features are first extracted by
Ray actors with ``pipeline.extract``'s Ray backend into ``<out>/features/`` (with its manifest;
finished videos are reused on a rerun), then scored here by the same code as the local path.

Exit code: 0 when every video has results, 1 when any video failed (the others still get theirs)
or has a warning (truncated, shorter than one clip, rotation not applied: as ``pipeline.extract``'s
``partial``), 2 when nothing could run (missing or incompatible checkpoint, bad flags, unwritable
``--out``, no GPU for ``--device cuda``, results of other settings).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import timeline
from .cli import HelpFormatter, bars_enabled, check_device, interrupted, progress, user_message
from .evaluate import load_model, score_clips
from .io import atomic_write_json, atomic_write_text
from .metrics import CLIP_LEN
# Re-exported: what detect writes, pipeline.timeline also reads (the review page uses it directly).
from .timeline import (DEFAULT_MERGE_GAP, DEFAULT_MIN_DURATION, DEFAULT_THRESHOLD,  # noqa: F401
                       INTERVAL_FIELDS, find_intervals, frame_scores, intervals_csv, read_intervals_csv,
                       read_scores_csv, scores_csv)
from .video import COVERAGES, DEFAULT_IMAGE_FPS, EMPTY_FOLDER, coverage_of, coverage_text, empty_folders

DEFAULT_WINDOW = 2048           # clips
DEFAULT_OVERLAP = 0.5

#: How the network is computed, not what it computes: chosen here (--runtime, --precision), never
#: taken from the checkpoint's record nor a reason to refuse it (torch / onnxruntime / OpenVINO,
#: fp32 / bf16: features within the accuracy guard of issue 24, cosine >= 0.999 to fp32 and Ped2 AUC
#: within 0.005; bench/RESULTS.md "Stage 1 on CPU").
RUNTIME_FLAGS = ("runtime", "precision")
#: FeatureExtractor arguments never taken from the checkpoint's record: where to run, how fast;
#: weights, random_init and seed are resolved on their own (resolve_extractor).
#: 'crops' is derived: the record's coverage (coverage_of: from crops in older records) and grid give it.
NOT_FROM_RECORD = ("self", "device", "batch_size", "threads", "channels_last", "weights", "random_init", "seed",
                   "crops", *RUNTIME_FLAGS)
#: detect flag -> FeatureExtractor argument / meta key
EXTRACTOR_FLAGS = {"profile": "profile", "weights": "weights", "random_init": "random_init",
                   "seed": "seed", "coverage": "coverage", "grid": "grid", "crops": "crops", "short_side": "short_side",
                   "crop_size": "crop_size", "norm": "norm", "tail": "tail"}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or incompatible with the requested extraction."""


# ----------------------------------------------------------------------------- scoring

def window_starts(n_clips: int, window: int, overlap: float) -> list[int]:
    """First clip of each window: stride ``window - round(window * overlap)``, the last window
    ending exactly at the last clip. One window (start 0) when ``n_clips <= window``."""
    if window < 1:
        raise ValueError(f"--window must be >= 1, got {window}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap}")
    if n_clips <= window:
        return [0]
    stride = max(1, window - int(round(window * overlap)))
    starts = list(range(0, n_clips - window, stride))
    starts.append(n_clips - window)
    return starts


@torch.no_grad()
def score_windowed(model, feats: np.ndarray, device: torch.device | str = "cpu",
                   window: int = DEFAULT_WINDOW, overlap: float = DEFAULT_OVERLAP,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Clip scores of one video with the graph bounded to ``window`` clips.

    feats: (clips, crops, D) -> (clips,) float64. ``clips <= window``: exactly
    :func:`pipeline.evaluate.score_clips` (one graph over the video). Longer: overlapping windows,
    each scored by ``score_clips`` (peak memory ~ crops * window^2 per adjacency instead of
    crops * clips^2), a clip's score the mean over the windows holding it.
    """
    n = feats.shape[0]
    starts = window_starts(n, window, overlap)
    if len(starts) == 1:
        return score_clips(model, feats, device)
    total = np.zeros(n, np.float64)                                        # (clips,)
    count = np.zeros(n, np.float64)
    for s in starts:
        total[s:s + window] += score_clips(model, feats[s:s + window], device)
        count[s:s + window] += 1
        if progress:
            progress(1)
    return total / count


# ----------------------------------------------------------------------------- extractor settings

def resolve_extractor(trained: dict | None, flags: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """FeatureExtractor arguments for detection from the checkpoint's extractor record.

    ``trained``: the checkpoint's ``extractor`` meta (None when unknown); ``flags``: the user's
    extractor flags, None where not given. A flag that contradicts the record raises
    CheckpointError. Returns (kwargs, notes for the user).
    """
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    runtime = {k: given.pop(k) for k in RUNTIME_FLAGS if k in given}
    notes: list[str] = []
    if trained is not None:
        trained = dict(trained, coverage=coverage_of(trained))   # older records: from crops
    if trained is None:
        notes.append("the checkpoint does not record how its training features were extracted; "
                     "extracting with " + (", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
                                           or "the extractor's defaults")
                     + " -- make sure this matches its training features")
        return dict(given, **runtime), notes
    bad = []
    for flag, value in given.items():
        if flag == "weights":
            continue  # compared by sha256 once loaded
        rec = trained.get(EXTRACTOR_FLAGS[flag])
        if flag == "seed" and not trained.get("random_init"):
            continue
        if rec is not None and rec != value:
            bad.append(f"--{flag.replace('_', '-')} {value} (trained with {rec})")
    if bad:
        raise CheckpointError("the requested extraction does not match the features the checkpoint was "
                              "trained on: " + "; ".join(bad) + ". Scores of features from another "
                              "extractor are meaningless; drop these flags (detect reads the settings "
                              "from the checkpoint) or use a checkpoint trained on such features.")
    import inspect
    from .extractor import FeatureExtractor

    kw: dict[str, Any] = {}     # every recorded setting the extractor takes (a new one needs no change here)
    for key in inspect.signature(FeatureExtractor.__init__).parameters:
        if key not in NOT_FROM_RECORD and trained.get(key) is not None:
            kw[key] = trained[key]
    kw.update(runtime)
    if trained.get("random_init"):
        if given.get("weights"):
            raise CheckpointError(f"--weights {given['weights']}: the checkpoint was trained on features of an "
                                  f"I3D with random weights (seed {trained.get('seed', 0)}), not on pretrained ones")
        kw["random_init"] = True
        kw["seed"] = trained.get("seed", given.get("seed", 0))
        if trained.get("seed") is None:
            notes.append("the checkpoint's extractor record has no seed for its random weights; assuming "
                         f"seed {kw['seed']}")
    else:
        path = given.get("weights") or trained.get("weights")
        if path and Path(path).is_file():
            kw["weights"] = str(path)
        elif given.get("weights"):
            raise CheckpointError(f"--weights {path}: file not found")
        # else: the published file through the torch hub cache; its sha256 is checked below
    return kw, notes


def check_extractor(trained: dict | None, meta: dict) -> None:
    """Raise CheckpointError when the built extractor's meta differs from the training record in any
    recorded setting (all of its keys but featstore.NOT_COMPARED; a key the record lacks is not
    compared, as in records written before that setting existed)."""
    from .featstore import record_diff

    if trained is None:
        return
    trained = dict(trained, coverage=coverage_of(trained))   # older records: from crops
    rec = {k: v for k, v in trained.items() if v is not None and k != "videos_described" and k not in RUNTIME_FLAGS}
    diff = record_diff(rec, {k: meta.get(k) for k in rec})
    if diff:
        raise CheckpointError("the extractor differs from the one the checkpoint was trained with ("
                              + "; ".join(f"{k}: trained {a}, now {b}" for k, (a, b) in diff.items())
                              + "). For weights: pass --weights with the same file "
                              "(sha256 " + str(trained.get("weights_sha256")) + ").")


# ----------------------------------------------------------------------------- output

def output_paths(out: Path, key: str) -> dict[str, Path]:
    """The per-video files of ``key`` (the video's path relative to its input folder, without
    extension: ``cam1/x`` -> ``out/cam1/x.scores.csv``)."""
    return {"scores": out / f"{key}.scores.csv", "intervals": out / f"{key}.intervals.csv",
            "plot": out / f"{key}.png"}


def format_table(rows: list[dict]) -> str:
    """The terminal summary: one line per video."""
    head = f"{'video':<32} {'frames':>7} {'length':>8} {'max':>6} {'n':>3}  intervals (s, peak)"
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["video"][:32]
        if r["status"] != "ok":
            lines.append(f"{name:<32} ERROR: {r['error']}")
            continue
        ivs = ", ".join(f"{iv['start_s']:.1f}-{iv['end_s']:.1f} ({iv['peak_score']:.2f})" for iv in r["intervals"][:3])
        if len(r["intervals"]) > 3:
            ivs += f", ... (+{len(r['intervals']) - 3})"
        lines.append(f"{name:<32} {r['frames']:>7} {r['duration_s']:>7.1f}s {r['max_score']:>6.3f} "
                     f"{len(r['intervals']):>3}  {ivs or '-'}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- features on Ray

def stale_features(feat_dir: Path, videos: Sequence[Path], keys: Sequence[str] | None = None) -> list[Path]:
    """Feature files of ``feat_dir`` that do not belong to ``videos`` as they are now: made from
    another file with the same key (manifest ``path``), or older than the video. Returns them."""
    from .featstore import read_manifest

    rows = read_manifest(feat_dir)
    stale = []
    for v, key in zip(videos, keys or [v.stem for v in videos]):
        f = feat_dir / f"{key}.npy"
        if not f.exists():
            continue
        row = rows.get(key) or {}
        if row.get("path") != str(v) or v.stat().st_mtime > f.stat().st_mtime:
            stale.append(f)
    return stale


def extract_on_ray(inputs: Sequence[Path], feat_dir: Path, extractor_kwargs: dict[str, Any],
                   check: Callable[[dict], None], address: str | None = None,
                   quiet: bool = False, image_fps: float | None = None
                   ) -> tuple[dict, Callable[[Path, str], tuple[np.ndarray, dict]]]:
    """Extract the features of ``inputs`` on a Ray cluster into ``feat_dir`` (with its manifest),
    exactly as ``python -m pipeline.extract --backend ray`` does (:func:`pipeline.raybackend.run_ray`).

    ``check(meta)`` runs on the actors' extractor meta before any video is handed out. Finished
    features of the same files are reused on a rerun; features of another file with the same name,
    or older than the video, are extracted again. Returns (extractor meta, load) where
    ``load(video) -> (features (clips, crops, D), info)`` reads one video's result and raises
    VideoError for a video that failed, like ``FeatureExtractor.extract``. ``inputs`` are the
    input arguments (files or folders); videos are keyed as ``pipeline.extract`` keys them.
    """
    from .featstore import SettingsMismatch, check_writable, compact_manifest, read_manifest
    from .i3d import WeightsError
    from .raybackend import RayRunError, run_ray
    from .video import VideoError

    check_writable(feat_dir)
    from .video import find_keyed_videos

    present = [p.resolve() for p in inputs if p.exists()]  # absolute: actors run elsewhere
    keyed = find_keyed_videos(present)
    for f in stale_features(feat_dir, [v for v, _ in keyed], [k for _, k in keyed]):
        if not quiet:
            print(f"note: {f} was made from another file or before the video changed; extracting it again")
        f.unlink()                                          # its manifest row is superseded when redone
    seen: dict[str, Any] = {}

    def check_and_keep(meta: dict) -> None:
        check(meta)
        seen["meta"] = meta

    try:
        run_ray(present, feat_dir, extractor_kwargs, address=address, progress=bars_enabled(quiet),
                check_meta=check_and_keep, image_fps=image_fps)
    except SettingsMismatch as e:
        raise CheckpointError(f"{e} ({feat_dir} holds features of another extractor: remove it or "
                              f"choose another --out)") from None
    except WeightsError as e:
        raise CheckpointError(f"cannot build the feature extractor the checkpoint needs ({e})") from e
    except RayRunError as e:                                # finished videos are kept; others fail below
        print(f"error: {e}", file=sys.stderr)
    if "meta" not in seen:
        raise ValueError(f"Ray did not start an extractor (address {address or 'local'})")
    compact_manifest(feat_dir)
    rows = read_manifest(feat_dir)

    def load(path: Path, key: str) -> tuple[np.ndarray, dict]:
        row = rows.get(key)
        if not path.exists():
            raise VideoError(f"{path}: no such file or directory")
        if row is None or row.get("path") != str(path.resolve()):
            raise VideoError(f"{path}: not extracted on Ray (see the errors above)")
        if row.get("status") not in ("ok", "partial"):
            raise VideoError(row.get("error") or f"{path}: extraction failed on Ray")
        return np.load(feat_dir / f"{key}.npy"), row

    return seen["meta"], load


# ----------------------------------------------------------------------------- run

#: Settings a finished video's results depend on: a rerun with the same ones skips it.
RESUME_KEYS = ("checkpoint_sha256", "threshold", "min_duration_s", "merge_gap_s", "window_clips", "overlap",
               "image_fps", "extractor")


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def gather_inputs(videos: Sequence[str | Path]) -> tuple[list[tuple[Path, str]], list[tuple[Path, str, Path]]]:
    """(video, key) of every input: files as given (even with an odd extension; key: the stem),
    folders searched for videos and frame folders (key: the path relative to the folder, e.g.
    ``cam1/x``), plus the duplicates (video, key, first video with that key), which fail alone."""
    from .video import find_videos, video_key

    found: list[tuple[Path, str]] = []
    for v in videos:
        p = Path(v)
        if p.is_dir():
            vids = find_videos(p)          # none: an empty folder, reported by detect() as failed
            found.extend((f, video_key(f, p)) for f in vids)
        else:
            found.append((p, p.stem))                       # a missing file fails as that video
    seen: dict[str, Path] = {}
    uniq, dups = [], []
    for p, key in found:
        if key in seen:
            if seen[key].resolve() != p.resolve():
                dups.append((p, key, seen[key]))
            continue
        seen[key] = p
        uniq.append((p, key))
    return uniq, dups


def read_summary(out: Path) -> dict:
    """The folder's summary.json (empty dict when missing or unreadable)."""
    path = out / "summary.json"
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
        return summary if isinstance(summary, dict) else {}
    except ValueError:
        return {}


def is_finished(row: dict | None, path: Path, files: dict[str, Path], resume: dict) -> bool:
    """A video of an earlier run in this folder whose results still hold: status ok, same source
    file (not changed since), same settings, every file present."""
    if not row or row.get("status") != "ok" or row.get("path") != str(path):
        return False
    if any(row.get("resume", {}).get(k) != resume.get(k) for k in RESUME_KEYS):
        return False
    if not all(f.exists() for f in files.values()):
        return False
    try:
        return path.stat().st_mtime <= float(row.get("end_unix", 0))
    except OSError:
        return False


#: How a refused rerun names a setting of RESUME_KEYS: its flag.
RESUME_FLAGS = {"checkpoint_sha256": "--checkpoint (another file or changed since)", "threshold": "--threshold",
                "min_duration_s": "--min-duration", "merge_gap_s": "--merge-gap", "window_clips": "--window",
                "overlap": "--overlap", "image_fps": "--fps", "extractor": "the extractor record of the checkpoint"}


def why_not_finished(row: dict, path: Path, resume: dict) -> str:
    """What differs between an earlier result and this run, for the refusal of a rerun."""
    if row.get("path") != str(path):
        return f"made from another file ({row.get('path')}, now {path})"
    before = row.get("resume", {})
    diff = [f"{RESUME_FLAGS.get(k, k)}: {before.get(k)} then, {resume.get(k)} now"
            if k not in ("checkpoint_sha256", "extractor") else RESUME_FLAGS[k]
            for k in RESUME_KEYS if before.get(k) != resume.get(k)]
    if diff:
        return "settings differ: " + "; ".join(diff)
    try:
        if path.stat().st_mtime > float(row.get("end_unix", 0)):
            return f"{path} changed after it was scored"
    except OSError:
        pass
    return "some of its output files are missing"


def detect(videos: Sequence[str | Path], checkpoint: str | Path, out: str | Path = "detections",
           threshold: float = DEFAULT_THRESHOLD, min_duration: float = DEFAULT_MIN_DURATION,
           merge_gap: float = DEFAULT_MERGE_GAP, window: int = DEFAULT_WINDOW,
           overlap: float = DEFAULT_OVERLAP, device: str = "auto", overwrite: bool = False,
           extractor_flags: dict[str, Any] | None = None, batch_size: int = 8, plot: bool = True,
           quiet: bool = False, html: bool = True, backend: str = "local",
           address: str | None = None, image_fps: float = DEFAULT_IMAGE_FPS) -> dict:
    """Run detection on ``videos`` and write the outputs; returns the summary dict.

    backend: "local" (features extracted here, one video after the other) or "ray" (all videos
    extracted first on a Ray cluster at ``address`` by :func:`extract_on_ray`, into
    ``<out>/features``); scoring and every output are the same either way.

    Resumable and incremental: ``summary.json`` is rewritten after every video, and a video whose
    results are there with the same checkpoint and settings (and whose files exist) is skipped, so
    a rerun after Ctrl-C, or with more videos, does only what is missing. Outputs of other settings
    are refused unless ``overwrite``. The summary and review page cover every finished video.
    Raises CheckpointError / FileExistsError / FileNotFoundError / ValueError when nothing can run;
    a video that fails is reported in the summary (status 'error') and the others go on.
    """
    from .extract import FeatureExtractor
    from .featstore import check_writable
    from .i3d import WeightsError
    from .jobs import extract_features
    from .video import VideoError

    if backend not in ("local", "ray"):
        raise ValueError(f"--backend must be local or ray, not {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"--address {address}: only used with --backend ray")
    if backend == "ray":
        from .raybackend import import_ray
        import_ray()                                        # before anything expensive

    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    if min_duration < 0 or merge_gap < 0:
        raise ValueError("--min-duration and --merge-gap must be >= 0")
    if not image_fps > 0:
        raise ValueError(f"--fps must be > 0, got {image_fps}")
    window_starts(1, window, overlap)                       # validates window / overlap
    check_device(device)
    out = Path(out)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))

    inputs, dups = gather_inputs(videos)
    empty = empty_folders(videos, exclude=[out])            # failed by name, the others go on
    if not inputs:
        if empty:
            raise FileNotFoundError(f"{empty[0]}: {EMPTY_FOLDER}"
                                    + (f" (and {len(empty) - 1} more such folder(s))" if len(empty) > 1 else ""))
        raise ValueError("no videos given")
    if not any(p.exists() for p, _ in inputs):              # before the checkpoint and the weights
        raise FileNotFoundError(f"{inputs[0][0]}: no such file or directory"
                                + (f" (nor any of the other {len(inputs) - 1} inputs)" if len(inputs) > 1 else ""))
    check_writable(out, create=False)                       # before any work (ValueError: one line)

    # checkpoint and extractor
    try:
        model, meta = load_model(checkpoint, dev)
    except FileNotFoundError as e:
        raise CheckpointError(str(e)) from e
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    trained = meta.get("extractor")
    kw, notes = resolve_extractor(trained, dict(extractor_flags or {}))
    settings = dict(checkpoint=meta["path"], checkpoint_epoch=meta.get("epoch"), threshold=threshold,
                    min_duration_s=min_duration, merge_gap_s=merge_gap, window_clips=window, overlap=overlap,
                    image_fps=image_fps)

    # what is finished, what would be overwritten (before the extractor is built)
    previous = {v["video"]: v for v in read_summary(out).get("videos", []) if isinstance(v, dict) and "video" in v}
    resume = dict(checkpoint_sha256=file_sha256(meta["path"]), extractor=trained,
                  **{k: settings[k] for k in RESUME_KEYS if k in settings})
    files_of = {key: output_paths(out, key) for _, key in inputs}
    if not plot:
        for files in files_of.values():
            files.pop("plot")
    todo, skipped, clash = [], [], []
    for path, key in inputs:
        row = previous.get(key)
        if not overwrite and is_finished(row, path, files_of[key], resume):
            skipped.append(key)
            continue
        todo.append((path, key))
        have = [f for f in files_of[key].values() if f.exists()]
        if have and not overwrite and row is not None and row.get("status") == "ok":
            clash.append((str(have[0]), why_not_finished(row, path, resume)))   # other settings or another file
    if clash:
        raise FileExistsError(f"{len(clash)} video(s) have results in {out} that this run would replace, e.g. "
                              f"{clash[0][0]} ({clash[0][1]}); pass --overwrite to replace them or choose another --out")

    def check(fmeta: dict) -> None:                         # the extractor against the checkpoint
        check_extractor(trained, fmeta)
        if fmeta.get("feature_dim", model.in_dim) != model.in_dim:
            raise CheckpointError(f"{meta['path']}: the model expects {model.in_dim}-d features, the extractor "
                                  f"gives {fmeta.get('feature_dim')}")

    if backend == "ray":
        fmeta: dict = {}
        if todo:        # every video of the inputs: finished features in OUT/features are reused
            fmeta, load = extract_on_ray([Path(v) for v in videos], out / "features",
                                         dict(kw, batch_size=batch_size), check, address, quiet, image_fps)
    else:
        try:
            fx = FeatureExtractor(device=str(dev), batch_size=batch_size, **kw)
        except (WeightsError, ValueError) as e:
            raise CheckpointError(f"cannot build the feature extractor the checkpoint needs ({e})") from e
        fmeta = fx.meta

        def load(path: Path, key: str) -> tuple[np.ndarray, dict]:
            return extract_features(fx, path, image_fps)
        check(fmeta)
    if not fmeta:                                           # Ray and nothing to do: the record we have
        fmeta = read_summary(out).get("extractor") or {}
    random_weights = bool(fmeta.get("random_init"))
    if random_weights:
        notes.append("features come from an I3D with RANDOM weights (as this checkpoint was trained); "
                     "fine for the demo and tests, not for real footage")
    if not quiet:
        print(f"checkpoint {meta['path']} (epoch {meta.get('epoch')}); extractor {fmeta.get('profile')} "
              f"{'random weights' if random_weights else fmeta.get('weights')}, {coverage_text(fmeta)} "
              f"from short side {fmeta.get('short_side')}, device {dev}"
              + (f"; features extracted on Ray into {out / 'features'}" if backend == "ray" else ""))
        for n in notes:
            print(f"note: {n}")
        if skipped:
            print(f"{len(skipped)} video(s) already have results with these settings (kept; --overwrite redoes them)")

    settings.update(random_weights=random_weights, extractor=fmeta, notes=notes)
    summary_path = out / "summary.json"
    rows: list[dict] = []

    def save_summary() -> dict:
        for r in rows:
            previous[r["video"]] = r
        allrows = list(previous.values())
        summary = dict(settings, videos=allrows, n_ok=sum(r.get("status") == "ok" for r in allrows),
                       n_failed=sum(r.get("status") != "ok" for r in allrows))
        atomic_write_json(summary_path, summary)
        return summary

    for p, key, first in dups:                              # the same key from two inputs
        rows.append({"video": key, "path": str(p), "status": "error", "seconds": 0.0,
                     "error": f"{p}: same output name {key}.* as {first} (pass their common parent folder "
                              f"instead, so that the names keep their folders)"})
    for folder in empty:
        rows.append({"video": folder.as_posix(), "path": str(folder), "status": "error", "seconds": 0.0,
                     "error": f"{folder}: {EMPTY_FOLDER}"})
    stopped = True                              # until the loop ends normally (Ctrl-C, ...)
    try:
        for path, key in progress(todo, quiet or len(todo) < 2, desc="detecting", unit="video"):
            t0 = time.time()
            row: dict[str, Any] = {"video": key, "path": str(path), "status": "ok", "error": None}
            warnings: list[str] = []
            try:
                feats, info = load(path, key)                                # (clips, crops, 2048)
                fps = float(info.get("fps") or 0.0)
                if fps <= 0:
                    warnings.append("unknown frame rate; times assume 25 fps")
                    fps = 25.0
                n_frames = int(info["frames"])
                times = info.get("times") if info.get("vfr") else None       # the frames' own times
                t = timeline.frame_times(n_frames, fps, times)
                clip_s = score_windowed(model, feats, dev, window, overlap)     # (clips,)
                fs = frame_scores(clip_s, n_frames, fmeta.get("clip_len", CLIP_LEN))   # (frames,)
                ivs = find_intervals(fs, fps, threshold, min_duration, merge_gap, times)
                files = dict(files_of[key])
                atomic_write_text(files["scores"], scores_csv(fs, fps, times))
                atomic_write_text(files["intervals"], intervals_csv(ivs))
                if plot:
                    from .plots import save_score_plot
                    save_score_plot(files["plot"], fs, fps, detected=[(i["start_frame"], i["end_frame"]) for i in ivs],
                                    threshold=threshold, times=times,
                                    title=f"{key}" + ("  [random I3D weights]" if random_weights else ""))
                duration = float(timeline.frame_ends(t, fps)[-1]) if times is not None else n_frames / fps
                row.update(frames=n_frames, fps=fps, clips=int(len(clip_s)), vfr=bool(times is not None),
                           duration_s=round(duration, 3), windows=len(window_starts(len(clip_s), window, overlap)),
                           max_score=round(float(fs.max()), 6), mean_score=round(float(fs.mean()), 6),
                           rotation=info.get("rotation", 0), rotation_applied=info.get("rotation_applied", True),
                           intervals=ivs, files={k: str(v) for k, v in files.items()})
                if info.get("frame_folder"):
                    row["frame_folder"] = True
                if info.get("status") == "partial":
                    warnings.append(f"{info.get('error')}")
                if info.get("warning"):
                    warnings.append(info["warning"])
            except (VideoError, OSError, RuntimeError, ValueError) as e:
                row.update(status="error", error=str(e) if str(path) in str(e) else f"{path}: {e}")
            if warnings:
                row["warning"] = "; ".join(warnings)
            row["seconds"] = round(time.time() - t0, 2)
            row["settings"] = {k: settings[k] for k in ("checkpoint", "threshold", "min_duration_s", "merge_gap_s")}
            row["resume"] = resume
            row["end_unix"] = round(time.time(), 3)
            rows.append(row)
            save_summary()                                  # a finished video survives Ctrl-C
        stopped = False
    finally:
        summary = save_summary()
        if html:                                # the review page of the whole folder (pipeline/review.py)
            from .review import write_detect_review
            try:
                summary["review"] = str(write_detect_review(out))
            except Exception:
                if not stopped:                 # while Ctrl-C unwinds, the interruption is the news
                    raise
    if not quiet:
        if rows:
            print(format_table(rows))
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:
            print(f"wrote scores, intervals{' and plots' if plot else ''} of {len(ok)} video(s) and {summary_path}"
                  + (f"; review page {summary['review']}" if html else ""))
        elif rows:
            print(f"no video got results this run (see the errors); {summary_path} updated")
        else:
            print(f"nothing to do: every video already has results in {out}"
                  + (f"; review page {summary['review']}" if html else ""))
    summary["this_run"] = rows
    summary["skipped"] = skipped
    return summary


# ----------------------------------------------------------------------------- CLI

def add_extractor_flags(p: argparse.ArgumentParser, precision_default: str = "fp32") -> None:
    """The extractor flags of detect and watch (EXTRACTOR_FLAGS: default None = as the checkpoint records)
    and the runtime flags (RUNTIME_FLAGS: this machine's choice)."""
    from .runtimes import RUNTIMES

    g = p.add_argument_group("extractor (default: as recorded in the checkpoint; a contradicting value is refused)")
    g.add_argument("--weights", default=None, help="I3D weights file (needed when the recorded path is not on this machine "
                                                   "and the file is not in the torch hub cache; checked by sha256)")
    g.add_argument("--profile", choices=["32x2", "8x8", "inception"], default=None, help="I3D network")
    g.add_argument("--random-init", action="store_true", default=None,
                   help="random I3D weights (only for checkpoints that record no extractor)")
    g.add_argument("--seed", type=int, default=None, help="seed of the random weights")
    g.add_argument("--coverage", choices=list(COVERAGES), default=None,
                   help="the whole frame in regions, the whole frame, the centre crop or ten crops")
    g.add_argument("--grid", default=None, help="ROWSxCOLS regions (--coverage grid)")
    g.add_argument("--crops", type=int, choices=[1, 10], default=None, help="centre crop or ten crops (older spelling)")
    g.add_argument("--short-side", type=int, default=None, help="frames resized to this short side (pixels)")
    g.add_argument("--crop-size", type=int, default=None, help="square crop side (pixels; centre / ten crops)")
    g.add_argument("--norm", default=None, choices=["kinetics", "minus1to1"], help="pixel normalisation")
    g.add_argument("--tail", default=None, choices=["pad", "drop"],
                   help="last partial clip: pad (repeat the last frame) or drop")
    r = p.add_argument_group("how the network runs (free to choose: not compared with the checkpoint)")
    r.add_argument("--runtime", default="auto", choices=list(RUNTIMES),
                   help="auto = the fastest installed for the precision (CPU: openvino, then onnxruntime for fp32, then torch; GPU: torch); "
                        "onnxruntime / openvino are optional (pip install onnxruntime openvino)")
    r.add_argument("--precision", default=precision_default, choices=["fp32", "bf16", "auto"],
                   help="network precision; auto = bf16 on a GPU or a CPU with native bf16 (avx512_bf16 / AMX)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.detect",
        description="Score your own videos with a trained model: per-frame anomaly scores (CSV), anomalous "
                    "intervals (CSV) and a score plot per video, plus summary.json. Features are extracted "
                    "with the same I3D settings the checkpoint was trained on (read from the checkpoint).",
        formatter_class=HelpFormatter)
    p.add_argument("videos", nargs="+", help="video files, or folders searched for videos and frame folders "
                                             "(results keep the folders below them: cam1/x.mp4 -> OUT/cam1/x.*)")
    p.add_argument("--checkpoint", required=True,
                   help="run directory (best.pt if validation-selected, else model.pt) or checkpoint file")
    p.add_argument("--out", default="detections", help="output folder")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="a frame is anomalous when its score >= this")
    p.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION,
                   help="drop anomalous intervals shorter than this many seconds")
    p.add_argument("--merge-gap", type=float, default=DEFAULT_MERGE_GAP,
                   help="join intervals separated by less than this many seconds")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help="score videos longer than this many 16-frame clips in overlapping windows, bounding memory")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP, help="overlap of consecutive windows, in [0, 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=8, help="clips per I3D forward")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every video, replacing its files (without it, videos finished with the same "
                        "settings are skipped and results of other settings are refused)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNGs")
    p.add_argument("--no-html", dest="html", action="store_false",
                   help="skip review.html (written by default: the folder's videos, curves and intervals in a browser)")
    p.add_argument("--fps", type=float, default=DEFAULT_IMAGE_FPS,
                   help="frame rate of frame folders (numbered images carry no timestamps); videos use their own")
    p.add_argument("--quiet", action="store_true", help="no progress or table")
    r = p.add_argument_group('Ray (pip install -e ".[ray]")')
    r.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: extract features in this process; ray: extract them first on a Ray cluster "
                        "(as python -m pipeline.extract --backend ray) into OUT/features, reused on rerun, "
                        "then score here")
    r.add_argument("--address", default=None,
                   help="Ray cluster: auto or HOST:PORT (default: start Ray on this machine); OUT and the "
                        "videos must be on a file system every node sees")
    add_extractor_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    flags = {k: getattr(a, k) for k in (*EXTRACTOR_FLAGS, *RUNTIME_FLAGS)}
    try:
        summary = detect(a.videos, a.checkpoint, a.out, a.threshold, a.min_duration, a.merge_gap, a.window,
                         a.overlap, a.device, a.overwrite, flags, a.batch_size, a.plot, a.quiet, a.html,
                         a.backend, a.address, a.fps)
    except KeyboardInterrupt:
        return interrupted()
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    failed = [r for r in summary["this_run"] if r["status"] != "ok"]
    warned = [r for r in summary["this_run"] if r["status"] == "ok" and r.get("warning")]
    for r in warned:
        print(f"warning: {r['warning']}", file=sys.stderr)
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    return 1 if failed or warned else 0


if __name__ == "__main__":
    sys.exit(main())
