"""The paper's ablation tables (what ``python -m pipeline.study`` runs): cells of training
settings, runs keyed by their settings and data, evaluation, aggregation over seeds, the report.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.model import data as D
from pipeline.scoring import checkpoint
from pipeline.scoring import evaluation
from pipeline.model import training as TR
from pipeline.common.io import atomic_write_json, atomic_write_text
from pipeline.common.metrics import CLIP_LEN, ScoredVideo, clip_to_frame_scores, frame_report

KEY_VERSION = 2   # 2: graph and clustering on undropped activations (issue 8): v1 runs are stale
#: TrainConfig fields that do not change a run's result and stay out of the cache key.
KEY_EXCLUDE = ("out", "device", "resume", "overwrite", "quiet", "keep_epochs", "cache")
#: Options added to TrainConfig after the first studies were cached, each with the value that gives
#: the behaviour from before it existed: at that value the field stays out of the key, so adding an
#: option does not invalidate every cached run. Add a line here when adding such an option; any
#: other field, new or changed, is part of the key (a stale run is never reused).
KEY_NEUTRAL = {"standardize": False, "residual": True}
TABLES = ("2", "3", "4", "fig2")
DEFAULT_ALPHAS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
TEST_SELECTED_LABEL = "test-set selection (optimistic, not a valid protocol)"
SELECTIONS = ("validation", "final", "test_selected")


# ----------------------------------------------------------------------------- cells

@dataclass(frozen=True)
class Cell:
    """One row of one table: a set of TrainConfig overrides."""
    id: str                    # e.g. "t2-bc"; used by --cells
    table: str                 # "2", "3", "4" or "fig2"
    label: str                 # the row's name in the paper
    overrides: dict = field(default_factory=dict, hash=False)
    paper: float | None = None  # the paper's UCF-Crime AUC (%) for this row, one run
    columns: tuple = ()        # extra table columns (Table 2's check marks)


BACKBONE = dict(bc=False, bcg=False, cross_batch="none")
PLUS_BC = dict(bc=True, bcg=False, cross_batch="none")
PLUS_CBL = dict(bc=True, bcg=False, cross_batch="1")
FULL = dict(bc=True, bcg=True, cross_batch="1")


def build_cells(tables=TABLES, alphas=DEFAULT_ALPHAS) -> list[Cell]:
    """The cells of the selected tables, in the paper's order."""
    cells = []
    if "2" in tables:
        cells += [Cell("t2-backbone", "2", "backbone", BACKBONE, 84.67, ("✓", "", "", "")),
                  Cell("t2-bc", "2", "+L_bc", PLUS_BC, 85.21, ("✓", "✓", "", "")),
                  Cell("t2-cbl", "2", "+CBL", PLUS_CBL, 85.56, ("✓", "✓", "✓", "")),
                  Cell("t2-bcg", "2", "+BCG (full)", FULL, 85.87, ("✓", "✓", "✓", "✓")),
                  Cell("t2-ones", "2", "control: BCG with every abnormal segment boosted",
                       {**FULL, "pseudo_labels": "ones"}, None, ("✓", "✓", "✓", "ones")),
                  Cell("t2-random", "2", "control: BCG with random pseudo-labels",
                       {**FULL, "pseudo_labels": "random"}, None, ("✓", "✓", "✓", "random"))]
    if "3" in tables:
        cells += [Cell(f"t3-{layer}", "3", name, {**PLUS_BC, "cluster_layer": layer}, paper)
                  for layer, name, paper in (("fc", "FC", 84.96), ("gcn1", "GCN-1", 85.21),
                                             ("gcn2", "GCN-2", 84.27))]
    if "4" in tables:
        cells += [Cell(f"t4-way{w}", "4", f"way{w}", {**PLUS_CBL, "cross_batch": w}, paper)
                  for w, paper in (("1", 85.56), ("2", 85.42), ("3", 85.51), ("4", 85.34))]
    if "fig2" in tables:
        cells += [Cell(f"fig2-{a:g}", "fig2", f"alpha={a:g}", {**FULL, "alpha": float(a)},
                       85.87 if abs(a - 1.3) < 1e-9 else None) for a in alphas]
    return cells


