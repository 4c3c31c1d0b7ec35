"""Stage 1 work units, shared by every backend (local decode workers, torchrun/SLURM ranks, Ray).

- ``find_inputs``: the videos of a run (one output key each: the path relative to its input folder)
  and their estimated lengths.
- ``VideoJob`` / ``extract_video``: THE per-video function. Clip batches of one video -> features
  streamed into the temp ``.npy`` -> manifest row appended -> file committed (renamed). A failure
  (bad video, decode error, CUDA OOM, disk full) fails this video only and is recorded.

Backends differ only in how they schedule these calls (``pipeline.features.backends``,
``pipeline.features.raybackend``).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from pipeline.features.decode import decode_messages
from pipeline.features.featstore import NpyStreamWriter, append_manifest, make_row
from pipeline.features.video import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoError, find_keyed_videos,
                                     find_videos, probe)

log = logging.getLogger("pipeline.extract")

STATUSES = ("ok", "partial", "failed")


def new_counts(total: int = 0) -> Dict[str, int]:
    return dict(ok=0, partial=0, failed=0, skipped=0, total=total)


def list_videos(inputs: Sequence[Path]) -> List[Path]:
    """The video files of ``inputs`` (files as given, folders searched recursively).

    Raises FileNotFoundError for a missing input and ValueError when no video is found.
    """
    videos: List[Path] = []
    for p in inputs:
        videos.extend(find_videos(p))
    if not videos:
        raise ValueError(f"no video files in {', '.join(str(p) for p in inputs)} "
                         f"(looked for {' '.join(VIDEO_EXTENSIONS)}, any case, and folders of "
                         f"{' '.join(IMAGE_EXTENSIONS)} images)")
    return videos


def find_inputs(inputs: Sequence[Path]) -> Tuple[List[Path], List[str], List[Tuple[Path, str, Path]], List[float]]:
    """(videos with distinct keys, their keys, duplicates (video, key, first video with that key),
    estimated frames). A key is the video's path relative to its input folder without extension
    (:func:`pipeline.features.video.video_key`): ``cam1/x`` and ``cam2/x`` never collide; only the same key
    from two inputs does (two files ``a/x.mp4 b/x.mp4`` given one by one).

    Raises FileNotFoundError for a missing input and ValueError when no video is found.
    """
    list_videos(inputs)                                     # the errors
    seen: Dict[str, Path] = {}
    dups: List[Tuple[Path, str, Path]] = []
    uniq: List[Path] = []
    keys: List[str] = []
    for v, key in find_keyed_videos(inputs):
        if key in seen:
            if Path(seen[key]).resolve() != Path(v).resolve():
                dups.append((v, key, seen[key]))
        else:
            seen[key] = v
            uniq.append(v)
            keys.append(key)
    costs = []
    for v in uniq:
        try:
            costs.append(float(len(list(v.iterdir())) if v.is_dir() else probe(v)["frames_estimate"]))
        except (VideoError, OSError):
            costs.append(0.0)
    return uniq, keys, dups, costs


def record_duplicates(out_dir: Path, meta: Dict[str, Any], dups, counts: Dict[str, int], rank: int = 0) -> None:
    """Fail videos whose output key is taken by an earlier video."""
    for v, key, first in dups:
        counts["failed"] += 1
        msg = (f"{v}: same output name {key}.npy as {first} (pass their common parent folder "
               f"instead, so that the names keep their folders)")
        log.error(msg)
        append_manifest(out_dir, make_row(meta, dict(video=key, path=str(v), status="failed",
                                                     error=msg), rank))


class VideoJob:
    """One video's extraction, fed clip batch by clip batch (from any decoder).

    ``clips(batch)`` computes and streams features (False once the video has failed);
    ``end(info)`` / ``fail(message)`` append the manifest row (then commit the file) and
    return that row. The file ``<out>/<key>.npy`` appears only after its row (key: default the stem).
    """

    def __init__(self, extractor, meta: Dict[str, Any], out_dir: Path, video: Path, rank: int = 0,
                 key: Optional[str] = None):
        self.extractor, self.meta, self.out_dir, self.video, self.rank = extractor, meta, Path(out_dir), Path(video), rank
        self.key = key or self.video.stem
        self.writer: Optional[NpyStreamWriter] = None
        self.t0: Optional[float] = None
        self.row: Optional[Dict[str, Any]] = None   # set once the video is finished (any status)

    def clips(self, batch) -> bool:
        """Features of one batch (B, 16, H, W, 3) uint8 appended to the file."""
        if self.row is not None:
            return False
        if self.t0 is None:
            self.t0 = time.time()
        try:
            if self.writer is None:
                self.writer = NpyStreamWriter(self.out_dir / f"{self.key}.npy",
                                              (self.extractor.crops, self.extractor_dim), self.extractor.dtype)
            self.writer.append(self.extractor.features(batch))      # (B, crops, D)
        except Exception as exc:  # e.g. CUDA OOM, disk full: fail this video only
            self.fail(f"{self.video}: feature extraction failed ({type(exc).__name__}: {exc})")
            return False
        return True

    @property
    def extractor_dim(self) -> int:
        return int(self.meta.get("feature_dim") or 2048)

    def end(self, info: Dict[str, Any]) -> Dict[str, Any]:
        if self.row is not None:
            return self.row
        if self.writer is None:
            return self.fail(f"{self.video}: no clip decoded")
        try:
            self.writer.seal()
            row = self._record(info)
            self.writer.commit()
        except Exception as exc:
            self.writer.abort()
            return self.fail(f"{self.video}: cannot write {self.writer.path} ({type(exc).__name__}: {exc})")
        if row["status"] == "partial":
            log.warning("partial: %s (features for the %d frames decoded)", row["error"], row["frames"])
        if row.get("warning"):
            log.warning("%s", row["warning"])
        return row

    def fail(self, error: str) -> Dict[str, Any]:
        if self.row is not None:
            return self.row
        if self.writer is not None:
            self.writer.abort()
        log.error("failed: %s", error)
        return self._record(dict(video=self.key, path=str(self.video), status="failed", error=error))

    def _record(self, info: Dict[str, Any]) -> Dict[str, Any]:
        seconds = time.time() - self.t0 if self.t0 is not None else 0.0
        self.row = make_row(self.meta, dict(info, video=self.key, seconds=round(seconds, 3)), self.rank)
        append_manifest(self.out_dir, self.row)
        return self.row


def decode_cfg(extractor, image_fps: Optional[float] = None, threads: Optional[int] = None) -> Dict[str, Any]:
    """The extractor's decode settings plus the frame rate of frame folders."""
    cfg = extractor.decode_cfg(threads=threads)
    if image_fps:
        cfg["image_fps"] = float(image_fps)
    return cfg


