"""Stage 1 on a Ray cluster: ``python -m pipeline.extract videos/ --backend ray [--address auto]``.

Ray actors each hold the I3D model once (one GPU per actor when the cluster has GPUs, else one
CPU) and run the same per-video function as the local backend (``pipeline.features.jobs.extract_video``:
decode in the actor, features streamed to the temp file, manifest row, atomic rename). The
driver plans the run exactly as the local backend does (one output name per video key, finished
videos skipped, the settings check that refuses mixing runs), then hands videos out longest
first, one at a time per actor, so fast and slow nodes stay busy until the end.

Failures: an actor process that dies (killed, pre-empted node, OOM) is restarted by Ray and its
video retried (``--retries`` times, then recorded as failed); the killed process's temp file is
removed at the end; nothing finished is rewritten. ``--out`` (and ``--weights``) must be paths
every node sees (a shared file system); the manifest is appended under a file lock.

Ray is optional: ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from pipeline.features.backends import progress_bar, shard
from pipeline.features.featstore import (SETTING_KEYS, SettingsMismatch, append_manifest, finished_videos,
                                         make_row, stale_temp_files)
from pipeline.features.jobs import find_inputs, new_counts, record_duplicates

log = logging.getLogger("pipeline.extract")

INSTALL_HINT = 'install the optional extra: pip install -e ".[ray]"  (or: pip install "ray>=2.9")'


class RayUnavailable(ValueError):
    """--backend ray without Ray installed."""


class RayRunError(RuntimeError):
    """The run could not finish on the cluster (every actor died); finished videos are kept."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_reachable(address: Optional[str], timeout: float = 5.0) -> None:
    """For HOST:PORT, fail fast (ValueError) when nothing listens there; Ray itself retries for
    minutes. None / "auto" are left to Ray."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ValueError(f"--address {address}: no Ray head answers there "
                         f"({type(exc).__name__}: {exc})") from None


class ExtractActor:
    """One Ray actor: the feature extractor built once, then one video per call."""

    def __init__(self, extractor_kwargs: Dict[str, Any], out_dir: str, verbose: bool = False,
                 decode_workers: int = 0, image_fps: Optional[float] = None):
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                            format="%(levelname)s %(message)s")
        from pipeline.features.extractor import FeatureExtractor

        self.extractor = FeatureExtractor(**extractor_kwargs)
        self._meta = self.extractor.meta
        self.out_dir = Path(out_dir)
        self.decode_workers = decode_workers
        self.image_fps = image_fps

    def info(self) -> Dict[str, Any]:
        import socket

        return dict(meta=self._meta, pid=os.getpid(), host=socket.gethostname(),
                    device=str(self.extractor.device))

    def extract(self, path: str, key: Optional[str] = None) -> Dict[str, Any]:
        """One video -> its manifest row. With decode workers the video is decoded in a child
        process (which dies with the actor) while this process runs the model: the two overlap."""
        from pipeline.features.decode import DecodePool
        from pipeline.features.jobs import decode_cfg, extract_video

        messages = None
        if self.decode_workers > 0:
            cfg = decode_cfg(self.extractor, self.image_fps, threads=self.extractor.threads or self.decode_workers)
            messages = iter(DecodePool([path], [0], cfg, 1, queue_size=4))
        return extract_video(self.extractor, self._meta, Path(path), self.out_dir, messages=messages,
                             key=key, image_fps=self.image_fps)


def run_ray(inputs: Sequence[Path], out_dir: Path, extractor_kwargs: Dict[str, Any], *,
            address: Optional[str] = None, actors: Optional[int] = None, retries: int = 3,
            overwrite: bool = False, progress: bool = True, verbose: bool = False,
            decode_workers: Optional[int] = None,
            check_meta: Optional[Callable[[Dict[str, Any]], None]] = None,
            image_fps: Optional[float] = None) -> Dict[str, int]:
    """Extract every video of ``inputs`` into ``out_dir`` on a Ray cluster.

    address: "auto", "HOST:PORT" or None (start a local Ray on this machine). actors: how many
    extractor actors (default: one per GPU of the cluster, else one per CPU). decode_workers:
    decode processes per actor (default: 1 with GPUs, overlapping decode and model; 0 without:
    decode in the actor); each actor asks Ray for 1 + decode_workers CPUs. Returns the counts
    of ``pipeline.features.backends.run``; raises SettingsMismatch, ValueError, RayUnavailable.
    check_meta: called with the actors' extractor meta before any video is handed out (e.g.
    detect's check against the checkpoint's record); what it raises ends the run.
    """
    ray = import_ray()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    uniq, keys, dups, costs = find_inputs(inputs)
    order = shard(costs, keys, 0, 1)                                 # longest first
    init_kw: Dict[str, Any] = dict(address=address, log_to_driver=True,
                                   logging_level=logging.WARNING)
    if address is None:
        init_kw["include_dashboard"] = False
    check_reachable(address)
    try:
        ray.init(**init_kw)
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--address {address}: cannot start or reach Ray ({first})") from None
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        if decode_workers is None:
            decode_workers = 1 if gpus else 0
        cpus = 1 + decode_workers
        n = actors or (gpus if gpus else max(1, int(res.get("CPU", 1)) // cpus))
        n = max(1, min(n, len(uniq)))
        opts = dict(num_cpus=cpus, num_gpus=1 if gpus else 0, max_restarts=retries,
                    max_task_retries=retries, scheduling_strategy="SPREAD")
        Actor = ray.remote(**opts)(ExtractActor)
        kw = dict(extractor_kwargs)
        if not gpus and kw.get("device") is None:
            kw["device"] = "cpu"
        pool = [Actor.remote(kw, str(out_dir), verbose, decode_workers, image_fps) for _ in range(n)]
        infos = ray.get([a.info.remote() for a in pool])
        meta = infos[0]["meta"]
        for i in infos[1:]:
            diff = {k: (meta.get(k), i["meta"].get(k)) for k in SETTING_KEYS if meta.get(k) != i["meta"].get(k)}
            if diff:
                raise SettingsMismatch(f"Ray actors on {infos[0]['host']} and {i['host']} build different "
                                       f"extractors {diff}: give every node the same --weights file")
        if check_meta is not None:
            check_meta(meta)
        log.info("Ray: %d actor(s) on %s (%s)", n, sorted({i["host"] for i in infos}),
                 ", ".join(sorted({i["device"] for i in infos})))
        counts = new_counts(len(uniq))
        done, todo_keys = finished_videos(out_dir, keys, meta, overwrite)
        counts["skipped"] = len(done)
        record_duplicates(out_dir, meta, dups, counts)
        todo_set = set(todo_keys)
        queue: List[int] = [i for i in order if keys[i] in todo_set]
        log.info("%d videos, %d finished, %d to extract on %d Ray actor(s) -> %s",
                 len(uniq), counts["skipped"], len(queue), n, out_dir)
        _schedule(ray, pool, uniq, keys, queue, meta, out_dir, counts, retries, progress)
        for i in order:                      # temp files of killed actor processes
            if keys[i] in todo_set:
                for t in stale_temp_files(out_dir, keys[i]):
                    t.unlink(missing_ok=True)
        return counts
    finally:
        ray.shutdown()


def _schedule(ray, pool, uniq, keys, queue: List[int], meta, out_dir: Path, counts, retries: int,
              progress: bool) -> None:
    """Hand out videos one per idle actor until all have a final row."""
    attempts: Dict[int, int] = {}
    running: Dict[Any, tuple] = {}        # ObjectRef -> (video index, actor)
    idle = list(pool)
    bar = progress_bar(progress, total=len(queue), unit="video", desc="Ray", dynamic_ncols=True)
    clips = 0
    t0 = time.time()
    try:
        while queue or running:
            while queue and idle:
                actor = idle.pop(0)
                vid = queue.pop(0)
                attempts[vid] = attempts.get(vid, 0) + 1
                running[actor.extract.remote(str(uniq[vid]), keys[vid])] = (vid, actor)
            if not running:
                raise RayRunError(f"every Ray actor died; {len(queue)} video(s) not extracted "
                                  f"(rerun to extract them)")
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            vid, actor = running.pop(ref)
            try:
                row = ray.get(ref)
            except ray.exceptions.RayError as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not isinstance(exc, ray.exceptions.RayActorError):
                    idle.append(actor)              # the actor is fine, the call failed
                if attempts[vid] <= retries:
                    log.warning("%s: %s on a Ray worker; retrying (attempt %d of %d)",
                                uniq[vid], type(exc).__name__, attempts[vid] + 1, retries + 1)
                    queue.insert(0, vid)
                    continue
                row = make_row(meta, dict(video=keys[vid], path=str(uniq[vid]), status="failed",
                                          error=f"{uniq[vid]}: failed on Ray {attempts[vid]} times "
                                                f"({type(exc).__name__}: {msg})"))
                append_manifest(out_dir, row)
                log.error("failed: %s", row["error"])
            else:
                idle.append(actor)
            counts[row["status"]] += 1
            clips += int(row.get("clips") or 0)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(clips=clips, failed=counts["failed"],
                                clips_per_s=f"{clips / max(1e-9, time.time() - t0):.1f}")
    finally:
        if bar is not None:
            bar.close()
