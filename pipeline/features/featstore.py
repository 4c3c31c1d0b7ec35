"""Stage 1 outputs: feature files streamed to disk, and the manifest that says which are finished.

A feature file ``<out>/<key>.npy`` (the key: the video's path relative to its input folder, without
extension, e.g. ``cam1/2024-01-01_0800``; a video given directly is its stem) is written as a stream (bounded memory, whatever the video
length) into a hidden temp file in the same folder (``.<video>.npy.<host>-<pid>.tmp``). When the
video is done its manifest row is appended first and the temp file is renamed second, so a file
that exists always has a row (a kill in between leaves a row without a file: unfinished, redone).

``manifest.jsonl`` holds one JSON row per attempt (later rows supersede earlier ones); every
process of a run (local workers, torchrun/SLURM ranks, Ray actors) appends to the same file under
an advisory lock, so the folder must be on a file system every node sees.

A video is *finished* when its file exists and its last row says ``ok`` or ``partial``. A file
with no such row is unfinished (settings unknown): redone. A folder with feature files but no
manifest at all (lost, or features from elsewhere) is refused: nothing is rebuilt from guesses.
"""
from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import socket
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger("pipeline.extract")

MANIFEST = "manifest.jsonl"
#: Settings that must agree between a finished feature file and the current run. ``seed`` is
#: None for real weights (only random weights depend on it); ``precision`` changes the numbers.
SETTING_KEYS = ("profile", "weights_sha256", "random_init", "seed", "coverage", "grid", "crops", "short_side",
                "crop_size", "norm", "tail", "dtype", "precision")
#: Row fields copied from the extractor's meta by manifests older than ``meta_keys`` (today every
#: key of the meta is copied, and the row lists them in ``meta_keys``).
ROW_META_KEYS = ("profile", "weights", "weights_sha256", "random_init", "seed", "coverage", "grid", "crops",
                 "short_side", "crop_size", "norm", "tail", "dtype", "precision", "decoder",
                 "clip_len", "feature_dim")
#: Meta keys that describe the extraction but do not change the features' meaning: the weights'
#: path (they are compared by sha256), the decoder's version, the storage dtype, the runtime (torch,
#: onnxruntime and OpenVINO compute the same network: fp32 to ~1e-6, bench/RESULTS.md "Stage 1 on CPU").
#: ``precision`` is compared here (one folder / training set keeps one), not by detect and watch.
NOT_COMPARED = ("weights", "decoder", "dtype", "runtime")
FINISHED = ("ok", "partial")


class SettingsMismatch(RuntimeError):
    """Finished feature files in the output folder were made with other (or unknown) settings."""


# ----------------------------------------------------------------------------- .npy streaming

_NPY_HEADER_LEN = 128  # fixed, so the final shape can be written over the placeholder


def npy_header(shape: Tuple[int, ...], dtype: str) -> bytes:
    """A .npy v1.0 header of exactly 128 bytes for a C-order array."""
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).str, tuple(shape))
    body = d.ljust(_NPY_HEADER_LEN - 10 - 1) + "\n"
    if len(body) != _NPY_HEADER_LEN - 10:
        raise ValueError(f"shape {shape} too long for a fixed npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class NpyStreamWriter:
    """Write a (N, *row_shape) array chunk by chunk to ``path``, atomically.

    Chunks go to a hidden temp file in the same folder (``.<name>.<host>-<pid>.tmp``);
    ``seal()`` writes the final header and fsyncs, ``commit()`` renames it to ``path``
    (``close()`` does both); ``abort()`` deletes it. A process killed before ``commit``
    leaves only the temp file, never a partial ``path``.
    """

    def __init__(self, path: Path, row_shape: Tuple[int, ...], dtype: str):
        self.path = Path(path)
        self.row_shape, self.dtype, self.rows = tuple(row_shape), dtype, 0
        self.tmp = self.path.with_name(f".{self.path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.tmp, "wb")
        self.f.write(npy_header((0,) + self.row_shape, dtype))

    def append(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)   # (n, *row_shape)
        if chunk.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: chunk of shape {chunk.shape}, rows must be {self.row_shape}")
        self.f.write(chunk.tobytes())
        self.rows += chunk.shape[0]

    def seal(self) -> None:
        self.f.seek(0)
        self.f.write(npy_header((self.rows,) + self.row_shape, self.dtype))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()

    def commit(self) -> None:
        os.replace(self.tmp, self.path)

    def close(self) -> None:
        self.seal()
        self.commit()

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def stale_temp_files(out_dir: Path, key: str) -> List[Path]:
    """Temp files a killed process left for ``<key>.npy``."""
    target = Path(out_dir) / f"{key}.npy"
    if not target.parent.is_dir():
        return []
    return list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))


