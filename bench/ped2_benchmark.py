"""UCSD Ped2, weakly supervised, from the raw frames to a table (issue 15): what the method's parts
add over plain MIL on real features, over splits and seeds.

    python bench/ped2_benchmark.py                                   # everything: 7 configurations + the
                                                                     # distance score, TEVAD + 10 random splits, 3 seeds
    python bench/ped2_benchmark.py --features /work/exp/ped2_jax --splits 1 --seeds 1 --configs defaults,mil
    python bench/ped2_benchmark.py --markdown bench/out/ped2_table.md   # also write the table

Data (defaults relative to the repository: ``../shared/realdata/ucsd_ped2/``): ``frames/<video>/*.jpg``
(the 28 videos), ``videos.json`` (frame count and 0-based inclusive anomalous intervals of each video)
and TEVAD's weakly supervised split ``ped2-i3d.list`` / ``ped2-i3d-test.list`` (train: 6 anomalous
+ 4 normal videos; test: the other 6 + 12). Anything missing: one "skipped: ... not found" line, exit 0.

Steps, each cached in ``--work`` (default ``bench/out/ped2``, git-ignored), so a rerun only does
what is missing and Ctrl-C loses at most the run in progress:

1. features: ``python -m pipeline.extract FRAMES --profile inception --dataset sht --out WORK/features``
   (skipped when every video has its file), or ``--features DIR`` of existing ``<video>.npy`` files
   ((clips, 1024) or (clips, crops, 1024), 16 frames a clip, the last one padded);
2. one ShanghaiTech-format data root per split in ``WORK/roots/<split>/``: the features symlinked,
   ``train.list`` / ``test.list`` (``video,label``), ``test_frame_mask/<video>.npy`` for the anomalous
   test videos and ``clip_truth.npz`` (every video's per-clip truth, a clip anomalous when at least half
   of its 16 frames are; ``pipeline.model.diagnostics.save_clip_truth``), which training only measures
   against: Ped2's anomalous *training* videos have frame truth, so the clustering's purity and
   pseudo-label precision are measured on real features. Splits: ``tevad`` (the lists) and ``r0``
   .. ``r{N-1}`` (Zhong et al.'s protocol: as many anomalous and normal videos for training as
   TEVAD's list, drawn with ``random.Random(1000 + k)``, anomalous first, the rest for testing);
3. runs: each configuration (``pipeline.train`` flags, below) trained with ``--dataset sht`` and
   otherwise the pipeline's defaults (T=100, 50 epochs, the final ``model.pt``: no validation split
   with 10 training videos), in-process, then ``pipeline.evaluate`` (frame AUC, AP). One line per
   finished run is appended to ``WORK/results.jsonl``, keyed by split, configuration, seed and a hash of
   the resolved training settings and the split's data (``pipeline.apps.ablation.run_key``): changed flags or
   defaults mean new runs, never stale figures;
4. a markdown table per protocol (TEVAD: mean +- sample std over seeds; random splits: over splits x
   seeds) of AUC, AP and the training log's mechanism measures, each averaged over the epochs of a
   run: ``purity`` (K=2 k-means of the abnormal videos' segments vs their truth), ``pseudo_precision``
   (eq. 4's labels), ``anomaly_rate`` (share of truly anomalous segments: what a guess would reach),
   ``guided`` (share of batches where eq. 5 acted), ``d_normal`` / ``d_abnormal`` (eq. 1's centre
   distances); plus the paired difference "defaults - plain MIL" over the same (split, seed) pairs,
   and the per-split AUCs of both.

``distance`` is the untrained baseline: features z-scored with the training videos' statistics, a
clip's score its distance to the mean of the normal training clips; it has no seeds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:                      # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pipeline.model import data as D  # noqa: E402
from pipeline.model import diagnostics as DG  # noqa: E402
from pipeline.common.cli import HelpFormatter, run_cli  # noqa: E402
from pipeline.common.io import atomic_write_json, atomic_write_text  # noqa: E402
from pipeline.common.metrics import CLIP_LEN, ScoredVideo, clip_to_frame_scores, frame_report  # noqa: E402

DEFAULT_DATA = REPO / ".." / "shared" / "realdata" / "ucsd_ped2"
DISTANCE = "distance"
#: id -> (table label, pipeline.train flags); DISTANCE is the untrained score.
CONFIGS = {
    "defaults": ("defaults (the graph backbone)", ""),
    "literal": ("--paper-literal", "--paper-literal"),
    "mil": ("plain MIL", "--adjacency none"),
    "median": ("issue 22's first centring: video median, no smoothing", "--centre median --smooth 1"),
    "nosmooth": ("defaults without test-time smoothing", "--smooth 1"),
    "bc": ("+ L_bc (eq. 1)", "--bc"),
    "full": ("+ L_bc + eq. 4-5 (the paper's parts)", "--bc --bcg"),
    "ones": ("control: eq. 5 on every abnormal segment", "--bc --bcg --pseudo-labels ones"),
    "random": ("control: random pseudo-labels", "--bc --bcg --pseudo-labels random"),
    DISTANCE: ("distance to normal (untrained)", None),
}
MECHANISM = ("purity", "pseudo_precision", "anomaly_rate", "guided", "d_normal", "d_abnormal")
PAIR = ("defaults", "mil")                          # the paired difference of the table
ROOT_VERSION = 1
DISTANCE_VERSION = 1


class Skip(Exception):
    """Input data absent: the benchmark has nothing to run (exit 0)."""


# ----------------------------------------------------------------------------- inputs

def read_truth(path: Path) -> dict[str, dict]:
    """videos.json -> name -> {"frames": int, "intervals": [[s, e], ...]} (0-based, inclusive)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise D.DataError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(raw, dict) or not raw:
        raise D.DataError(f"{path}: expected an object of videos, name -> {{frames, intervals}}")
    out = {}
    for name, v in raw.items():
        try:
            frames = int(v["frames"])
            intervals = [(int(s), int(e)) for s, e in v["intervals"]]
        except (KeyError, TypeError, ValueError) as e:
            raise D.DataError(f"{path}: video {name!r} needs 'frames' and 'intervals' [[start, end], ...] "
                              f"({e.__class__.__name__}: {e})") from e
        if frames < 1 or any(not 0 <= s <= e for s, e in intervals):
            raise D.DataError(f"{path}: video {name!r}: {frames} frames, intervals {intervals} are not valid")
        out[name] = {"frames": frames, "intervals": intervals}
    return out