def extract_features(extractor, video: Path, image_fps: Optional[float] = None):
    """All clips of one video in memory: (features (clips, crops, D), end info), like
    ``FeatureExtractor.extract`` with the frame rate of frame folders. Raises VideoError."""
    import numpy as np

    chunks, info = [], {}
    for kind, _, payload in decode_messages(0, str(video), decode_cfg(extractor, image_fps)):
        if kind == "clips":
            chunks.append(extractor.features(payload).astype(extractor.dtype))   # (B, crops, D)
        elif kind == "end":
            info = payload
        elif kind == "error":
            raise VideoError(payload)
    return np.concatenate(chunks, 0), info


def extract_video(extractor, meta: Dict[str, Any], video: Path, out_dir: Path, rank: int = 0,
                  messages: Optional[Iterable[tuple]] = None,
                  on_clips: Optional[Callable[[int], None]] = None, key: Optional[str] = None,
                  image_fps: Optional[float] = None) -> Dict[str, Any]:
    """Extract one video into ``out_dir/<key>.npy`` and return its manifest row (status
    ok/partial/failed).

    ``messages``: the video's decode messages (default: decoded here, see pipeline.features.decode).
    """
    if messages is None:
        messages = decode_messages(0, str(video), decode_cfg(extractor, image_fps))
    job = VideoJob(extractor, meta, out_dir, video, rank, key)
    for kind, _, payload in messages:
        if kind == "clips":
            if not job.clips(payload):
                break
            if on_clips:
                on_clips(len(payload))
        elif kind == "end":
            return job.end(payload)
        elif kind == "error":
            return job.fail(payload)
    return job.row or job.fail(f"{video}: decoding ended without a result")
