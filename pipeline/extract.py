"""Stage 1: a folder of raw videos -> one I3D feature file per video.

    python -m pipeline.extract videos/ [--out data/ucf/features] [--profile 32x2] ...

Each video becomes ``<out>/<video stem>.npy`` of shape (clips, crops, 2048), float32
(or float16), written atomically (temp file in the same folder, then ``os.replace``),
and a row in ``<out>/manifest.jsonl``. Finished videos are skipped on rerun; a broken
video is recorded with its error and the run goes on; the exit code is 1 when any
video failed.

Data flow (one process per GPU / rank):
    decode workers (PyAV, one video each) --bounded queue of uint8 clip batches-->
    main process: pin -> device -> crops/flips/normalise -> one forward for all crops
    -> features streamed into the temp .npy (bounded memory, whatever the length).

Several GPUs or machines: launch with ``torchrun --nproc-per-node N`` (or SLURM
tasks). Each rank takes a disjoint shard, longest videos first, balanced greedily by
estimated frame count; all ranks append to the same manifest under a file lock.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import multiprocessing as mp
import os
import queue
import socket
import struct
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from pipeline.video import (CLIP_LEN, NORMS, FrameStream, VideoError, crop_clips, find_videos,
                            iter_clip_batches, iter_clips, normalize, num_clips, probe)

log = logging.getLogger("pipeline.extract")

MANIFEST = "manifest.jsonl"
FEATURE_DIM = 2048
# Settings that must agree between a finished feature file and the current run.
SETTING_KEYS = ("profile", "weights_sha256", "random_init", "crops", "short_side",
                "crop_size", "norm", "tail", "dtype")


class SettingsMismatch(RuntimeError):
    """Finished feature files in the output folder were made with other settings."""


# ============================================================================ the extractor

class FeatureExtractor:
    """I3D features of whole videos: (clips, crops, 2048) per video.

    Args:
        profile: "32x2" (RTFM's video-nonlocal-net baseline) or "8x8" (pytorchvideo);
            None: from the weights file's format, else "32x2".
        weights: a .pyth / .pkl / .pth file; None: the published file via the torch hub cache.
        random_init: untrained, deterministic (``seed``) weights, for tests and demos.
        crops: 1 (centre) or 10 (torchvision ten_crop order).
        short_side, crop_size: resize the short side, then crop (256 / 224).
        norm: "kinetics" (RGB/255, mean 0.45, std 0.225) or "minus1to1".
        tail: "pad" (ceil(frames/16) clips, last frame repeated) or "drop" (floor).
        device: "cpu", "cuda", "cuda:1", ...; None: the GPU when there is one.
        batch_size: clips per forward (each with all its crops).
        dtype: output dtype, "float32" or "float16".
        precision: "fp32" or "bf16" (autocast); None: bf16 on CUDA, fp32 elsewhere.
        channels_last: use torch.channels_last_3d (None: yes; also faster on CPU here).
        threads: decoder threads for ``extract`` (0: FFmpeg's choice).
    """

    def __init__(self, profile: Optional[str] = None, weights: Optional[str] = None,
                 random_init: bool = False, crops: int = 1, short_side: int = 256,
                 crop_size: int = 224, norm: str = "kinetics", tail: str = "pad",
                 device: Optional[str] = None, batch_size: int = 8, dtype: str = "float32",
                 precision: Optional[str] = None, channels_last: Optional[bool] = None,
                 seed: int = 0, threads: int = 0):
        import torch
        from pipeline.i3d import load_i3d

        if crops not in (1, 10):
            raise ValueError(f"crops must be 1 or 10, not {crops}")
        if crop_size > short_side:
            raise ValueError(f"crop size {crop_size} is larger than the short side {short_side}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, not {norm!r}")
        if tail not in ("pad", "drop"):
            raise ValueError(f"tail must be 'pad' or 'drop', not {tail!r}")
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = precision or ("bf16" if self.device.type == "cuda" else "fp32")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, not {self.precision!r}")
        self.channels_last = True if channels_last is None else channels_last
        self.crops, self.short_side, self.crop_size = crops, short_side, crop_size
        self.norm, self.tail, self.batch_size, self.dtype = norm, tail, batch_size, dtype
        self.threads = threads

        model, wmeta = load_i3d(profile, weights, random_init=random_init, seed=seed)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        self.model = model.eval()
        self._wmeta = wmeta
        self.profile = wmeta["profile"]

    @property
    def meta(self) -> Dict[str, Any]:
        """JSON-able description of everything that determines the features."""
        import av

        m = dict(self._wmeta)
        m.update(crops=self.crops, short_side=self.short_side, crop_size=self.crop_size,
                 norm=self.norm, tail=self.tail, clip_len=CLIP_LEN, feature_dim=FEATURE_DIM,
                 dtype=self.dtype, precision=self.precision, decoder=f"pyav-{av.__version__}",
                 resize="libswscale bilinear, short side", pool="global average")
        return m

    def features(self, clips) -> np.ndarray:
        """Features of a batch of clips.

        clips: (B, 16, H, W, 3) uint8 (numpy or tensor, H and W >= crop_size)
        returns (B, crops, 2048) float32 numpy.
        """
        import torch

        x = torch.as_tensor(clips)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        c = crop_clips(x, self.crop_size, self.crops)        # (B, crops, 3, T, s, s) uint8
        B, K, C, T, S, _ = c.shape
        c = normalize(c.reshape(B * K, C, T, S, S), self.norm)  # (B*crops, 3, T, s, s) float
        if self.channels_last:
            c = c.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            f = self.model(c)                                 # (B*crops, 2048)
        return f.float().reshape(B, K, FEATURE_DIM).cpu().numpy()

    def extract(self, video_path) -> Tuple[np.ndarray, Dict[str, Any]]:
        """All clips of one video, decoded as a stream.

        Returns (features (clips, crops, 2048) in ``dtype``, info dict with video, path,
        frames, fps, clips, width, height, status ("ok" or "partial": a decode error after
        some frames, in ``error``), error). Raises VideoError for unreadable videos.
        """
        cfg = self._decode_cfg()
        chunks: List[np.ndarray] = []
        info: Dict[str, Any] = {}
        for msg in decode_messages(0, str(video_path), cfg):
            kind = msg[0]
            if kind == "clips":
                chunks.append(self.features(msg[2]).astype(self.dtype))
            elif kind == "end":
                info = msg[2]
            elif kind == "error":
                raise VideoError(msg[2])
        return np.concatenate(chunks, 0), info

    def _decode_cfg(self, threads: Optional[int] = None) -> Dict[str, Any]:
        return dict(short_side=self.short_side, crop_size=self.crop_size, tail=self.tail,
                    batch_size=self.batch_size,
                    threads=self.threads if threads is None else threads)


# ============================================================================ decoding side

def decode_messages(vid: int, path: str, cfg: Dict[str, Any]) -> Iterator[tuple]:
    """Decode one video into messages for the model side.

    ("clips", vid, (B, 16, H, W, 3) uint8)*, then ("end", vid, info) or ("error", vid, msg).
    Never raises for a bad video.
    """
    t0 = time.time()
    stream = FrameStream(path, short_side=cfg["short_side"], threads=cfg.get("threads", 0))
    n = 0
    try:
        for batch in iter_clip_batches(iter_clips(iter(stream), cfg["tail"]), cfg["batch_size"]):
            if n == 0:
                h, w = batch.shape[2:4]
                if min(h, w) < cfg["crop_size"]:
                    raise VideoError(f"{path}: frames {w}x{h} after resizing are smaller "
                                     f"than the crop {cfg['crop_size']}")
            n += len(batch)
            yield ("clips", vid, batch)
    except VideoError as exc:
        yield ("error", vid, str(exc))
        return
    except Exception as exc:  # anything else from FFmpeg / numpy: report, never crash
        yield ("error", vid, f"{path}: {type(exc).__name__}: {exc}")
        return
    if n == 0:
        yield ("error", vid, f"{path}: {stream.frames} frames, fewer than {CLIP_LEN}: "
                             f"no clip with --tail {cfg['tail']}")
        return
    src_w, src_h = stream.src_size or (0, 0)
    warning = None
    if stream.frames < 0.9 * stream.frames_expected and not stream.error:
        warning = (f"decoded {stream.frames} frames, the header announces about "
                   f"{stream.frames_expected}: truncated file?")
    yield ("end", vid, dict(video=Path(path).stem, path=str(path), frames=stream.frames,
                            fps=round(stream.fps, 6), clips=n, width=src_w, height=src_h,
                            status="partial" if stream.error else "ok", error=stream.error,
                            warning=warning, frames_expected=stream.frames_expected,
                            decode_s=round(time.time() - t0, 3)))


def _worker_main(wid: int, paths: Sequence[str], tasks, out, cfg: Dict[str, Any]) -> None:
    """Decode worker: take video indices from ``tasks`` until None, send their messages."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    while True:
        vid = tasks.get()
        if vid is None:
            break
        out.put(("start", vid, wid))
        for msg in decode_messages(vid, paths[vid], cfg):
            out.put(msg)
    out.put(("worker-done", -1, wid))


class _Source:
    """Messages for a list of videos: in this process (workers=0) or from worker processes.

    Worker processes feed a bounded queue (``queue_size`` messages), so decoding runs
    ahead of the model by at most that many clip batches. A worker that dies (crash in
    FFmpeg, OOM kill) fails its current video and is replaced.
    """

    def __init__(self, paths: Sequence[str], order: Sequence[int], cfg: Dict[str, Any],
                 workers: int, queue_size: int):
        self.paths, self.order, self.cfg, self.workers = list(paths), list(order), cfg, workers
        self.queue_size = queue_size
        self.procs: Dict[int, Any] = {}

    def __iter__(self) -> Iterator[tuple]:
        if self.workers <= 0:
            for vid in self.order:
                yield from decode_messages(vid, self.paths[vid], self.cfg)
            return
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        tasks = ctx.Queue()
        out = ctx.Queue(maxsize=self.queue_size)
        for vid in self.order:
            tasks.put(vid)
        nworkers = min(self.workers, max(1, len(self.order)))
        for _ in range(nworkers):
            tasks.put(None)

        def start(wid: int):
            p = ctx.Process(target=_worker_main, args=(wid, self.paths, tasks, out, self.cfg),
                            daemon=True, name=f"decode-{wid}")
            p.start()
            self.procs[wid] = p

        for wid in range(nworkers):
            start(wid)
        current: Dict[int, int] = {}      # worker -> video it decodes
        remaining = set(self.order)       # videos without a final message yet
        done_workers = set()
        try:
            while remaining:
                try:
                    msg = out.get(timeout=1.0)
                except queue.Empty:
                    for wid, p in list(self.procs.items()):
                        if wid in done_workers or p.is_alive():
                            continue
                        vid = current.pop(wid, None)
                        if vid is not None and vid in remaining:
                            remaining.discard(vid)
                            yield ("error", vid, f"{self.paths[vid]}: decoder process died "
                                                 f"(exit code {p.exitcode})")
                        done_workers.add(wid)
                        if remaining and not tasks.empty():
                            nwid = max(self.procs) + 1
                            start(nwid)
                    if all(not p.is_alive() for p in self.procs.values()) and out.empty():
                        for vid in sorted(remaining):
                            yield ("error", vid, f"{self.paths[vid]}: never decoded "
                                                 f"(decoder processes exited)")
                        remaining.clear()
                    continue
                kind, vid, payload = msg
                if kind == "start":
                    current[payload] = vid
                    continue
                if kind == "worker-done":
                    done_workers.add(payload)
                    continue
                if kind in ("end", "error"):
                    remaining.discard(vid)
                    current = {w: v for w, v in current.items() if v != vid}
                yield msg
        finally:
            self.close()

    def close(self) -> None:
        for p in self.procs.values():
            p.join(timeout=0.5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)


# ============================================================================ output files

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
    ``close()`` writes the final header, fsyncs and renames; ``abort()`` deletes it.
    A process killed in between leaves only the temp file, never a partial ``path``.
    """

    def __init__(self, path: Path, row_shape: Tuple[int, ...], dtype: str):
        self.path = Path(path)
        self.row_shape, self.dtype, self.rows = tuple(row_shape), dtype, 0
        self.tmp = self.path.with_name(f".{self.path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
        self.f = open(self.tmp, "wb")
        self.f.write(npy_header((0,) + self.row_shape, dtype))

    def append(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        assert chunk.shape[1:] == self.row_shape, (chunk.shape, self.row_shape)
        self.f.write(chunk.tobytes())
        self.rows += chunk.shape[0]

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(npy_header((self.rows,) + self.row_shape, self.dtype))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def stale_temp_files(out_dir: Path, stem: str) -> List[Path]:
    """Temp files a killed run left for ``<stem>.npy``."""
    import glob
    return list(out_dir.glob(f".{glob.escape(stem)}.npy.*.tmp"))


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
    """Append one JSON line to ``out_dir/manifest.jsonl`` (all ranks share it, locked)."""
    line = json.dumps(row, sort_keys=True) + "\n"
    with _locked(out_dir / ".manifest.lock"):
        with open(out_dir / MANIFEST, "a") as f:
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


# ============================================================================ sharding

def dist_env() -> Tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun (RANK/WORLD_SIZE) or SLURM, else (0, 1, 0)."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def shard(costs: Sequence[float], names: Sequence[str], rank: int, world: int) -> List[int]:
    """Indices of the videos of ``rank``, longest first.

    Longest-processing-time-first: videos sorted by (-cost, name) go one by one to the
    rank with the least total so far (ties: lowest rank). Deterministic, so every rank
    computes the same partition without talking to the others.
    """
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], names[i]))
    load = [0.0] * world
    mine = []
    for i in order:
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += max(costs[i], 1.0)
        if r == rank:
            mine.append(i)
    return mine


# ============================================================================ the run

def _progress(enabled: bool, **kw):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(**kw)


def run(inputs: Sequence[Path], out_dir: Path, extractor: FeatureExtractor, *, workers: int = 2,
        overwrite: bool = False, rank: int = 0, world: int = 1, progress: bool = True,
        queue_size: Optional[int] = None) -> Dict[str, int]:
    """Extract every video of ``inputs`` (this rank's shard) into ``out_dir``.

    Returns counts {"ok", "partial", "failed", "skipped", "total"}. Raises
    SettingsMismatch when finished files there were made with other settings.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = extractor.meta
    videos: List[Path] = []
    for p in inputs:
        videos.extend(find_videos(p))
    # one output name per stem: later duplicates fail
    seen: Dict[str, Path] = {}
    dups: List[Tuple[Path, Path]] = []
    uniq: List[Path] = []
    for v in videos:
        if v.stem in seen:
            dups.append((v, seen[v.stem]))
        else:
            seen[v.stem] = v
            uniq.append(v)
    costs = []
    for v in uniq:
        try:
            costs.append(float(probe(v)["frames_estimate"]))
        except VideoError:
            costs.append(0.0)
    mine = shard(costs, [v.stem for v in uniq], rank, world)
    counts = dict(ok=0, partial=0, failed=0, skipped=0, total=len(mine))

    # finished videos, and a check that they were made with the same settings
    manifest = read_manifest(out_dir)
    todo: List[int] = []
    for i in mine:
        v = uniq[i]
        target = out_dir / f"{v.stem}.npy"
        for t in stale_temp_files(out_dir, v.stem):
            log.info("removing %s left by an interrupted run", t)
            t.unlink(missing_ok=True)
        if target.exists() and not overwrite:
            row = manifest.get(v.stem)
            if row is not None:
                diff = {k: (row.get(k), meta.get(k)) for k in SETTING_KEYS if row.get(k) != meta.get(k)}
                if diff:
                    raise SettingsMismatch(
                        f"{target} was extracted with other settings {diff} (file, now); "
                        f"use --overwrite or another --out")
            else:  # killed between rename and manifest row: recover the row
                arr = np.load(target, mmap_mode="r")
                append_manifest(out_dir, _row(meta, dict(video=v.stem, path=str(v), frames=None,
                                                         fps=None, clips=int(arr.shape[0]),
                                                         status="ok", error=None,
                                                         note="row recovered from file"), rank))
            counts["skipped"] += 1
            continue
        todo.append(i)
    if rank == 0:
        for v, first in dups:
            counts["failed"] += 1
            msg = f"{v}: same output name {v.stem}.npy as {first}"
            log.error(msg)
            append_manifest(out_dir, _row(meta, dict(video=v.stem, path=str(v), status="failed",
                                                     error=msg), rank))
    log.info("rank %d/%d: %d videos in shard, %d finished, %d to extract -> %s",
             rank, world, len(mine), counts["skipped"], len(todo), out_dir)
    if not todo:
        return counts

    est_clips = {i: num_clips(int(costs[i]), extractor.tail) for i in todo}
    cfg = extractor._decode_cfg(threads=extractor.threads or
                                (max(1, (os.cpu_count() or 2) // max(1, workers)) if workers else 0))
    source = _Source([str(v) for v in uniq], todo, cfg, workers,
                     queue_size or max(4, 2 * workers + 2))
    overall = _progress(progress, total=sum(est_clips.values()) or None, unit="clip",
                        desc=f"rank {rank}" if world > 1 else "all videos", position=0,
                        dynamic_ncols=True)
    bars: Dict[int, Any] = {}
    writers: Dict[int, NpyStreamWriter] = {}
    dropped = set()
    t_start = {}
    finished = set()
    try:
        for kind, vid, payload in source:
            v = uniq[vid]
            if vid in dropped:
                continue
            if kind == "clips":
                t_start.setdefault(vid, time.time())
                try:
                    if vid not in writers:
                        writers[vid] = NpyStreamWriter(out_dir / f"{v.stem}.npy",
                                                       (extractor.crops, FEATURE_DIM), extractor.dtype)
                        if progress:
                            bars[vid] = _progress(True, total=est_clips[vid] or None, unit="clip",
                                                  desc=v.stem[:30], leave=False,
                                                  position=1 + len(bars) % 8, dynamic_ncols=True)
                    writers[vid].append(extractor.features(payload))
                except Exception as exc:  # e.g. CUDA OOM, disk full: fail this video only
                    dropped.add(vid)
                    if vid in writers:
                        writers.pop(vid).abort()
                    finished.add(vid)
                    _finish(out_dir, meta, rank, counts, v, None,
                            f"{v}: feature extraction failed ({type(exc).__name__}: {exc})",
                            time.time() - t_start.pop(vid, time.time()))
                    if vid in bars:
                        bars.pop(vid).close()
                    continue
                if overall is not None:
                    overall.update(len(payload))
                if vid in bars:
                    bars[vid].update(len(payload))
            elif kind == "end":
                w = writers.pop(vid)
                w.close()
                _finish(out_dir, meta, rank, counts, v, payload, payload.get("error"),
                        time.time() - t_start.pop(vid, time.time()))
                if vid in bars:
                    bars.pop(vid).close()
            elif kind == "error":
                if vid in writers:
                    writers.pop(vid).abort()
                _finish(out_dir, meta, rank, counts, v, None, payload,
                        time.time() - t_start.pop(vid, time.time()))
                if vid in bars:
                    bars.pop(vid).close()
            if kind in ("end", "error"):
                finished.add(vid)
            if overall is not None:
                overall.set_postfix(videos=f"{len(finished)}/{len(todo)}", failed=counts["failed"])
    finally:
        for w in writers.values():
            w.abort()
        for b in bars.values():
            b.close()
        if overall is not None:
            overall.close()
        source.close()
    return counts


def _row(meta: Dict[str, Any], info: Dict[str, Any], rank: int) -> Dict[str, Any]:
    row = {k: meta.get(k) for k in ("profile", "weights", "weights_sha256", "random_init", "seed", "crops",
                                    "short_side", "crop_size", "norm", "tail", "dtype",
                                    "precision", "decoder", "clip_len", "feature_dim")}
    row.update(frames=None, fps=None, clips=None, error=None)
    row.update(info)
    row.update(rank=rank, host=socket.gethostname(), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return row


def _finish(out_dir: Path, meta, rank: int, counts: Dict[str, int], video: Path,
            info: Optional[Dict[str, Any]], error: Optional[str], seconds: float) -> None:
    """Count a finished video and append its manifest row (status ok / partial / failed)."""
    if info is None:
        info = dict(video=video.stem, path=str(video), status="failed", error=error)
        log.error("failed: %s", error)
    elif info["status"] == "partial":
        log.warning("partial: %s (features for the %d frames decoded before it)", error, info["frames"])
    elif info.get("warning"):
        log.warning("%s: %s", video, info["warning"])
    info = dict(info, seconds=round(seconds, 3))
    counts[info["status"]] += 1
    append_manifest(out_dir, _row(meta, info, rank))


# ============================================================================ CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.extract",
        description="Stage 1: raw videos -> I3D ResNet-50 features, one <video>.npy of shape "
                    "(clips, crops, 2048) per video plus manifest.jsonl, in --out. "
                    "Clips are 16 consecutive decoded frames. Finished videos are skipped on "
                    "rerun; broken ones are reported and skipped; exit code 1 if any failed. "
                    "Several GPUs/machines: run under torchrun (or SLURM tasks); ranks take "
                    "disjoint shards.",
    )
    p.add_argument("inputs", nargs="+", type=Path,
                   help="video files or folders (searched recursively for "
                        ".mp4 .avi .mkv .mov .webm .mpg .mpeg .m4v, any case)")
    p.add_argument("--dataset", default="ucf", help="dataset name, for the default --out (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: data/<dataset>/features)")
    p.add_argument("--profile", choices=["32x2", "8x8"], default=None,
                   help="network: 32x2 = video-nonlocal-net I3D baseline behind RTFM's public "
                        "features (16.5 GMAC/crop); 8x8 = pytorchvideo I3D_8x8_R50 (57 GMAC/crop). "
                        "Default: from the --weights file's format, else 32x2")
    p.add_argument("--weights", default=None,
                   help="weights file: .pyth (pytorchvideo, 8x8), .pkl (Caffe2 "
                        "i3d_baseline_32x2_IN_pretrain_400k.pkl) or .pth (i3d_r50_kinetics.pth or "
                        "pytorchvideo keys). Default: the published file, downloaded once to the "
                        "torch hub cache ($TORCH_HOME/hub/checkpoints)")
    p.add_argument("--random-init", action="store_true",
                   help="untrained weights (deterministic with --seed), for tests and demos only; "
                        "recorded in the manifest")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init (default: %(default)s)")
    p.add_argument("--crops", type=int, choices=[1, 10], default=1,
                   help="1 = centre crop; 10 = torchvision ten_crop (4 corners, centre, flipped x5) (default: %(default)s)")
    p.add_argument("--short-side", type=int, default=256, help="resize the short side to this (default: %(default)s)")
    p.add_argument("--crop-size", type=int, default=224, help="square crop size (default: %(default)s)")
    p.add_argument("--tail", choices=["pad", "drop"], default="pad",
                   help="last partial clip: pad = repeat the last frame, ceil(frames/16) clips "
                        "(RTFM, the default); drop = floor(frames/16)")
    p.add_argument("--norm", choices=sorted(NORMS), default="kinetics",
                   help="kinetics = (RGB/255 - 0.45)/0.225, what both networks were trained with; "
                        "minus1to1 = RGB/127.5 - 1, used by some public extractors (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the saved features (default: %(default)s)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N (default: the GPU of this rank when there is one)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                   help="bf16 autocast or fp32 (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward, each with all its crops (default: %(default)s)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="decode processes feeding a bounded queue; 0 = decode in the main "
                        "process (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="FFmpeg threads per decode process (0 = cpu count / workers)")
    p.add_argument("--overwrite", action="store_true", help="redo videos that are already finished")
    p.add_argument("--rank", type=int, default=None, help="this shard (default: torchrun/SLURM env)")
    p.add_argument("--world-size", type=int, default=None, help="number of shards (default: env)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns 0 when every video succeeded, 1 when any failed, 2 on setup errors."""
    args = build_parser().parse_args(argv)
    rank, world, local_rank = dist_env()
    if args.rank is not None:
        rank = args.rank
    if args.world_size is not None:
        world = args.world_size
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(message)s"
                        if world > 1 else "%(asctime)s %(levelname)s %(message)s")
    if not 0 <= rank < world:
        log.error("rank %d outside world size %d", rank, world)
        return 2
    device = args.device
    if device is None:
        import torch
        if torch.cuda.is_available():
            device = f"cuda:{local_rank % torch.cuda.device_count()}"
    out_dir = args.out or Path("data") / args.dataset / "features"
    from pipeline.i3d import WeightsError
    try:
        extractor = FeatureExtractor(
            profile=args.profile, weights=args.weights, random_init=args.random_init,
            crops=args.crops, short_side=args.short_side, crop_size=args.crop_size,
            norm=args.norm, tail=args.tail, device=device, batch_size=args.batch_size,
            dtype=args.dtype, precision=args.precision, seed=args.seed, threads=args.threads)
    except (WeightsError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    for p in args.inputs:
        if not p.exists():
            log.error("%s: no such file or directory", p)
            return 2
    if args.random_init:
        log.warning("--random-init: features come from an UNTRAINED network (tests/demos only)")
    log.info("profile %s, weights %s (sha256 %s), %d crop(s) of %d from short side %d, "
             "tail %s, device %s, %s", extractor.profile, extractor.meta["weights"],
             extractor.meta["weights_sha256"], args.crops, args.crop_size, args.short_side,
             args.tail, extractor.device, extractor.precision)
    t0 = time.time()
    try:
        counts = run(args.inputs, Path(out_dir), extractor, workers=args.workers,
                     overwrite=args.overwrite, rank=rank, world=world,
                     progress=not args.no_progress)
    except SettingsMismatch as exc:
        log.error("%s", exc)
        return 2
    compact_manifest(Path(out_dir))
    log.info("done in %.1f s: %d ok, %d partial, %d failed, %d already finished (of %d in this shard)",
             time.time() - t0, counts["ok"], counts["partial"], counts["failed"],
             counts["skipped"], counts["total"])
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
