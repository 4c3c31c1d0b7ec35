"""Anomalies in your own videos (what ``python -m pipeline.detect`` runs): features as the
checkpoint was trained on, per-frame scores, intervals, plots and the review page, resumable.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from pipeline.scoring.checkpoint import DEFAULT_OVERLAP, DEFAULT_WINDOW, score_windowed, window_starts
from pipeline.features.reproduce import CheckpointError, check_extractor, resolve_extractor
from pipeline.scoring import timeline
from pipeline.common.cli import bars_enabled, check_device, progress
from pipeline.scoring.checkpoint import load_model
from pipeline.common.io import atomic_write_json, atomic_write_text
from pipeline.common.metrics import CLIP_LEN
from pipeline.scoring.timeline import (DEFAULT_MERGE_GAP, DEFAULT_MIN_DURATION, DEFAULT_THRESHOLD,
                                       find_intervals, frame_scores, intervals_csv, scores_csv)
from pipeline.features.video import DEFAULT_IMAGE_FPS, EMPTY_FOLDER, coverage_text, empty_folders

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
    from pipeline.features.featstore import read_manifest

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
    exactly as ``python -m pipeline.extract --backend ray`` does (:func:`pipeline.features.raybackend.run_ray`).

    ``check(meta)`` runs on the actors' extractor meta before any video is handed out. Finished
    features of the same files are reused on a rerun; features of another file with the same name,
    or older than the video, are extracted again. Returns (extractor meta, load) where
    ``load(video) -> (features (clips, crops, D), info)`` reads one video's result and raises
    VideoError for a video that failed, like ``FeatureExtractor.extract``. ``inputs`` are the
    input arguments (files or folders); videos are keyed as ``pipeline.extract`` keys them.
    """
    from pipeline.features.featstore import SettingsMismatch, check_writable, compact_manifest, read_manifest
    from pipeline.features.weights import WeightsError
    from pipeline.features.raybackend import RayRunError, run_ray
    from pipeline.features.video import VideoError

    check_writable(feat_dir)
    from pipeline.features.video import find_keyed_videos

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
    from pipeline.features.video import find_videos, video_key

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


def check_detect_args(backend: str, address: str | None, threshold: float, min_duration: float,
                      merge_gap: float, image_fps: float, window: int, overlap: float, device: str) -> torch.device:
    """Refuse bad settings before any work; returns the torch device to use."""
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend must be local or ray, not {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"--address {address}: only used with --backend ray")
    if backend == "ray":
        from pipeline.features.raybackend import import_ray
        import_ray()                                        # before anything expensive
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    if min_duration < 0 or merge_gap < 0:
        raise ValueError("--min-duration and --merge-gap must be >= 0")
    if not image_fps > 0:
        raise ValueError(f"--fps must be > 0, got {image_fps}")
    window_starts(1, window, overlap)                       # validates window / overlap
    check_device(device)
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


def check_inputs(videos: Sequence[str | Path], out: Path):
    """(inputs [(path, key)], duplicate keys [(path, key, first)], empty folders) of the inputs; raises
    when none of them can run, before the checkpoint and the weights are loaded."""
    from pipeline.features.featstore import check_writable

    inputs, dups = gather_inputs(videos)
    empty = empty_folders(videos, exclude=[out])            # failed by name, the others go on
    if not inputs:
        if empty:
            raise FileNotFoundError(f"{empty[0]}: {EMPTY_FOLDER}"
                                    + (f" (and {len(empty) - 1} more such folder(s))" if len(empty) > 1 else ""))
        raise ValueError("no videos given")
    if not any(p.exists() for p, _ in inputs):
        raise FileNotFoundError(f"{inputs[0][0]}: no such file or directory"
                                + (f" (nor any of the other {len(inputs) - 1} inputs)" if len(inputs) > 1 else ""))
    check_writable(out, create=False)                       # before any work (ValueError: one line)
    return inputs, dups, empty


def load_checkpoint(checkpoint: str | Path, dev: torch.device):
    """(model, meta) of ``checkpoint``; a missing or unusable one is a CheckpointError."""
    try:
        return load_model(checkpoint, dev)
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(str(e)) from e


def plan_videos(inputs, out: Path, previous: dict, resume: dict, plot: bool, overwrite: bool):
    """(todo [(path, key)], skipped keys, output files per key): what is finished with these settings
    is skipped; results of other settings that this run would replace are refused (FileExistsError)."""
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
    return todo, skipped, files_of


def feature_source(backend: str, videos, out: Path, todo: list, kw: dict, batch_size: int, dev: torch.device,
                   model, meta: dict, trained: dict | None, address: str | None, quiet: bool, image_fps: float):
    """(extractor record, load(path, key) -> (features (clips, crops, D), info)): features made here
    by a FeatureExtractor, or first all on Ray (finished ones in OUT/features reused), each checked
    against the checkpoint's record and input width."""
    from pipeline.features.extractor import FeatureExtractor
    from pipeline.features.jobs import extract_features
    from pipeline.features.weights import WeightsError

    def check(fmeta: dict) -> None:                         # the extractor against the checkpoint
        check_extractor(trained, fmeta)
        if fmeta.get("feature_dim", model.in_dim) != model.in_dim:
            raise CheckpointError(f"{meta['path']}: the model expects {model.in_dim}-d features, the extractor "
                                  f"gives {fmeta.get('feature_dim')}")

    load = None
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
    return fmeta, load