def frame_labels(truth: dict, name: str) -> np.ndarray:
    """(frames,) uint8 frame truth of one video."""
    lab = np.zeros(truth[name]["frames"], np.uint8)
    for s, e in truth[name]["intervals"]:
        lab[s:e + 1] = 1
    return lab


def is_anomalous(truth: dict, name: str) -> bool:
    return bool(truth[name]["intervals"])


def read_list(path: Path, truth: dict) -> list[str]:
    """Video names of a TEVAD list (one feature path per line, e.g. ``.../Test002_i3d.npy``)."""
    names = [D.video_name(l.strip()) for l in path.read_text().splitlines() if l.strip()]
    unknown = [n for n in names if n not in truth]
    if unknown:
        raise D.DataError(f"{path}: {len(unknown)} video(s) not in the truth file: {', '.join(unknown[:5])}")
    return names


def tevad_split(train_list: Path, test_list: Path, truth: dict) -> tuple[list[str], list[str]]:
    train, test = read_list(train_list, truth), read_list(test_list, truth)
    both = sorted(set(train) & set(test))
    if both:
        raise D.DataError(f"{train_list} and {test_list} share video(s): {', '.join(both[:5])}")
    return train, test


def random_split(k: int, truth: dict, n_anomalous: int, n_normal: int) -> tuple[list[str], list[str]]:
    """Zhong et al.'s protocol: ``n_anomalous`` of the anomalous and ``n_normal`` of the normal videos
    for training (``random.Random(1000 + k)``, anomalous drawn first), the rest for testing."""
    abn = sorted(n for n in truth if is_anomalous(truth, n))
    nor = sorted(n for n in truth if not is_anomalous(truth, n))
    r = random.Random(1000 + k)
    a, n = r.sample(abn, n_anomalous), r.sample(nor, n_normal)
    return sorted(a) + sorted(n), [x for x in abn if x not in a] + [x for x in nor if x not in n]


# ----------------------------------------------------------------------------- step 1: features