# ----------------------------------------------------------------------------- cache keys

def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    if path.is_dir():   # ShanghaiTech test_frame_mask/: names and contents of the masks
        for f in sorted(path.rglob("*")):
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def data_fingerprint(data_root: Path, dataset: str) -> dict:
    """What identifies a data root's content cheaply: hashes of its split lists and annotation,
    and the count and total size of its feature files. Regenerating a synthetic set with another
    seed changes the annotation, hence every cache key."""
    fp = {}
    for kind in ("train", "test", "annotations"):
        p = D.find_file(data_root, dataset, kind)
        fp[kind] = f"{p.relative_to(data_root)}:{_sha1_file(p)[:16]}"
    feats = [p for p in data_root.rglob("*.npy")
             if "test_frame_mask" not in p.parts and not p.name.startswith(("gt", "synth"))]
    fp["n_feature_files"] = len(feats)
    fp["feature_bytes"] = int(sum(p.stat().st_size for p in feats))
    return fp


def key_material(cfg: TR.TrainConfig, fingerprint: dict) -> dict:
    """What a run's cache key hashes: its resolved config (minus KEY_EXCLUDE) and the data fingerprint."""
    d = {k: v for k, v in asdict(cfg.resolved()).items()
         if k not in KEY_EXCLUDE and not (k in KEY_NEUTRAL and v == KEY_NEUTRAL[k])}
    d["data"] = fingerprint
    d["key_version"] = KEY_VERSION
    return d


