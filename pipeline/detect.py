"""Anomalies in your own videos: raw video -> per-frame scores, anomalous intervals, a plot.

    python -m pipeline.detect clip.mp4 --checkpoint runs/ucf
    python -m pipeline.detect videos/ more.avi --checkpoint runs/ucf/best.pt --out detections --threshold 0.6
    python -m pipeline.detect videos/ --checkpoint runs/ucf --backend ray --address auto

For each video: I3D features with the *same* extractor the checkpoint was trained on (network,
weights, crops, resize, read from the checkpoint's ``extractor`` record; a flag that contradicts
it is refused), then the trained model, then, in ``--out`` (default ``detections/``):

* ``<video>.scores.csv``     ``frame,time_s,score``: one row per decoded frame. Clip c covers frames
  16c..16c+15 (as in evaluation); the padded part of the last clip (tail 'pad') is dropped, so the
  file has exactly as many rows as the video has frames. With tail 'drop' the frames after the last
  full clip take the last clip's score.
* ``<video>.intervals.csv``  ``start_frame,end_frame,start_s,end_s,duration_s,peak_score,peak_frame,
  mean_score``: runs of frames scored >= ``--threshold`` (default 0.5), runs closer than
  ``--merge-gap`` seconds (default 0.5) joined, then runs shorter than ``--min-duration`` seconds
  (default 1.0) dropped. Frames are 0-based with an inclusive end; ``start_s = start_frame / fps``,
  ``end_s = (end_frame + 1) / fps`` (the end of the last frame).
* ``<video>.png``            the score over time with the detected intervals marked (paper Fig. 3).
* ``summary.json``           settings, extractor and per-video results (merged with an earlier
  summary in the same folder). Existing per-video files are never overwritten without ``--overwrite``.
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

Exit code: 0 when every video has results, 1 when any video failed (the others still get theirs),
2 when nothing could run (missing or incompatible checkpoint, bad flags, outputs that exist).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .cli import HelpFormatter, bars_enabled, interrupted, progress, user_message
from .evaluate import load_model, score_clips
from .io import atomic_write_json, atomic_write_text
from .metrics import CLIP_LEN

DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_DURATION = 1.0      # seconds
DEFAULT_MERGE_GAP = 0.5         # seconds
DEFAULT_WINDOW = 2048           # clips
DEFAULT_OVERLAP = 0.5

#: Extractor settings that must agree between training features and detection (the weights file's
#: path may differ between machines; its sha256 may not). 'seed' only matters for random weights.
COMPARED_KEYS = ("profile", "random_init", "weights_sha256", "crops", "short_side", "crop_size",
                 "norm", "tail", "clip_len", "feature_dim", "seed", "precision")
#: detect flag -> FeatureExtractor argument / meta key
EXTRACTOR_FLAGS = {"profile": "profile", "weights": "weights", "random_init": "random_init",
                   "seed": "seed", "crops": "crops", "short_side": "short_side",
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


def frame_scores(clip_scores: np.ndarray, n_frames: int, clip_len: int = CLIP_LEN) -> np.ndarray:
    """(clips,) -> (n_frames,): clip c's score on frames c*clip_len .. c*clip_len + clip_len - 1.

    Frames of a padded last clip beyond ``n_frames`` are dropped; frames after the last clip
    (tail 'drop') take the last clip's score.
    """
    s = np.repeat(np.asarray(clip_scores, np.float64), clip_len)[:n_frames]
    if len(s) < n_frames:
        s = np.concatenate([s, np.full(n_frames - len(s), s[-1] if len(s) else 0.0)])
    return s


def find_intervals(scores: np.ndarray, fps: float, threshold: float = DEFAULT_THRESHOLD,
                   min_duration: float = DEFAULT_MIN_DURATION,
                   merge_gap: float = DEFAULT_MERGE_GAP) -> list[dict[str, Any]]:
    """Anomalous intervals of a per-frame score: runs >= threshold, gaps < merge_gap s joined,
    runs < min_duration s dropped. Returns dicts (see the module doc), in time order."""
    scores = np.asarray(scores, np.float64)                                # (F,)
    above = scores >= threshold
    if not above.any():
        return []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))   # inclusive
    merged: list[list[int]] = []
    for s, e in runs:
        if merged and (s - merged[-1][1] - 1) < merge_gap * fps:
            merged[-1][1] = int(e)
        else:
            merged.append([int(s), int(e)])
    out = []
    for s, e in merged:
        if (e - s + 1) < min_duration * fps - 1e-9:
            continue
        seg = scores[s:e + 1]
        peak = int(s + np.argmax(seg))
        out.append(dict(start_frame=s, end_frame=e, start_s=round(s / fps, 4), end_s=round((e + 1) / fps, 4),
                        duration_s=round((e - s + 1) / fps, 4), peak_score=round(float(seg.max()), 6),
                        peak_frame=peak, mean_score=round(float(seg.mean()), 6)))
    return out


# ----------------------------------------------------------------------------- extractor settings

def resolve_extractor(trained: dict | None, flags: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """FeatureExtractor arguments for detection from the checkpoint's extractor record.

    ``trained``: the checkpoint's ``extractor`` meta (None when unknown); ``flags``: the user's
    extractor flags, None where not given. A flag that contradicts the record raises
    CheckpointError. Returns (kwargs, notes for the user).
    """
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    notes: list[str] = []
    if trained is None:
        notes.append("the checkpoint does not record how its training features were extracted; "
                     "extracting with " + (", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
                                           or "the extractor's defaults")
                     + " -- make sure this matches its training features")
        return given, notes
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
    kw: dict[str, Any] = {}
    for key in ("profile", "crops", "short_side", "crop_size", "norm", "tail", "precision"):
        if trained.get(key) is not None:
            kw[key] = trained[key]
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
    """Raise CheckpointError when the built extractor's meta differs from the training record."""
    if trained is None:
        return
    diff = []
    for key in COMPARED_KEYS:
        if key == "seed" and not trained.get("random_init"):
            continue
        a, b = trained.get(key), meta.get(key)
        if a is None or b is None:
            continue
        if a != b:
            diff.append(f"{key}: trained {a}, now {b}")
    if diff:
        raise CheckpointError("the extractor differs from the one the checkpoint was trained with ("
                              + "; ".join(diff) + "). For weights: pass --weights with the same file "
                              "(sha256 " + str(trained.get("weights_sha256")) + ").")