def check_writable(out_dir: Path, create: bool = True) -> None:
    """Raise ValueError (one line naming the folder) unless ``out_dir`` is, or can be made, a
    writable folder. Called before any expensive work. ``create=False``: nothing is created; the
    folder, or its nearest existing parent, is tried instead."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a folder")
    where = out_dir
    if not create:
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise ValueError(f"--out {out_dir}: {where} is not a folder")
    try:
        if create:
            out_dir.mkdir(parents=True, exist_ok=True)
        probe = where / f".write-test.{socket.gethostname()}-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {out_dir}: cannot write there ({exc.strerror or type(exc).__name__})") from None


# ----------------------------------------------------------------------------- manifest

@contextmanager
def _locked(path: Path):
    """Exclusive advisory lock on ``path`` (created if missing), for manifest updates."""
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def append_manifest(out_dir: Path, row: Dict[str, Any]) -> None:
    """Append one JSON line to ``out_dir/manifest.jsonl`` (every process shares it, locked)."""
    line = json.dumps(row, sort_keys=True) + "\n"
    with _locked(Path(out_dir) / ".manifest.lock"):
        with open(Path(out_dir) / MANIFEST, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def read_manifest(out_dir: Path) -> Dict[str, Dict[str, Any]]:
    """video -> its last manifest row (later rows supersede earlier ones)."""
    rows: Dict[str, Dict[str, Any]] = {}
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(row, dict) and "video" in row:
            rows[row["video"]] = row
    return rows


def compact_manifest(out_dir: Path) -> Dict[str, Dict[str, Any]]:
    """Rewrite the manifest with one row per video (the last), sorted by name."""
    out_dir = Path(out_dir)
    with _locked(out_dir / ".manifest.lock"):
        rows = read_manifest(out_dir)
        tmp = out_dir / f".{MANIFEST}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            for name in sorted(rows):
                f.write(json.dumps(rows[name], sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_dir / MANIFEST)
    return rows


def make_row(meta: Dict[str, Any], info: Dict[str, Any], rank: int = 0) -> Dict[str, Any]:
    """A manifest row: the extractor settings, then the video's info (status, frames, ...)."""
    import time

    row = dict(meta, meta_keys=sorted(meta))
    row.update(frames=None, fps=None, clips=None, error=None)
    row.update(info)
    now = time.time()
    row.update(rank=rank, host=socket.gethostname(), time=time.strftime("%Y-%m-%dT%H:%M:%S"),
               end_unix=round(now, 3))
    return row


def extraction_record(row: Dict[str, Any]) -> Dict[str, Any]:
    """The extractor's settings recorded in a manifest row: every meta key (``meta_keys``), without
    the video's own fields (frames, fps, status, ...)."""
    return {k: row.get(k) for k in row.get("meta_keys") or ROW_META_KEYS}


def comparable(record: Dict[str, Any]) -> Dict[str, Any]:
    """The settings of ``record`` that two extractions must share for their features to mean the
    same: all but NOT_COMPARED; the seed only for random weights."""
    out = {k: v for k, v in record.items() if k not in NOT_COMPARED and k != "meta_keys"}
    if not record.get("random_init"):
        out.pop("seed", None)
    return out


