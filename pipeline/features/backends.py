"""Stage 1 scheduling on one machine: decode workers feeding the model, and torchrun/SLURM ranks.

Each rank takes a disjoint shard, longest videos first, balanced greedily by estimated frame
count; all ranks append to the same manifest under a file lock. Every video goes through
``pipeline.features.jobs.VideoJob``, as with the Ray backend (``pipeline.features.raybackend``).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pipeline.features.decode import DecodePool
from pipeline.features.featstore import finished_videos
from pipeline.features.jobs import VideoJob, decode_cfg, find_inputs, new_counts, record_duplicates
from pipeline.features.video import num_clips

log = logging.getLogger("pipeline.extract")


def dist_env() -> Tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun (RANK/WORLD_SIZE) or SLURM, else (0, 1, 0)."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def wait_for_other_ranks(world: int, timeout_s: float = 7 * 24 * 3600) -> None:
    """Under torchrun, wait until every rank has finished its shard.

    torchrun stops all ranks as soon as one exits non-zero, and a rank exits 1 when a video of its
    shard failed or is partial: without this barrier a rank that finished early with a failure would
    cut the others' videos short. Every rank calls it after its shard (gloo, on torchrun's
    MASTER_ADDR / MASTER_PORT); one process, or SLURM without them, returns at once.
    """
    if world <= 1 or "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        return
    import datetime

    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


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


def progress_bar(enabled: bool, **kw):
    """None when not ``enabled``; else the commands' progress display (``pipeline.common.cli.progress_bar``:
    a bar on a terminal, plain lines in a log)."""
    if not enabled:
        return None
    from pipeline.common.cli import progress_bar as bar
    return bar(**kw)


def run(inputs: Sequence[Path], out_dir: Path, extractor, *, workers: int = 2,
        overwrite: bool = False, rank: int = 0, world: int = 1, progress: bool = True,
        queue_size: Optional[int] = None, image_fps: Optional[float] = None) -> Dict[str, int]:
    """Extract every video of ``inputs`` (this rank's shard) into ``out_dir/<key>.npy`` (key: the
    path relative to its input folder; frame folders at ``image_fps``).

    Returns counts {"ok", "partial", "failed", "skipped", "total"}. Raises SettingsMismatch
    when finished files there were made with other settings, ValueError when no video is found.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = extractor.meta
    uniq, keys, dups, costs = find_inputs(inputs)
    mine = shard(costs, keys, rank, world)
    counts = new_counts(len(mine))
    done, todo_keys = finished_videos(out_dir, [keys[i] for i in mine], meta, overwrite)
    counts["skipped"] = len(done)
    todo_set = set(todo_keys)
    todo = [i for i in mine if keys[i] in todo_set]                # still longest first
    if rank == 0:
        record_duplicates(out_dir, meta, dups, counts, rank)
    log.info("rank %d/%d: %d videos in shard, %d finished, %d to extract -> %s",
             rank, world, len(mine), counts["skipped"], len(todo), out_dir)
    if not todo:
        return counts

    est_clips = {i: num_clips(int(costs[i]), extractor.tail) for i in todo}
    cfg = decode_cfg(extractor, image_fps, threads=extractor.threads or
                     (max(1, (os.cpu_count() or 2) // max(1, workers)) if workers else 0))
    source = DecodePool([str(v) for v in uniq], todo, cfg, workers, queue_size or max(4, 2 * workers + 2))
    overall = progress_bar(progress, total=sum(est_clips.values()) or None, unit="clip",
                           desc=f"rank {rank}" if world > 1 else "all videos", position=0,
                           dynamic_ncols=True)
    bars: Dict[int, Any] = {}
    jobs: Dict[int, VideoJob] = {}
    finished = set()

    def close_bar(vid: int) -> None:
        if vid in bars:
            bars.pop(vid).close()

    try:
        for kind, vid, payload in source:
            if vid in finished:
                continue
            if vid not in jobs:
                jobs[vid] = VideoJob(extractor, meta, out_dir, uniq[vid], rank, keys[vid])
                if progress and kind == "clips":
                    bars[vid] = progress_bar(True, total=est_clips[vid] or None, unit="clip",
                                             desc=keys[vid][-30:], leave=False,
                                             position=1 + len(bars) % 8, dynamic_ncols=True)
            job = jobs[vid]
            row = None
            if kind == "clips":
                if job.clips(payload):
                    if overall is not None:
                        overall.update(len(payload))
                    if vid in bars:
                        bars[vid].update(len(payload))
                else:
                    row = job.row
            elif kind == "end":
                row = job.end(payload)
            elif kind == "error":
                row = job.fail(payload)
            if row is not None:
                counts[row["status"]] += 1
                finished.add(vid)
                jobs.pop(vid)
                close_bar(vid)
            if overall is not None:
                overall.set_postfix(videos=f"{len(finished)}/{len(todo)}", failed=counts["failed"])
    finally:
        for job in jobs.values():
            if job.writer is not None and job.row is None:
                job.writer.abort()
        for b in bars.values():
            b.close()
        if overall is not None:
            overall.close()
        source.close()
    return counts