def run_key(cfg: TR.TrainConfig, fingerprint: dict) -> str:
    """Cache key of a run: 16 hex digits of the SHA-1 of :func:`key_material` as sorted JSON."""
    return hashlib.sha1(json.dumps(key_material(cfg, fingerprint), sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- one run

def _finished_epochs(run_dir: Path) -> int:
    """The last epoch recorded in log.jsonl (0 when none)."""
    log = run_dir / "log.jsonl"
    if not log.exists():
        return 0
    rows = [json.loads(l) for l in log.read_text().splitlines() if l.strip()]
    return max((r["epoch"] for r in rows), default=0)


def _headline(report: dict) -> float | None:
    v = report.get(report.get("headline", "auc"))
    return None if v is None else float(v)


@torch.no_grad()
def sweep_checkpoints(dataset: str, data_root: str, checkpoints: list[Path], device: str = "cpu") -> list[dict]:
    """Test reports of many checkpoints in one pass over the test set.

    The same protocol as :func:`pipeline.scoring.evaluation.evaluate` (its ``score_clips`` and
    ``metrics.frame_report``; tests/test_study.py checks that the numbers are identical), but
    each test video is read once and scored by every model: the per-epoch sweep behind the
    (optimistic) test-selected column, which also yields the final and validation-selected
    epochs' reports. Costs one model forward over the test set per checkpoint.
    """
    root = Path(data_root)
    dev = TR.pick_device(device)
    models = [checkpoint.load_model(c, dev)[0] for c in checkpoints]
    if not models:
        return []
    annotation = D.read_annotations(D.find_file(root, dataset, "annotations"), dataset)
    videos = D.load_split(root, dataset, "test", annotation=annotation)
    annotation.check_names([v.name for v in videos])
    clip_scores = [[] for _ in models]                                   # [model][video] (clips,)
    for v in videos:
        feats = D.load_features(v.paths, dim=models[0].in_dim)           # (clips, crops, D)
        for m, acc in zip(models, clip_scores):
            acc.append(checkpoint.score_clips(m, feats, dev))
    reports = []
    for acc in clip_scores:
        scored = []
        for v, s in zip(videos, acc):
            cls = v.cls or annotation.classes.get(v.name, "")
            scored.append(ScoredVideo(v.name, int(v.label), cls or ("Normal" if v.label == 0 else ""),
                                      clip_to_frame_scores(s), annotation.frame_labels(v.name, CLIP_LEN * len(s))))
        r = frame_report(scored)
        r["headline"] = evaluation.HEADLINE[dataset]
        reports.append(r)
    return reports


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch recorded in a checkpoint (best.pt) or None."""
    return torch.load(path, map_location="cpu", weights_only=True).get("epoch")


def evaluate_run(cfg: TR.TrainConfig, run_dir: Path, device: str, test_selection: bool) -> dict:
    """Test reports of a finished run: the validation-selected model (best.pt), the final model
    (model.pt) and, labelled optimistic, the epoch with the best test score. Returns eval.json's content.

    With every epoch's checkpoint at hand (``test_selection``), all epochs are scored in one pass
    over the test set (:func:`sweep_checkpoints`); best.pt and model.pt are the checkpoints of
    their epochs, so their reports are read from the sweep. Otherwise each is scored by
    :func:`pipeline.scoring.evaluation.evaluate`.
    """
    best = run_dir / "best.pt"
    val_epoch = _checkpoint_epoch(best) if best.exists() else None
    protocol = (f"best.pt: highest video-level AUC (then lowest k-max loss) on {cfg.val_fraction:g} of the "
                f"training videos held out, stratified by label" if best.exists()
                else "no validation split: the final model stands in")
    out = {"headline": evaluation.HEADLINE[cfg.dataset], "validation_protocol": protocol, "validation_epoch": val_epoch,
           "final": None, "validation": None, "test_selected": None, "epochs": []}
    ckpts = sorted((run_dir / "epochs").glob("epoch_*.pt")) if test_selection else []
    epochs = [int(c.stem.split("_")[1]) for c in ckpts]
    if test_selection and ckpts and epochs[-1] == cfg.epochs and (val_epoch is None or val_epoch in epochs):
        reports = sweep_checkpoints(cfg.dataset, cfg.data_root, ckpts, device)
        by_epoch = dict(zip(epochs, reports))
        out["epochs"] = [{"epoch": e, "auc": r["auc"], "ap": r["ap"], "headline": _headline(r)}
                         for e, r in by_epoch.items()]
        out["final"] = {**by_epoch[cfg.epochs], "checkpoint_epoch": cfg.epochs, "selected_by": "final"}
        if val_epoch is not None:
            out["validation"] = {**by_epoch[val_epoch], "checkpoint_epoch": val_epoch, "selected_by": "validation"}
        e_best = max(epochs, key=lambda e: -1.0 if _headline(by_epoch[e]) is None else _headline(by_epoch[e]))
        out["test_selected"] = {**by_epoch[e_best], "checkpoint_epoch": e_best, "selected_by": "test",
                                "label": TEST_SELECTED_LABEL}
        out["scored_by"] = "study.sweep_checkpoints (evaluate.score_clips + metrics.frame_report), all epochs"
    else:
        ev = lambda ckpt: evaluation.evaluate(cfg.dataset, cfg.data_root, str(ckpt), device=device, quiet=True)
        out["final"] = ev(run_dir / "model.pt")
        if val_epoch is not None and val_epoch == out["final"].get("checkpoint_epoch"):
            out["validation"] = {**out["final"], "selected_by": "validation"}   # the same weights
        elif best.exists():
            out["validation"] = ev(best)
        out["scored_by"] = "evaluate.evaluate"
    return out


MECHANISM = ("purity", "pseudo_precision", "anomaly_rate", "single_cluster")


def mechanism_summary(run_dir: Path, keys: tuple = MECHANISM) -> dict:
    """What the clustering found in training (train's log.jsonl, ``pipeline.model.diagnostics``): each measure
    of ``keys`` averaged over the last third of the epochs; truth-based ones only exist on generated data."""
    log_path = run_dir / "log.jsonl"
    if not log_path.exists():
        return {}
    log = [json.loads(l) for l in log_path.read_text().splitlines() if l.strip()]
    tail = log[-max(1, len(log) // 3):]
    return {k: float(np.mean([r[k] for r in tail if k in r])) for k in keys if any(k in r for r in tail)}


def run_one(cfg: TR.TrainConfig, run_dir: Path, device: str, test_selection: bool,
            keep_checkpoints: bool, material: dict | None = None) -> tuple[dict, str]:
    """Train (or resume) and evaluate one run unless its eval.json exists.

    Returns (eval dict, what happened: 'cached', 'evaluated' or 'trained')."""
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        return json.loads(eval_path.read_text()), "cached"
    run_dir.mkdir(parents=True, exist_ok=True)
    if material is not None:
        atomic_write_json(run_dir / "key.json", material)
    t0 = time.time()
    what = "evaluated"
    if not ((run_dir / "model.pt").exists() and _finished_epochs(run_dir) >= cfg.epochs):
        TR.train(replace(cfg, out=str(run_dir), resume=True, quiet=True, keep_epochs=test_selection,
                         device=device))
        what = "trained"
    t1 = time.time()
    ev = evaluate_run(cfg, run_dir, device, test_selection)
    ev.update(mechanism=mechanism_summary(run_dir), config=asdict(replace(cfg, out=str(run_dir))),
              run_dir=str(run_dir), device=device,
              train_seconds=round(t1 - t0, 2) if what == "trained" else None,
              eval_seconds=round(time.time() - t1, 2))
    atomic_write_json(eval_path, ev)
    if not keep_checkpoints and (run_dir / "epochs").exists():
        shutil.rmtree(run_dir / "epochs")   # their test scores are in eval.json
    return ev, what


class _LastTrainingSet:
    """Wraps :func:`pipeline.model.training.load_training_set` so that the runs of one study process load
    and resample the training videos once (71 s for UCF-Crime-sized data on 2 cores) instead of
    once per run. Keyed on the videos, T and the feature width; holds only the last set."""

    def __init__(self, fn):
        self.fn, self.key, self.value, self.loads = fn, None, None, 0

    def __call__(self, videos, *args, **kwargs):
        key = (tuple((v.name, int(v.label), tuple(str(p) for p in v.paths)) for v in videos),
               args, tuple(sorted(kwargs.items())))
        if key != self.key:
            self.key, self.value = None, None            # free the previous set first
            self.value, self.key = self.fn(videos, *args, **kwargs), key
            self.loads += 1
        return self.value


@contextmanager
def shared_training_set():
    """Within the block, train() reuses the training set loaded by the previous run (same data)."""
    original = TR.load_training_set
    TR.load_training_set = _LastTrainingSet(original)
    try:
        yield TR.load_training_set
    finally:
        TR.load_training_set = original


# ----------------------------------------------------------------------------- the study

@dataclass
class Job:
    key: str
    seed: int
    cfg: TR.TrainConfig
    cells: list = field(default_factory=list)    # every cell this run serves
    material: dict | None = None                 # what the key hashes (saved as key.json)


def plan_jobs(cells: list[Cell], seeds_of: dict, base: TR.TrainConfig, fingerprint: dict) -> list[Job]:
    """One job per distinct (config, seed); runs ordered seed-major so a stopped study still has
    whole tables for its first seeds."""
    jobs: dict[str, Job] = {}
    max_seeds = max((len(seeds_of[c.table]) for c in cells), default=0)
    for i in range(max_seeds):
        for c in cells:
            seeds = seeds_of[c.table]
            if i >= len(seeds):
                continue
            cfg = replace(base, seed=seeds[i], **c.overrides)
            key = run_key(cfg, fingerprint)
            jobs.setdefault(key, Job(key, seeds[i], cfg, material=key_material(cfg, fingerprint))).cells.append(c)
    return list(jobs.values())


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _stats(values: list) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0, "values": values}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
            "n": len(v), "values": values}


def aggregate(cells: list[Cell], jobs: list[Job], evals: dict) -> dict:
    """Per cell and selection: mean, sample std and n of the headline metric (fractions, not %)."""
    out = {}
    for c in cells:
        mine = [j for j in jobs if c in j.cells and j.key in evals]
        per = {sel: [] for sel in SELECTIONS}
        runs = []
        for j in sorted(mine, key=lambda j: j.seed):
            ev = evals[j.key]
            final = _headline(ev["final"])
            val = _headline(ev["validation"]) if ev.get("validation") else final
            test = _headline(ev["test_selected"]) if ev.get("test_selected") else None
            per["validation"].append(val)
            per["final"].append(final)
            per["test_selected"].append(test)
            runs.append({"seed": j.seed, "key": j.key, "validation": val, "final": final, "test_selected": test,
                         "validation_epoch": (ev.get("validation") or {}).get("checkpoint_epoch"),
                         "test_selected_epoch": (ev.get("test_selected") or {}).get("checkpoint_epoch"),
                         "train_seconds": ev.get("train_seconds"), "mechanism": ev.get("mechanism", {})})
        out[c.id] = {"table": c.table, "label": c.label, "overrides": c.overrides, "paper_ucf_auc": c.paper,
                     "planned_seeds": len({j.seed for j in jobs if c in j.cells}), "runs": runs,
                     **{sel: _stats(v) for sel, v in per.items()},
                     "mechanism": {k: _stats([r["mechanism"].get(k) for r in runs]) for k in MECHANISM}}
    return out


def run_study(args: argparse.Namespace) -> dict:
    """Plan, run (or read from the cache) and report a study; returns results.json's content."""
    t_start = time.time()
    data_root = Path(args.data_root or f"data/{args.dataset}").resolve()
    if not data_root.is_dir():
        raise FileNotFoundError(f"{data_root}: data root not found")
    out = Path(args.out or f"studies/{args.dataset}")
    tables = parse_tables(args.tables)
    cells = build_cells(tables, args.alphas)
    if args.cells:
        wanted = [s.strip() for s in args.cells.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in {c.id for c in cells}]
        if unknown:
            raise ValueError(f"--cells: unknown cell id(s) {unknown}; known: {[c.id for c in cells]}")
        cells = [c for c in cells if c.id in wanted]
    seeds_of = parse_seeds(args.seeds, args.table_seeds, args.first_seed, tables)
    base = TR.TrainConfig(dataset=args.dataset, data_root=str(data_root), epochs=args.epochs,
                          val_fraction=args.val_fraction, T=args.T, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, dropout=args.dropout, lambda1=args.lambda1,
                          mu=args.mu, kmeans_iters=args.kmeans_iters, adjacency=args.adjacency,
                          quiet=True, **({"feature_dim": args.feature_dim} if args.feature_dim else {})).resolved()
    fingerprint = data_fingerprint(data_root, args.dataset)
    jobs = plan_jobs(cells, seeds_of, base, fingerprint)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"study: {len(cells)} cells, {len(jobs)} distinct runs, {args.epochs} epochs, "
        f"val fraction {args.val_fraction:g}, out {out}")

    evals, counts, durations = {}, {"cached": 0, "trained": 0, "evaluated": 0, "missing": 0, "failed": 0}, []
    todo = [j for j in jobs if not (out / "runs" / j.key / "eval.json").exists()]
    with shared_training_set():
        for i, job in enumerate(jobs, 1):
            run_dir = out / "runs" / job.key
            names = " = ".join(f"{'fig2' if c.table == 'fig2' else 'table ' + c.table} {c.label}" for c in job.cells)
            if (run_dir / "eval.json").exists():
                evals[job.key] = json.loads((run_dir / "eval.json").read_text())
                counts["cached"] += 1
                say(f"[run {i}/{len(jobs)}] {names}, seed {job.seed}: cached")
                continue
            if args.report_only:
                counts["missing"] += 1
                continue
            left = len(todo) - len(durations)
            # the first run also loads the training set; later runs reuse it
            typical = np.mean(durations[1:]) if len(durations) > 1 else (durations[0] if durations else None)
            eta = f"ETA {_fmt_time(typical * left)}" if typical is not None else "ETA after the first run"
            say(f"[run {i}/{len(jobs)}] {names}, seed {job.seed} ... ({left} to compute, {eta})")
            t0 = time.time()
            try:
                evals[job.key], what = run_one(job.cfg, run_dir, args.device, not args.no_test_selection,
                                               args.keep_checkpoints, job.material)
            except (KeyboardInterrupt, D.DataError, FileNotFoundError):
                raise
            except Exception as e:  # noqa: BLE001 - a diverged run is reported, the study goes on
                counts["failed"] += 1
                atomic_write_text(run_dir / "error.txt", f"{type(e).__name__}: {e}\n")
                say(f"    FAILED after {_fmt_time(time.time() - t0)}: {type(e).__name__}: {e} "
                    f"(see {run_dir / 'error.txt'}; a rerun retries it)")
                continue
            durations.append(time.time() - t0)
            counts[what] += 1
            if (run_dir / "error.txt").exists():
                (run_dir / "error.txt").unlink()
            ev = evals[job.key]
            v = _headline(ev["validation"]) if ev["validation"] else None
            ts = _headline(ev["test_selected"]) if ev["test_selected"] else None
            say(f"    {what} in {_fmt_time(durations[-1])}: {ev['headline']} val-selected {_pct(v)}, final "
                f"{_pct(_headline(ev['final']))}, test-selected {_pct(ts)}")

    results = {
        "dataset": args.dataset, "data_root": str(data_root), "out": str(out),
        "headline": evaluation.HEADLINE[args.dataset], "epochs": args.epochs, "val_fraction": args.val_fraction,
        "seeds": {t: seeds_of[t] for t in tables}, "tables": list(tables),
        "train_config": {k: v for k, v in asdict(base).items() if k not in ("out", "quiet", "resume", "overwrite")},
        "data_fingerprint": fingerprint, "synth": read_synth_settings(data_root),
        "session": {**counts, "wall_seconds": round(time.time() - t_start, 1), "device": args.device,
                    "run_seconds": [round(d, 1) for d in durations]},
        "mean_train_seconds": _mean([e.get("train_seconds") for e in evals.values()]),
        "cells": aggregate(cells, jobs, evals),
        "gap_test_minus_validation": gap(evals),
    }
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_alpha(results, out / "fig2_alpha.png") if "fig2" in tables else None
    results["figure"] = str(fig) if fig else None
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", render_report(results, cells))
    say(f"study done in {_fmt_time(time.time() - t_start)}: {counts['trained']} trained, "
        f"{counts['evaluated']} evaluated only, {counts['cached']} cached"
        + (f", {counts['missing']} missing" if counts["missing"] else "")
        + (f", {counts['failed']} FAILED" if counts["failed"] else "")
        + f"; report {out / 'report.md'}")
    return results


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 2) if xs else None


def gap(evals: dict) -> dict | None:
    """Test-selected minus validation-selected headline over all runs (percentage points)."""
    d = []
    for ev in evals.values():
        if ev.get("test_selected") and _headline(ev["test_selected"]) is not None:
            val = _headline(ev["validation"]) if ev.get("validation") else _headline(ev["final"])
            if val is not None:
                d.append(100 * (_headline(ev["test_selected"]) - val))
    if not d:
        return None
    return {"mean_points": float(np.mean(d)), "max_points": float(np.max(d)), "n_runs": len(d)}


def read_synth_settings(data_root: Path) -> dict | None:
    """The generator settings of a synthetic data root (synth.json from pipeline.synth), if any."""
    p = data_root / "synth.json"
    if p.exists():
        try:
            s = json.loads(p.read_text())
            return {k: s[k] for k in ("dataset", "seed", "signal", "dim", "crops", "dtype", "lengths",
                                      "lengths_source", "counts", "clips") if k in s}
        except (ValueError, OSError):
            return None
    if (data_root / "synth_truth.npz").exists():
        return {"note": "synth_truth.npz present (generated by pipeline.synth); settings file missing"}
    return None


# ----------------------------------------------------------------------------- report

def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _cell_text(s: dict) -> str:
    if not s or s["n"] == 0:
        return "–"
    sd = "–" if s["std"] is None else f"{100 * s['std']:.2f}"
    return f"{100 * s['mean']:.2f} ± {sd}"


TABLE_HEAD = {
    "2": ("Table 2: ablation of the components", ["backbone", "L_bc", "CBL", "BCG"]),
    "3": ("Table 3: clustering layer (configuration of the +L_bc row)", ["clustering layer"]),
    "4": ("Table 4: cross-batch learning strategy (L_bc on, BCG off)", ["strategy"]),
    "fig2": ("Fig. 2: expansion factor alpha (full model)", ["alpha"]),
}


def render_table(results: dict, cells: list[Cell], table: str) -> str:
    title, first = TABLE_HEAD[table]
    m = results["headline"].upper()
    paper = results["dataset"] == "ucf"
    mech = table == "2" and any(results["cells"][c.id]["mechanism"]["pseudo_precision"]["n"]
                                for c in cells if c.table == "2")
    head = first + [f"{m} (%) validation-selected", "seeds", f"{m} (%) final model",
                    f"{m} (%) test-selected ⚠ optimistic"] + (["paper (UCF-Crime, 1 run)"] if paper else []) + \
        (["cluster purity (%)", "pseudo-label precision (%)", "anomaly rate (%)"] if mech else [])
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in (c for c in cells if c.table == table):
        r = results["cells"][c.id]
        lead = list(c.columns) if table == "2" else [c.label.replace("alpha=", "")]
        row = lead + [f"**{_cell_text(r['validation'])}**", f"{r['validation']['n']}/{r['planned_seeds']}",
                      _cell_text(r["final"]), _cell_text(r["test_selected"])]
        if paper:
            row.append("–" if c.paper is None else f"{c.paper:.2f}")
        if mech:
            row += [_cell_text(r["mechanism"][k]) for k in ("purity", "pseudo_precision", "anomaly_rate")]
        lines.append("| " + " | ".join(row) + " |")
    if mech:
        lines += ["", "Purity and pseudo-label precision: the abnormal videos' segments in training against their "
                  "per-segment truth (generated data), mean of the last third of the epochs; a label that guesses "
                  "has the anomaly rate as its precision."]
    return "\n".join(lines)


def render_report(results: dict, cells: list[Cell]) -> str:
    m = results["headline"].upper()
    metric = "frame-level ROC-AUC" if results["headline"] == "auc" else "frame-level average precision (AP)"
    cfg = results["train_config"]
    seeds = "; ".join(f"{'Fig. 2' if t == 'fig2' else 'Table ' + t}: {len(s)} seed(s) {s}"
                      for t, s in results["seeds"].items())
    synth = results.get("synth")
    synth_txt = ""
    if synth:
        synth_txt = ("\n- Data: **synthetic**, generated by `pipeline.synth` with "
                     + ", ".join(f"{k}={json.dumps(v)}" for k, v in synth.items()) + ".")
    sess = results["session"]
    gap_ = results.get("gap_test_minus_validation")
    gap_txt = (f"Over {gap_['n_runs']} runs, selecting the epoch by its test score would have added "
               f"{gap_['mean_points']:+.2f} points on average (at most {gap_['max_points']:+.2f}) to the "
               f"validation-selected {m}: that is the optimism of the common protocol.") if gap_ else \
        "Test-set selection was not computed (--no-test-selection)."
    parts = [
        f"# Ablation study: {results['dataset']} ({results['data_root']})", "",
        "## Protocol", "",
        f"- Headline: {metric} on the test split, in %, **mean ± sample standard deviation over seeds** "
        f"of the **validation-selected** model; the `seeds` column counts finished runs / planned.",
        (f"- Model selection without the test set: {results['val_fraction']:g} of the training videos are held "
         f"out (stratified by video label, split drawn from the run's seed); after every epoch the model is scored "
         f"on them with a video-level criterion (ROC-AUC of each video's mean top-k segment score, k of eq. 2, "
         f"against its video label; ties broken by lower k-max loss), and the best epoch is kept (`best.pt`)."
         if results["val_fraction"] > 0 else
         "- No validation split (--val-fraction 0): the 'validation-selected' column is the final model."),
        f"- Also shown: the *final* model (last epoch), and, labelled **{TEST_SELECTED_LABEL}**, the best "
        f"of all epochs by test {m}, which is what public code reports. {gap_txt}",
        f"- Training: {results['epochs']} epochs, batch {cfg['batch_size']} (half normal, half abnormal), "
        f"T={cfg['T']}, Adam lr {cfg['lr']:g}, weight decay {cfg['weight_decay']:g}, dropout {cfg['dropout']:g}, "
        f"lambda1 {cfg['lambda1']:g}, mu {cfg['mu']:g}, alpha {cfg['alpha']:g} (Fig. 2 varies it), "
        f"k-means iterations {cfg['kmeans_iters']}, adjacency {cfg['adjacency']}.",
        f"- Seeds: {seeds}. Identical configurations are one run shared by the tables "
        f"(Table 3 GCN-1 = Table 2 +L_bc, Table 4 way1 = +CBL, alpha 1.3 = +BCG).",
        f"- Data root: `{results['data_root']}`." + synth_txt,
        f"- Paper column: the values printed in Cao et al. (ICME 2023) for UCF-Crime (real I3D features, one "
        f"run, selection protocol not stated); for orientation only." if results["dataset"] == "ucf" else "",
        f"- This session: {sess['trained']} run(s) trained, {sess['evaluated']} evaluated only, {sess['cached']} "
        f"from the cache, {sess.get('missing', 0)} missing, {sess.get('failed', 0)} failed; wall time {_fmt_time(sess['wall_seconds'])} "
        f"(device {sess['device']})"
        + (f"; mean training time per run {results['mean_train_seconds']} s." if results["mean_train_seconds"] else "."),
        "",
        "## Results", "",
    ]
    for t in results["tables"]:
        if any(c.table == t for c in cells):
            parts += [render_table(results, cells, t), ""]
            if t == "fig2" and results.get("figure"):
                parts += [f"![{m} against alpha]({Path(results['figure']).name})", ""]
    return "\n".join(p for p in parts if p is not None) + "\n"


def plot_alpha(results: dict, path: Path) -> Path | None:
    """Fig. 2: headline metric against alpha, mean ± std over seeds (validation-selected and final)."""
    rows = [(c["overrides"]["alpha"], c) for c in results["cells"].values() if c["table"] == "fig2"]
    rows = [(a, c) for a, c in sorted(rows, key=lambda r: r[0]) if c["validation"]["n"] > 0]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = results["headline"].upper()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for sel, name, fmt in (("validation", "validation-selected", "o-"), ("final", "final model", "s--")):
        xs = [a for a, c in rows if c[sel]["n"]]
        ys = [100 * c[sel]["mean"] for a, c in rows if c[sel]["n"]]
        es = [100 * (c[sel]["std"] or 0.0) for a, c in rows if c[sel]["n"]]
        ax.errorbar(xs, ys, yerr=es, fmt=fmt, capsize=3, label=name)
    n = max(c["validation"]["n"] for _, c in rows)
    ax.set_xlabel("expansion factor alpha (eq. 5)")
    ax.set_ylabel(f"frame {m} (%)")
    ax.set_title(f"Fig. 2 ({results['dataset']}): mean ± std over {n} seed(s)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- CLI

def parse_tables(text: str) -> tuple[str, ...]:
    """'2,3,fig2' (also 'table2', 'fig', 'fig.2') -> the selected tables in the paper's order."""
    def norm(t: str) -> str:
        t = t.strip().lower().replace(" ", "").replace(".", "").replace("table", "")
        return "fig2" if t in ("fig", "fig2", "figure2") else t
    items = [norm(t) for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in TABLES]
    if bad or not items:
        raise ValueError(f"--tables: expected a comma list of {', '.join(TABLES)}, got {text!r}")
    return tuple(t for t in TABLES if t in items)


def parse_seeds(n: int, per_table: str | None, first: int, tables) -> dict:
    """Seeds of every table: ``n`` seeds from ``first``, or per table from ``--table-seeds 2=3,fig2=1``."""
    if n < 1:
        raise ValueError("--seeds must be at least 1")
    counts = {t: n for t in tables}
    for item in (per_table or "").split(","):
        if not item.strip():
            continue
        try:
            t, k = item.split("=")
            t = parse_tables(t)[0]
            counts[t] = int(k)
        except (ValueError, IndexError):
            raise ValueError(f"--table-seeds: cannot read {item!r}; expected e.g. 2=3,3=2,fig2=1") from None
        if counts[t] < 1:
            raise ValueError(f"--table-seeds: {item!r} asks for fewer than one seed")
    return {t: list(range(first, first + counts[t])) for t in tables}