def record_diff(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """{key: (a's value, b's value)} for the comparable settings that differ (keys of either)."""
    ca, cb = comparable(a), comparable(b)
    return {k: (ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)}


def find_record(feature_file: Path, top: Optional[Path] = None,
                cache: Optional[Dict[Path, Dict[str, Dict[str, Any]]]] = None, name: Optional[str] = None
                ) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """(manifest, finished row) that describes ``feature_file``, or None.

    ``extract`` writes one manifest at the top of its ``--out`` and keys its rows by the file's
    path below it without ``.npy`` (``Explosion/x``, ``cam1/x``), so the manifest is looked for in
    the file's folder and each folder above it, up to ``top`` (default: the file's folder only).
    ``cache``: manifest path -> rows, shared between calls. ``name``: the video's name as the split
    lists know it (``x`` for ``x_i3d.npy``), tried in place of the file name where no row has the key.
    """
    feature_file = Path(feature_file)
    folder = feature_file.parent
    top = Path(top) if top is not None else folder
    cache = {} if cache is None else cache
    while True:
        manifest = folder / MANIFEST
        if manifest.is_file():
            if manifest not in cache:
                cache[manifest] = read_manifest(folder)
            rel = feature_file.relative_to(folder).with_suffix("")
            for key in dict.fromkeys([rel.as_posix()] + ([(rel.parent / name).as_posix()] if name else [])):
                row = cache[manifest].get(key)
                if row is not None and row.get("status", "ok") in FINISHED:
                    return manifest, row
        if folder == top or folder.parent == folder or not folder.is_relative_to(top):
            return None
        folder = folder.parent


def settings_diff(row: Dict[str, Any], meta: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """{key: (row's value, meta's value)} for the SETTING_KEYS that differ (a row written before
    coverage existed has the coverage its ``crops`` meant)."""
    from pipeline.features.video import coverage_of
    row, meta = dict(row, coverage=coverage_of(row)), dict(meta, coverage=coverage_of(meta))
    return {k: (row.get(k), meta.get(k)) for k in SETTING_KEYS if row.get(k) != meta.get(k)}


def finished_videos(out_dir: Path, stems: Sequence[str], meta: Dict[str, Any],
                    overwrite: bool = False) -> Tuple[List[str], List[str]]:
    """Split ``stems`` into (finished, to do) for a run with extractor ``meta``.

    Finished: the .npy exists and its last manifest row says ok/partial with the same settings.
    Raises SettingsMismatch when a finished file was made with other settings, or when the folder
    holds feature files of these videos but no manifest (their settings are unknown). A file whose
    row is missing or not finished is unfinished (redone, and replaced when done). ``overwrite``:
    everything is to do. Temp files of killed processes are removed.
    """
    out_dir = Path(out_dir)
    rows = read_manifest(out_dir)
    if not overwrite and not (out_dir / MANIFEST).is_file():
        orphans = [s for s in stems if (out_dir / f"{s}.npy").exists()]
        if orphans:
            raise SettingsMismatch(
                f"{out_dir / MANIFEST}: missing, but {len(orphans)} feature file(s) are there "
                f"(e.g. {out_dir / (orphans[0] + '.npy')}): their settings are unknown, so they are "
                f"not taken as finished; move them away, or pass --overwrite to extract them again")
    done, todo = [], []
    for stem in stems:
        for t in stale_temp_files(out_dir, stem):
            log.info("removing %s left by an interrupted run", t)
            t.unlink(missing_ok=True)
        target = out_dir / f"{stem}.npy"
        if overwrite or not target.exists():
            todo.append(stem)
            continue
        row = rows.get(stem)
        if row is None or row.get("status") not in FINISHED:
            log.warning("%s: no finished manifest row: unfinished, extracting it again", target)
            todo.append(stem)
            continue
        diff = settings_diff(row, meta)
        if diff:
            raise SettingsMismatch(f"{target} was extracted with other settings {diff} (file, now); "
                                   f"use --overwrite or another --out")
        done.append(stem)
    return done, todo