# ----------------------------------------------------------------------------- output

def output_paths(out: Path, stem: str) -> dict[str, Path]:
    return {"scores": out / f"{stem}.scores.csv", "intervals": out / f"{stem}.intervals.csv",
            "plot": out / f"{stem}.png"}


def scores_csv(scores: np.ndarray, fps: float) -> str:
    buf = io.StringIO()
    buf.write("frame,time_s,score\n")
    for i, s in enumerate(scores):
        buf.write(f"{i},{i / fps:.4f},{s:.6f}\n")
    return buf.getvalue()


INTERVAL_FIELDS = ("start_frame", "end_frame", "start_s", "end_s", "duration_s", "peak_score",
                   "peak_frame", "mean_score")


def intervals_csv(intervals: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INTERVAL_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(intervals)
    return buf.getvalue()


def read_scores_csv(path: str | Path) -> np.ndarray:
    """The score column of a ``<video>.scores.csv`` -> (frames,) float64."""
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=2, ndmin=1)


def read_intervals_csv(path: str | Path) -> list[dict]:
    """Rows of a ``<video>.intervals.csv`` with numbers parsed."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k.endswith("frame") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


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

def stale_features(feat_dir: Path, videos: Sequence[Path]) -> list[Path]:
    """Feature files of ``feat_dir`` that do not belong to ``videos`` as they are now: made from
    another file with the same stem (manifest ``path``), or older than the video. Returns them."""
    from .featstore import read_manifest

    rows = read_manifest(feat_dir)
    stale = []
    for v in videos:
        f = feat_dir / f"{v.stem}.npy"
        if not f.exists():
            continue
        row = rows.get(v.stem) or {}
        if row.get("path") != str(v) or v.stat().st_mtime > f.stat().st_mtime:
            stale.append(f)
    return stale


def extract_on_ray(inputs: Sequence[Path], feat_dir: Path, extractor_kwargs: dict[str, Any],
                   check: Callable[[dict], None], address: str | None = None,
                   quiet: bool = False) -> tuple[dict, Callable[[Path], tuple[np.ndarray, dict]]]:
    """Extract the features of ``inputs`` on a Ray cluster into ``feat_dir`` (with its manifest),
    exactly as ``python -m pipeline.extract --backend ray`` does (:func:`pipeline.raybackend.run_ray`).

    ``check(meta)`` runs on the actors' extractor meta before any video is handed out. Finished
    features of the same files are reused on a rerun; features of another file with the same name,
    or older than the video, are extracted again. Returns (extractor meta, load) where
    ``load(video) -> (features (clips, crops, D), info)`` reads one video's result and raises
    VideoError for a video that failed, like ``FeatureExtractor.extract``.
    """
    from .featstore import SettingsMismatch, check_writable, compact_manifest, read_manifest
    from .i3d import WeightsError
    from .raybackend import RayRunError, run_ray
    from .video import VideoError

    check_writable(feat_dir)
    present = [p.resolve() for p in inputs if p.exists()]  # absolute: actors run elsewhere
    for f in stale_features(feat_dir, present):
        if not quiet:
            print(f"note: {f} was made from another file or before the video changed; extracting it again")
        f.unlink()                                          # its manifest row is superseded when redone
    seen: dict[str, Any] = {}

    def check_and_keep(meta: dict) -> None:
        check(meta)
        seen["meta"] = meta

    try:
        run_ray(present, feat_dir, extractor_kwargs, address=address, progress=bars_enabled(quiet),
                check_meta=check_and_keep)
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

    def load(path: Path) -> tuple[np.ndarray, dict]:
        row = rows.get(path.stem)
        if not path.exists():
            raise VideoError(f"{path}: no such file or directory")
        if row is None or row.get("path") != str(path.resolve()):
            raise VideoError(f"{path}: not extracted on Ray (see the errors above)")
        if row.get("status") not in ("ok", "partial"):
            raise VideoError(row.get("error") or f"{path}: extraction failed on Ray")
        return np.load(feat_dir / f"{path.stem}.npy"), row

    return seen["meta"], load


# ----------------------------------------------------------------------------- run

def detect(videos: Sequence[str | Path], checkpoint: str | Path, out: str | Path = "detections",
           threshold: float = DEFAULT_THRESHOLD, min_duration: float = DEFAULT_MIN_DURATION,
           merge_gap: float = DEFAULT_MERGE_GAP, window: int = DEFAULT_WINDOW,
           overlap: float = DEFAULT_OVERLAP, device: str = "auto", overwrite: bool = False,
           extractor_flags: dict[str, Any] | None = None, batch_size: int = 8, plot: bool = True,
           quiet: bool = False, html: bool = True, backend: str = "local",
           address: str | None = None) -> dict:
    """Run detection on ``videos`` and write the outputs; returns the summary dict.

    backend: "local" (features extracted here, one video after the other) or "ray" (all videos
    extracted first on a Ray cluster at ``address`` by :func:`extract_on_ray`, into
    ``<out>/features``); scoring and every output are the same either way.
    Raises CheckpointError / FileExistsError / FileNotFoundError / ValueError when nothing can run;
    a video that fails is reported in the summary (status 'error') and the others go on.
    """
    from .extract import FeatureExtractor
    from .i3d import WeightsError
    from .video import VideoError, find_videos

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
    window_starts(1, window, overlap)                       # validates window / overlap
    out = Path(out)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))

    # inputs: files as given (even with an odd extension), folders searched for videos
    inputs: list[Path] = []
    for v in videos:
        p = Path(v)
        if p.is_dir():
            found = find_videos(p)
            if not found:
                raise FileNotFoundError(f"{p}: no video files in this folder")
            inputs.extend(found)
        else:
            inputs.append(p)                                # a missing file fails as that video
    if not inputs:
        raise ValueError("no videos given")
    if not any(p.exists() for p in inputs):                # before the checkpoint and the weights
        raise FileNotFoundError(f"{inputs[0]}: no such file or directory"
                                + (f" (nor any of the other {len(inputs) - 1} inputs)" if len(inputs) > 1 else ""))
    stems: dict[str, Path] = {}
    for p in inputs:
        if p.stem in stems:
            raise ValueError(f"{p} and {stems[p.stem]} would write the same output files ({p.stem}.*); "
                             f"run them separately with different --out folders")
        stems[p.stem] = p
    if not overwrite:
        existing = [str(f) for p in inputs for f in output_paths(out, p.stem).values() if f.exists()]
        if existing:
            raise FileExistsError(f"{len(existing)} output file(s) exist, e.g. {existing[0]}; pass --overwrite "
                                  f"to replace them or choose another --out")

    # checkpoint and extractor
    try:
        model, meta = load_model(checkpoint, dev)
    except FileNotFoundError as e:
        raise CheckpointError(str(e)) from e
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    trained = meta.get("extractor")
    kw, notes = resolve_extractor(trained, dict(extractor_flags or {}))

    def check(fmeta: dict) -> None:                         # the extractor against the checkpoint
        check_extractor(trained, fmeta)
        if fmeta.get("feature_dim", model.in_dim) != model.in_dim:
            raise CheckpointError(f"{meta['path']}: the model expects {model.in_dim}-d features, the extractor "
                                  f"gives {fmeta.get('feature_dim')}")

    if backend == "ray":
        fmeta, load = extract_on_ray(inputs, out / "features", dict(kw, batch_size=batch_size), check,
                                     address, quiet)
    else:
        try:
            fx = FeatureExtractor(device=str(dev), batch_size=batch_size, **kw)
        except (WeightsError, ValueError) as e:
            raise CheckpointError(f"cannot build the feature extractor the checkpoint needs ({e})") from e
        fmeta, load = fx.meta, fx.extract
        check(fmeta)
    random_weights = bool(fmeta.get("random_init"))
    if random_weights:
        notes.append("features come from an I3D with RANDOM weights (as this checkpoint was trained); "
                     "fine for the demo and tests, not for real footage")
    if not quiet:
        print(f"checkpoint {meta['path']} (epoch {meta.get('epoch')}); extractor {fmeta['profile']} "
              f"{'random weights' if random_weights else fmeta.get('weights')}, {fmeta['crops']} crop(s) of "
              f"{fmeta['crop_size']} from short side {fmeta['short_side']}, device {dev}"
              + (f"; features extracted on Ray into {out / 'features'}" if backend == "ray" else ""))
        for n in notes:
            print(f"note: {n}")

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in progress(inputs, quiet or len(inputs) < 2, desc="detecting", unit="video"):
        t0 = time.time()
        row: dict[str, Any] = {"video": path.stem, "path": str(path), "status": "ok", "error": None}
        try:
            feats, info = load(path)                                        # (clips, crops, 2048)
            fps = float(info.get("fps") or 0.0)
            if fps <= 0:
                row["warning"] = "unknown frame rate; times assume 25 fps"
                fps = 25.0
            clip_s = score_windowed(model, feats, dev, window, overlap)     # (clips,)
            fs = frame_scores(clip_s, int(info["frames"]), fmeta.get("clip_len", CLIP_LEN))   # (frames,)
            ivs = find_intervals(fs, fps, threshold, min_duration, merge_gap)
            files = output_paths(out, path.stem)
            atomic_write_text(files["scores"], scores_csv(fs, fps))
            atomic_write_text(files["intervals"], intervals_csv(ivs))
            if plot:
                from .plots import save_score_plot
                save_score_plot(files["plot"], fs, fps, detected=[(i["start_frame"], i["end_frame"]) for i in ivs],
                                threshold=threshold, title=f"{path.name}" + ("  [random I3D weights]" if random_weights else ""))
            else:
                files.pop("plot")
            row.update(frames=int(info["frames"]), fps=fps, clips=int(len(clip_s)),
                       duration_s=round(info["frames"] / fps, 3), windows=len(window_starts(len(clip_s), window, overlap)),
                       max_score=round(float(fs.max()), 6), mean_score=round(float(fs.mean()), 6),
                       intervals=ivs, files={k: str(v) for k, v in files.items()})
            if info.get("status") == "partial":
                row["warning"] = f"decoding stopped early: {info.get('error')}"
        except (VideoError, OSError, RuntimeError, ValueError) as e:
            row.update(status="error", error=str(e) if str(path) in str(e) else f"{path}: {e}")
        row["seconds"] = round(time.time() - t0, 2)
        rows.append(row)

    summary_path = out / "summary.json"
    previous = {}
    if summary_path.exists():
        try:
            previous = {v["video"]: v for v in json.loads(summary_path.read_text()).get("videos", [])}
        except (ValueError, KeyError, TypeError):
            previous = {}
    settings = dict(checkpoint=meta["path"], checkpoint_epoch=meta.get("epoch"), threshold=threshold,
                    min_duration_s=min_duration, merge_gap_s=merge_gap, window_clips=window, overlap=overlap,
                    random_weights=random_weights, extractor=fmeta, notes=notes)
    for r in rows:
        r["settings"] = {k: settings[k] for k in ("checkpoint", "threshold", "min_duration_s", "merge_gap_s")}
        previous[r["video"]] = r
    summary = dict(settings, videos=list(previous.values()),
                   n_ok=sum(r["status"] == "ok" for r in rows), n_failed=sum(r["status"] != "ok" for r in rows))
    atomic_write_json(summary_path, summary)
    if html:                                    # the review page of the whole folder (pipeline/review.py)
        from .review import write_detect_review
        summary["review"] = str(write_detect_review(out))
    if not quiet:
        print(format_table(rows))
        print(f"wrote per-video scores, intervals and plots, and {summary_path}"
              + (f"; review page {summary['review']}" if html else ""))
    summary["this_run"] = rows
    return summary


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.detect",
        description="Score your own videos with a trained model: per-frame anomaly scores (CSV), anomalous "
                    "intervals (CSV) and a score plot per video, plus summary.json. Features are extracted "
                    "with the same I3D settings the checkpoint was trained on (read from the checkpoint).",
        formatter_class=HelpFormatter)
    p.add_argument("videos", nargs="+", help="video files, or folders searched for videos")
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
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNGs")
    p.add_argument("--html", dest="html", action="store_true", default=True,
                   help="write review.html: the folder's videos, curves and intervals in a browser (default)")
    p.add_argument("--no-html", dest="html", action="store_false", help="skip review.html")
    p.add_argument("--quiet", action="store_true", help="no progress or table")
    r = p.add_argument_group('Ray (pip install -e ".[ray]")')
    r.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: extract features in this process; ray: extract them first on a Ray cluster "
                        "(as python -m pipeline.extract --backend ray) into OUT/features, reused on rerun, "
                        "then score here")
    r.add_argument("--address", default=None,
                   help="Ray cluster: auto or HOST:PORT (default: start Ray on this machine); OUT and the "
                        "videos must be on a file system every node sees")
    g = p.add_argument_group("extractor (default: as recorded in the checkpoint; a contradicting value is refused)")
    g.add_argument("--weights", default=None, help="I3D weights file (needed when the recorded path is not on this machine "
                                                   "and the file is not in the torch hub cache; checked by sha256)")
    g.add_argument("--profile", choices=["32x2", "8x8", "inception"], default=None, help="I3D network")
    g.add_argument("--random-init", action="store_true", default=None,
                   help="random I3D weights (only for checkpoints that record no extractor)")
    g.add_argument("--seed", type=int, default=None, help="seed of the random weights")
    g.add_argument("--crops", type=int, choices=[1, 10], default=None, help="centre crop or ten crops")
    g.add_argument("--short-side", type=int, default=None, help="frames resized to this short side (pixels)")
    g.add_argument("--crop-size", type=int, default=None, help="square crop side (pixels)")
    g.add_argument("--norm", default=None, choices=["kinetics", "minus1to1"], help="pixel normalisation")
    g.add_argument("--tail", default=None, choices=["pad", "drop"],
                   help="last partial clip: pad (repeat the last frame) or drop")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    flags = {k: getattr(a, k) for k in EXTRACTOR_FLAGS}
    try:
        summary = detect(a.videos, a.checkpoint, a.out, a.threshold, a.min_duration, a.merge_gap, a.window,
                         a.overlap, a.device, a.overwrite, flags, a.batch_size, a.plot, a.quiet, a.html,
                         a.backend, a.address)
    except KeyboardInterrupt:
        return interrupted()
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    failed = [r for r in summary["this_run"] if r["status"] != "ok"]
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