def error_rows(dups, empty) -> list[dict]:
    """Summary rows of the inputs that fail by name: two inputs with one output name, empty folders."""
    rows = [{"video": key, "path": str(p), "status": "error", "seconds": 0.0,
             "error": f"{p}: same output name {key}.* as {first} (pass their common parent folder "
                      f"instead, so that the names keep their folders)"} for p, key, first in dups]
    rows += [{"video": folder.as_posix(), "path": str(folder), "status": "error", "seconds": 0.0,
              "error": f"{folder}: {EMPTY_FOLDER}"} for folder in empty]
    return rows


def detect_video(path: Path, key: str, load, model, dev: torch.device, fmeta: dict, files: dict,
                 threshold: float, min_duration: float, merge_gap: float, window: int, overlap: float,
                 plot: bool, random_weights: bool) -> dict:
    """One video: features, clip and frame scores, intervals, CSVs and plot; its summary row (status
    'error' with the reason when it fails; the other videos go on)."""
    from pipeline.features.video import VideoError

    t0 = time.time()
    row: dict[str, Any] = {"video": key, "path": str(path), "status": "ok", "error": None}
    warnings: list[str] = []
    try:
        feats, info = load(path, key)                                        # (clips, crops, D)
        fps = float(info.get("fps") or 0.0)
        if fps <= 0:
            warnings.append("unknown frame rate; times assume 25 fps")
            fps = 25.0
        n_frames = int(info["frames"])
        times = info.get("times") if info.get("vfr") else None               # the frames' own times
        t = timeline.frame_times(n_frames, fps, times)
        clip_s = score_windowed(model, feats, dev, window, overlap)             # (clips,)
        fs = frame_scores(clip_s, n_frames, fmeta.get("clip_len", CLIP_LEN))   # (frames,)
        ivs = find_intervals(fs, fps, threshold, min_duration, merge_gap, times)
        atomic_write_text(files["scores"], scores_csv(fs, fps, times))
        atomic_write_text(files["intervals"], intervals_csv(ivs))
        if plot:
            from pipeline.scoring.plots import save_score_plot
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
    return row


def print_outcome(rows: list[dict], summary: dict, summary_path: Path, out: Path, plot: bool, html: bool) -> None:
    """The table of this run's videos and where the results are."""
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
    dev = check_detect_args(backend, address, threshold, min_duration, merge_gap, image_fps, window, overlap,
                            device)
    out = Path(out)
    inputs, dups, empty = check_inputs(videos, out)
    model, meta = load_checkpoint(checkpoint, dev)
    trained = meta.get("extractor")
    kw, notes = resolve_extractor(trained, dict(extractor_flags or {}))
    settings = dict(checkpoint=meta["path"], checkpoint_epoch=meta.get("epoch"), threshold=threshold,
                    min_duration_s=min_duration, merge_gap_s=merge_gap, window_clips=window, overlap=overlap,
                    image_fps=image_fps)

    # what is finished, what would be overwritten (before the extractor is built)
    previous = {v["video"]: v for v in read_summary(out).get("videos", []) if isinstance(v, dict) and "video" in v}
    resume = dict(checkpoint_sha256=file_sha256(meta["path"]), extractor=trained,
                  **{k: settings[k] for k in RESUME_KEYS if k in settings})
    todo, skipped, files_of = plan_videos(inputs, out, previous, resume, plot, overwrite)
    fmeta, load = feature_source(backend, videos, out, todo, kw, batch_size, dev, model, meta, trained,
                                 address, quiet, image_fps)
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
    rows: list[dict] = error_rows(dups, empty)

    def save_summary() -> dict:
        for r in rows:
            previous[r["video"]] = r
        allrows = list(previous.values())
        summary = dict(settings, videos=allrows, n_ok=sum(r.get("status") == "ok" for r in allrows),
                       n_failed=sum(r.get("status") != "ok" for r in allrows))
        atomic_write_json(summary_path, summary)
        return summary

    stopped = True                              # until the loop ends normally (Ctrl-C, ...)
    try:
        for path, key in progress(todo, quiet or len(todo) < 2, desc="detecting", unit="video"):
            row = detect_video(path, key, load, model, dev, fmeta, dict(files_of[key]), threshold, min_duration,
                               merge_gap, window, overlap, plot, random_weights)
            row["settings"] = {k: settings[k] for k in ("checkpoint", "threshold", "min_duration_s", "merge_gap_s")}
            row["resume"] = resume
            row["end_unix"] = round(time.time(), 3)
            rows.append(row)
            save_summary()                                  # a finished video survives Ctrl-C
        stopped = False
    finally:
        summary = save_summary()
        if html:                                # the review page of the whole folder (pipeline.scoring.review)
            from pipeline.scoring.review import write_detect_review
            try:
                summary["review"] = str(write_detect_review(out))
            except Exception:
                if not stopped:                 # while Ctrl-C unwinds, the interruption is the news
                    raise
    if not quiet:
        print_outcome(rows, summary, summary_path, out, plot, html)
    summary["this_run"] = rows
    summary["skipped"] = skipped
    return summary