def features_folder(work: Path, coverage: str) -> Path:
    """WORK/features for the default coverage (pipeline.extract's), WORK/features-<coverage> otherwise."""
    from pipeline.features.video import DEFAULT_COVERAGE
    return work / ("features" if coverage == DEFAULT_COVERAGE else f"features-{coverage}")


def ensure_features(args, names: list[str], coverage: str) -> Path:
    """The feature folder holding a file for every video in ``names``: --features, or extracted into
    WORK/features[-<coverage>] from --frames (once) with ``pipeline.extract --coverage``."""
    if args.features:
        folder = Path(args.features)
        if not folder.is_dir():
            raise D.DataError(f"{folder}: --features folder not found")
    else:
        folder = features_folder(args.work, coverage)
        have = D.index_features(folder) if folder.is_dir() else {}
        if all(n in have for n in names):
            print(f"features: {len(names)} videos in {folder} (cached)")
            return folder
        if not args.frames.is_dir():
            raise Skip(f"{args.frames} not found (the Ped2 frame folders; or pass --features DIR)")
        cmd = [sys.executable, "-m", "pipeline.extract", str(args.frames), "--profile", "inception",
               "--dataset", "sht", "--coverage", coverage, "--out", str(folder)]
        print("features: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        rc = subprocess.call(cmd, cwd=REPO, env=env)
        if rc != 0:
            raise D.DataError(f"feature extraction exited with code {rc} (see its output above); rerun to "
                              f"resume it, or pass --features DIR of existing features")
    index = D.index_features(folder)
    missing = [n for n in names if n not in index]
    if missing:
        raise D.DataError(f"{folder}: no feature file for {len(missing)} of {len(names)} videos: "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return folder


# ----------------------------------------------------------------------------- step 2: data roots

def build_root(root: Path, features: Path, train: list[str], test: list[str], truth: dict,
               truth_digest: str) -> Path:
    """A ShanghaiTech-format data root of one split (module docstring, step 2); reused when its
    ``root.json`` matches, rebuilt (atomically, by renaming a finished folder) when the inputs changed."""
    index = D.index_features(features)
    spec = {"version": ROOT_VERSION, "train": train, "test": test, "truth": truth_digest,
            "features": {n: [str(p.resolve()) for p in index[n]] for n in train + test}}
    if (root / "root.json").is_file() and json.loads((root / "root.json").read_text()) == spec:
        return root
    tmp = root.with_name(f".{root.name}.tmp")            # a leftover of an interrupted build goes first
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "features").mkdir(parents=True)
    (tmp / "test_frame_mask").mkdir()
    lab = {n: int(is_anomalous(truth, n)) for n in train + test}
    vids = []
    for split, names in (("train", train), ("test", test)):
        for n in names:
            for target in spec["features"][n]:
                os.symlink(target, tmp / "features" / Path(target).name)
            clips = D.feature_clips([Path(p) for p in spec["features"][n]])
            vids.append(dict(name=n, split=split, label=lab[n],
                             clip_labels=DG.clip_truth_from_frames(frame_labels(truth, n), clips, CLIP_LEN)))
            if split == "test" and lab[n]:
                np.save(tmp / "test_frame_mask" / f"{n}.npy", frame_labels(truth, n))      # (frames,) uint8
    atomic_write_text(tmp / "train.list", "".join(f"{n},{lab[n]}\n" for n in train))
    atomic_write_text(tmp / "test.list", "".join(f"{n},{lab[n]}\n" for n in test))
    DG.save_clip_truth(tmp / "clip_truth.npz", vids)
    atomic_write_json(tmp / "root.json", spec)
    if root.exists():
        print(f"note: {root} was built from other inputs; rebuilding it")
        old = root.with_name(f".{root.name}.old{os.getpid()}")
        os.replace(root, old)
        shutil.rmtree(old)
    os.replace(tmp, root)
    return root


# ----------------------------------------------------------------------------- step 3: runs

def train_config(flags: str, root: Path, seed: int, epochs: int, device: str):
    """pipeline.train's config for ``flags`` exactly as its command line builds it."""
    from pipeline.model import training
    from pipeline import train as TR
    argv = shlex.split(flags) + ["--dataset", "sht", "--data-root", str(root), "--seed", str(seed),
                                 "--epochs", str(epochs), "--device", device, "--quiet", "--overwrite"]
    return TR.config_from_args(TR.build_parser().parse_args(argv))


def run_key(config: str, root: Path, seed: int, epochs: int, device: str, fingerprint: dict) -> str:
    """Hash of what decides a run's result: the resolved training settings (flags and the pipeline's
    current defaults, not paths) and the split's data; the distance score: its version and the data."""
    from pipeline.apps import ablation as S
    if CONFIGS[config][1] is None:
        material = {"method": config, "version": DISTANCE_VERSION, "data": fingerprint}
        return hashlib.sha1(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    cfg = replace(train_config(CONFIGS[config][1], root, seed, epochs, device), data_root="split")
    return S.run_key(cfg, fingerprint)


def mechanism(log_path: Path) -> dict:
    """Each MECHANISM measure averaged over the epochs of a run's log.jsonl (None when never logged)."""
    rows = [json.loads(l) for l in log_path.read_text().splitlines() if l.strip()]
    return {k: (float(np.mean([r[k] for r in rows if k in r])) if any(k in r for r in rows) else None)
            for k in MECHANISM}


def train_and_evaluate(config: str, root: Path, run_dir: Path, seed: int, epochs: int, device: str) -> dict:
    """Train one configuration (pipeline.model.training.train) and score its final model (pipeline.evaluate)."""
    from pipeline.scoring import evaluation as E
    from pipeline.model import training
    from pipeline import train as TR
    cfg = replace(train_config(CONFIGS[config][1], root, seed, epochs, device), out=str(run_dir))
    training.train(cfg)                                  # an unfinished run dir (Ctrl-C) is started afresh
    rep = E.evaluate("sht", str(root), str(run_dir / "model.pt"), device=device, quiet=True)
    (run_dir / "last.pt").unlink(missing_ok=True)  # the resume state; model.pt and log.jsonl stay
    return {"auc": rep["auc"], "ap": rep["ap"], "auc_abn": rep.get("auc_abnormal"), **mechanism(run_dir / "log.jsonl")}


def distance_score(root: Path) -> dict:
    """The untrained baseline: z-score with the training clips' statistics; a clip's score is its
    distance to the mean of the normal training clips; frames and metrics as pipeline.evaluate."""
    train = D.load_split(root, "sht", "train")
    ann = D.read_annotations(root / "test_frame_mask", "sht")
    test = D.load_split(root, "sht", "test", annotation=ann)
    dim = D.feature_width(train[0].paths)
    feats = {v.name: D.load_features(v.paths, dim).astype(np.float64) for v in train + test}   # (clips, crops, D)
    x = np.concatenate([feats[v.name].reshape(-1, feats[v.name].shape[-1]) for v in train])
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = {n: (f - mean) / std for n, f in feats.items()}
    centre = np.concatenate([z[v.name].reshape(-1, z[v.name].shape[-1]) for v in train if v.label == 0]).mean(0)
    scored = []
    for v in test:
        s = np.linalg.norm(z[v.name] - centre, axis=-1).mean(1)                  # (clips,) crops averaged
        scored.append(ScoredVideo(v.name, v.label, "Normal" if v.label == 0 else "", clip_to_frame_scores(s),
                                  ann.frame_labels(v.name, CLIP_LEN * len(s))))
    rep = frame_report(scored)
    return {"auc": rep["auc"], "ap": rep["ap"], "auc_abn": rep.get("auc_abnormal"), **{k: None for k in MECHANISM}}


class Results:
    """``results.jsonl``: one JSON line per finished run, appended (and synced) as it finishes."""

    def __init__(self, path: Path):
        self.path, self.rows = path, {}
        if path.exists():
            for i, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    row = json.loads(line)
                    self.rows[row["key"]] = row
                except (ValueError, KeyError, TypeError):
                    print(f"warning: {path}:{i}: not a result line (an interrupted write?); ignored", file=sys.stderr)

    def add(self, row: dict) -> None:
        self.rows[row["key"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def result_key(split: str, config: str, seed, run_hash: str) -> str:
    return f"{split}|{config}|{seed}|{run_hash}"


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ----------------------------------------------------------------------------- step 4: the table

def _stats(values: list) -> tuple[float | None, float | None, int]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None, 0
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None), len(v)


def _pm(values: list, scale: float = 100.0, signed: bool = False) -> str:
    m, s, n = _stats(values)
    if m is None:
        return "-"
    text = f"{scale * m:+.1f}" if signed else f"{scale * m:.1f}"
    return text + (f" ± {scale * s:.1f}" if s is not None else "")


def _mean(values: list) -> str:
    m, _, _ = _stats(values)
    return "-" if m is None else f"{m:.3f}"


def render(rows: list[dict], configs: list[str], splits: list[str], seeds: list[int], header: str,
           coverages: list[str] | None = None) -> str:
    """The markdown tables (module docstring, step 4) from the current plan's result rows: one row per
    (configuration, coverage), with the frame AUC, AP and the AUC within the anomalous test videos."""
    coverages = coverages or sorted({r.get("coverage", "-") for r in rows})
    by = {}
    for r in rows:
        by.setdefault((r["split"], r["config"], r.get("coverage", coverages[0])), []).append(r)
    random_splits = [s for s in splits if s != "tevad"]
    out = [header, ""]
    for title, group in ((f"TEVAD split, {len(seeds)} seed(s): mean ± std over seeds", ["tevad"]),
                         (f"{len(random_splits)} random split(s) of the same sizes, {len(seeds)} seed(s): "
                          f"mean ± std over splits x seeds", random_splits)):
        if not [s for s in group if s in splits]:
            continue
        out += [f"**{title}**", "",
                "| configuration | coverage | flags | AUC (%) | AP (%) | AUC in anomalous videos (%) | "
                + " | ".join(MECHANISM) + " | runs |",
                "|---|---|---|---|---|---|" + "---|" * len(MECHANISM) + "---|"]
        for cov in coverages:
            for c in configs:
                rs = [r for s in group for r in by.get((s, c, cov), [])]
                flags = CONFIGS[c][1]
                flags = "(untrained)" if flags is None else (f"`{flags}`" if flags else "(none)")
                out.append(f"| {CONFIGS[c][0]} | {cov} | {flags} | {_pm([r['auc'] for r in rs])} | "
                           f"{_pm([r['ap'] for r in rs])} | {_pm([r.get('auc_abn') for r in rs])} | "
                           + " | ".join(_mean([r.get(k) for r in rs]) for k in MECHANISM) + f" | {len(rs)} |")
            if all(p in configs for p in PAIR):
                a = {(r["split"], r["seed"]): r for s in group for r in by.get((s, PAIR[0], cov), [])}
                b = {(r["split"], r["seed"]): r for s in group for r in by.get((s, PAIR[1], cov), [])}
                both = sorted(set(a) & set(b))
                diff = {k: [a[p][k] - b[p][k] for p in both if a[p].get(k) is not None and b[p].get(k) is not None]
                        for k in ("auc", "ap", "auc_abn")}
                out.append(f"| {CONFIGS[PAIR[0]][0]} - {CONFIGS[PAIR[1]][0]} (paired) | {cov} | same split and seed | "
                           f"{_pm(diff['auc'], signed=True)} | {_pm(diff['ap'], signed=True)} | "
                           f"{_pm(diff['auc_abn'], signed=True)} | "
                           + " | ".join("" for _ in MECHANISM) + f" | {len(both)} pairs |")
        out.append("")
    shown = [c for c in PAIR if c in configs]
    if shown:
        out += ["**Frame AUC (%) per split, mean over seeds**", "",
                "| configuration | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        for cov in coverages:
            for c in shown:
                cells = []
                for s in splits:
                    m, _, _ = _stats([r["auc"] for r in by.get((s, c, cov), [])])
                    cells.append("-" if m is None else f"{100 * m:.1f}")
                out.append(f"| {CONFIGS[c][0]} ({cov}) | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- main

def parse_configs(text: str) -> list[str]:
    """Named configurations (CONFIGS), and custom ones as ``NAME=FLAGS`` (added to CONFIGS), e.g.
    ``defaults,mil,lr1e-3=--lr 1e-3``; the table keeps CONFIGS' order, custom ones last."""
    names = []
    for c in (c.strip() for c in text.split(",")):
        if "=" in c:
            name, flags = (v.strip() for v in c.split("=", 1))
            if not name or name in CONFIGS and CONFIGS[name][1] != flags:
                raise argparse.ArgumentTypeError(f"custom configuration {c!r}: give it a new name")
            CONFIGS[name] = (name, flags)
            c = name
        if c:
            names.append(c)
    bad = [c for c in names if c not in CONFIGS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown configuration(s) {', '.join(bad) or '(none)'}; "
                                         f"choose from {', '.join(CONFIGS)} or give NAME=FLAGS")
    return [c for c in CONFIGS if c in names]                      # the table's order


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/ped2_benchmark.py",
        description="UCSD Ped2, weakly supervised: train and evaluate the method's configurations and "
                    "plain MIL on real features over TEVAD's split and random splits of the same sizes, "
                    "several seeds each, and print a markdown table (frame AUC, AP, and the clustering's "
                    "purity and pseudo-label precision measured against the training videos' frame truth). "
                    "Every step is cached in --work; a rerun only runs what is missing.",
        epilog="Configurations: " + "; ".join(f"{k} = {v[0]}" + (f" ({v[1] or 'no flags'})" if v[1] is not None else "")
                                              for k, v in CONFIGS.items())
               + ". See the module docstring for the steps and the files in --work.",
        formatter_class=HelpFormatter)
    p.add_argument("--frames", type=Path, default=DEFAULT_DATA / "frames",
                   help="Ped2 frame folders, one per video (extracted once into WORK/features)")
    p.add_argument("--truth", type=Path, default=None, help="videos.json (default: beside --frames)")
    p.add_argument("--tevad-train", type=Path, default=None,
                   help="TEVAD's training list (default: ped2-i3d.list beside the truth file)")
    p.add_argument("--tevad-test", type=Path, default=None,
                   help="TEVAD's test list (default: ped2-i3d-test.list beside the truth file)")
    p.add_argument("--features", type=Path, default=None,
                   help="use these existing <video>.npy features instead of extracting from --frames")
    p.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "ped2",
                   help="cache folder: features/, roots/, runs/, results.jsonl")
    p.add_argument("--coverage", type=lambda t: [c.strip() for c in t.split(",") if c.strip()],
                   default=["grid"], metavar="LIST",
                   help="pipeline.extract --coverage of the features, comma-separated for a column of each: "
                        "grid (the default extraction), full, center, ten; each extracted once into WORK/features[-<coverage>]")
    p.add_argument("--splits", type=int, default=10, help="random splits r0..r{N-1} besides TEVAD's")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of each trained configuration")
    p.add_argument("--configs", type=parse_configs, default=list(CONFIGS),
                   help="comma-separated subset of (default: all): " + ",".join(CONFIGS) + "; or NAME=FLAGS for any other pipeline.train flags, e.g. lr1e-3=--lr 1e-3")
    p.add_argument("--control-seeds", type=int, default=3,
                   help=f"seeds of the component and control rows ({', '.join(CONTROLS)}); at most --seeds")
    p.add_argument("--epochs", type=int, default=50, help="training epochs (pipeline.train's default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    p.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="K/N",
                   help="run only every N-th missing run, starting at the K-th (0-based): N processes with "
                        "K = 0..N-1 share the work and the results file; a last run without --shard prints the table")
    return p


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes K/N, e.g. 0/3, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


#: Rows that measure a component or a control rather than a headline configuration (--control-seeds).
CONTROLS = ("bc", "full", "ones", "random")


def run_benchmark(args) -> str | None:
    if args.splits < 0 or args.seeds < 1 or args.epochs < 1:
        raise ValueError("--splits must be >= 0, --seeds and --epochs >= 1")
    truth_path = args.truth or args.frames.parent / "videos.json"
    lists = (args.tevad_train or truth_path.parent / "ped2-i3d.list",
             args.tevad_test or truth_path.parent / "ped2-i3d-test.list")
    for path, what in ((truth_path, "the frame truth, --truth"), (lists[0], "TEVAD's training list, --tevad-train"),
                       (lists[1], "TEVAD's test list, --tevad-test")):
        if not path.is_file():
            raise Skip(f"{path} not found ({what})")
    truth = read_truth(truth_path)
    truth_digest = hashlib.sha1(truth_path.read_bytes()).hexdigest()[:16]
    tevad = tevad_split(*lists, truth)
    n_abn = sum(is_anomalous(truth, n) for n in tevad[0])
    splits = {"tevad": tevad, **{f"r{k}": random_split(k, truth, n_abn, len(tevad[0]) - n_abn)
                                 for k in range(args.splits)}}
    args.work = args.work.resolve()
    if args.features and len(args.coverage) > 1:
        raise ValueError("--features gives one feature folder: pass one --coverage (what it holds)")
    seeds = list(range(args.seeds))

    from pipeline.apps import ablation as S
    from pipeline.features.video import DEFAULT_COVERAGE
    results = Results(args.work / "results.jsonl")
    plan = []                                      # (split, root, config, seed, key, hash, coverage, features)
    for cov in args.coverage:
        features = ensure_features(args, sorted(truth), cov)
        roots = args.work / ("roots" if cov == DEFAULT_COVERAGE else f"roots-{cov}")
        for name, (train, test) in splits.items():
            root = build_root(roots / name, features, train, test, truth, truth_digest)
            fp = {**S.data_fingerprint(root, "sht"), "features": str(features.resolve())}
            for seed in seeds:
                for c in args.configs:
                    if CONFIGS[c][1] is None and seed != seeds[0]:
                        continue                       # untrained: one score per split
                    if c in CONTROLS and seed >= args.control_seeds:
                        continue                       # the controls: fewer seeds (--control-seeds)
                    h = run_key(c, root, seed, args.epochs, args.device, fp)
                    s = "-" if CONFIGS[c][1] is None else seed
                    plan.append((name, root, c, s, result_key(name, c, s, h), h, cov, features))
    todo = [p for p in plan if p[4] not in results.rows]
    k, n = args.shard
    todo = [p for i, p in enumerate(todo) if i % n == k]      # --shard: this process's share
    print(f"{len(splits)} split(s) x {len(args.configs)} configuration(s): {len(plan)} runs, "
          f"{len(plan) - len(todo)} cached in {results.path}, {len(todo)} to do", flush=True)

    t0, trained = time.time(), 0
    with S.shared_training_set():
        for i, (split, root, c, seed, key, h, cov, features) in enumerate(todo, 1):
            t = time.time()
            if CONFIGS[c][1] is None:
                r = distance_score(root)
            else:
                run_dir = args.work / "runs" / split / f"{c}-{h[:8]}" / f"seed{seed}"   # h: coverage too
                r = train_and_evaluate(c, root, run_dir, seed, args.epochs, args.device)
                trained += 1
            sec = time.time() - t
            results.add({"key": key, "split": split, "config": c, "seed": seed, "hash": h,
                         "flags": CONFIGS[c][1], "epochs": args.epochs, "features": str(features), "coverage": cov,
                         "seconds": round(sec, 1), **r})
            left = sum(CONFIGS[p[2]][1] is not None for p in todo[i:])
            eta = (time.time() - t0) / max(trained, 1) * left
            print(f"[{i}/{len(todo)}] {cov} {split} {c} seed {seed}: AUC {100 * r['auc']:.1f} AP {100 * r['ap']:.1f} "
                  f"AUC in anomalous videos {100 * (r.get('auc_abn') or float('nan')):.1f} "
                  f"({sec:.1f}s; ETA {_fmt_time(eta)})", flush=True)

    command = (f"python bench/ped2_benchmark.py" + (f" --features {args.features}" if args.features else "")
               + f" --coverage {','.join(args.coverage)} --splits {args.splits} --seeds {args.seeds} --configs {','.join(args.configs)}"
               + (f" --control-seeds {args.control_seeds}" if args.control_seeds != 3 else "")
               + (f" --epochs {args.epochs}" if args.epochs != 50 else ""))
    header = (f"UCSD Ped2, weakly supervised; Inception-I3D features, coverage {', '.join(args.coverage)}; "
              f"{args.epochs} epochs, T=100, final model; `{command}`")
    rows = [dict(results.rows[p[4]], coverage=p[6]) for p in plan]
    table = render(rows, args.configs, list(splits), seeds, header, args.coverage)
    print()
    print(table)
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")
        print(f"wrote {args.markdown}")
    return table


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def go():
        try:
            run_benchmark(args)
        except Skip as e:
            print(f"skipped: {e}")
    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
