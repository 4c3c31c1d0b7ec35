"""pipeline.study: a tiny study through the CLI (tables, results.json, cache, resume) and its parts."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.scoring import evaluation as E
from pipeline.apps import ablation
from pipeline import study as S
from pipeline.model import training as TR
from pipeline.synth.features import make_dataset

REPO = Path(__file__).resolve().parents[1]
DIM = 64
CELL_RE = re.compile(r"\*\*(\d+\.\d\d) ± (\d+\.\d\d)\*\*")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study_data") / "ucf"
    make_dataset(root, "ucf", n_train_normal=6, n_train_abnormal=6, n_test_normal=3, n_test_abnormal=3,
                 min_clips=10, max_clips=24, dim=DIM, signal=3.0, seed=3, progress=False)
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is ~10x faster on a busy 2-core machine (restored after)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def study_argv(data_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data-root", str(data_root), "--out", str(out), "--tables", "2", "--cells", "t2-backbone,t2-bcg",
            "--seeds", "2", "--epochs", "2", "--batch-size", "8", "--T", "8", "--val-fraction", "0.34",
            "--feature-dim", str(DIM), "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def tiny_study(data_root, tmp_path_factory):
    """Two cells x two seeds x two epochs, run through the real CLI in a subprocess."""
    out = tmp_path_factory.mktemp("study_out") / "study"
    proc = subprocess.run([sys.executable, "-m", "pipeline.study", *study_argv(data_root, out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}


def test_cli_tiny_study_report_and_results(tiny_study):
    out, stdout = tiny_study
    # progress: one line per run with the cell names, seed and an ETA
    assert "[run 1/4] table 2 backbone, seed 0" in stdout
    assert "[run 4/4] table 2 +BCG (full), seed 1" in stdout and "ETA" in stdout
    report = (out / "report.md").read_text()
    assert "### Table 2" in report and "## Protocol" in report
    assert "test-set selection (optimistic, not a valid protocol)" in report
    assert "0.34 of the training videos are held out" in report
    assert "synthetic" in report                         # generator settings from synth.json
    rows = [l for l in report.splitlines() if l.startswith("| ✓")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert CELL_RE.fullmatch(cells[4]), row           # headline "mean ± std" of 2 seeds
        assert cells[5] == "2/2"
        assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", cells[6]) and re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", cells[7])

    res = json.loads((out / "results.json").read_text())
    assert res["headline"] == "auc" and res["session"]["trained"] == 4 and res["session"]["cached"] == 0
    assert set(res["cells"]) == {"t2-backbone", "t2-bcg"}
    for cell in res["cells"].values():
        for sel in ablation.SELECTIONS:
            vals = [v for v in cell[sel]["values"]]
            assert len(vals) == 2 and all(0.0 <= v <= 1.0 for v in vals)
            assert cell[sel]["n"] == 2
            assert abs(cell[sel]["mean"] - sum(vals) / 2) < 1e-12
        # the test-selected number is the max over epochs, so never below final or validation-selected
        for r in cell["runs"]:
            assert r["test_selected"] >= max(r["final"], r["validation"]) - 1e-12
    # the cell in the report is the rounded mean of results.json
    row = next(l for l in report.splitlines() if l.startswith("| ✓ |  |"))
    assert f"{100 * res['cells']['t2-backbone']['validation']['mean']:.2f}" in row
    # cache layout: one folder per run, eval.json with the three selections, epochs/ pruned
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 4
    for r in runs:
        ev = json.loads((r / "eval.json").read_text())
        assert ev["final"]["checkpoint_epoch"] == 2 and ev["validation"]["selected_by"] == "validation"
        assert ev["test_selected"]["label"] == ablation.TEST_SELECTED_LABEL and len(ev["epochs"]) == 2
        assert (r / "model.pt").exists() and (r / "best.pt").exists() and not (r / "epochs").exists()
        assert ablation.run_key.__doc__ and json.loads((r / "key.json").read_text())["seed"] in (0, 1)


def test_rerun_is_cached_and_deleted_cell_recomputes_alone(tiny_study, data_root, monkeypatch, capsys):
    out, _ = tiny_study
    calls = []
    real_train = TR.train
    monkeypatch.setattr(TR, "train", lambda cfg: calls.append(cfg) or real_train(cfg))
    before = snapshot(out)
    assert S.main(study_argv(data_root, out)) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["session"]["cached"] == 4 and res["session"]["trained"] == 0 and not calls
    assert snapshot(out) == before                      # nothing under runs/ was rewritten
    assert capsys.readouterr().out.count(": cached") == 4

    # an interrupted study: one run lost its eval.json -> only that run is redone, and it is not retrained
    victim = sorted((out / "runs").iterdir())[1]
    log_before = (victim / "log.jsonl").read_text()
    (victim / "eval.json").unlink()
    assert S.main(study_argv(data_root, out)) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["session"]["cached"] == 3 and res["session"]["evaluated"] == 1 and res["session"]["trained"] == 0
    assert not calls and (victim / "log.jsonl").read_text() == log_before
    after = snapshot(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed and all(k.startswith(f"runs/{victim.name}/") for k in changed)

    # a run that never finished training resumes from its last.pt (here: nothing at all -> trains)
    lost = sorted((out / "runs").iterdir())[2]
    for name in ("eval.json", "model.pt", "best.pt", "last.pt", "log.jsonl"):
        (lost / name).unlink()
    assert S.main(study_argv(data_root, out)) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["session"]["trained"] == 1 and res["session"]["cached"] == 3 and len(calls) == 1
    assert calls[0].resume and calls[0].out == str(lost)


def test_sweep_matches_evaluate(tiny_study, data_root):
    """The one-pass multi-checkpoint scorer reproduces evaluate() exactly."""
    out, _ = tiny_study
    run = sorted((out / "runs").iterdir())[0]
    ref = E.evaluate("ucf", str(data_root), str(run / "model.pt"), device="cpu", quiet=True)
    got = ablation.sweep_checkpoints("ucf", str(data_root), [run / "model.pt", run / "best.pt"], "cpu")
    assert got[0]["auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert got[0]["ap"] == pytest.approx(ref["ap"], abs=1e-12)
    assert got[0]["per_class"] == pytest.approx(ref["per_class"])


def test_cells_share_runs_across_tables(data_root):
    cells = ablation.build_cells(ablation.TABLES, ablation.DEFAULT_ALPHAS)
    assert len(cells) == 6 + 3 + 4 + 6                 # Table 2: 4 rows of the paper + 2 controls
    base = TR.TrainConfig(data_root=str(data_root), epochs=2).resolved()
    fp = ablation.data_fingerprint(data_root, "ucf")
    jobs = ablation.plan_jobs(cells, {t: [0] for t in ablation.TABLES}, base, fp)
    assert len(jobs) == 16                             # FC (the default layer) = +L_bc, way1 = +CBL, alpha 1.3 = +BCG
    shared = {tuple(sorted(c.id for c in j.cells)) for j in jobs if len(j.cells) > 1}
    assert shared == {("t2-bc", "t3-fc"), ("t2-cbl", "t4-way1"), ("fig2-1.3", "t2-bcg")}
    two = ablation.plan_jobs(cells, {"2": [0, 1], "3": [0], "4": [0], "fig2": [0]}, base, fp)
    assert len(two) == 22                               # Table 2's second seed adds 6 runs


def test_run_key(data_root, tmp_path):
    fp = ablation.data_fingerprint(data_root, "ucf")
    cfg = TR.TrainConfig(data_root=str(data_root), epochs=2, seed=0)
    k = ablation.run_key(cfg, fp)
    from dataclasses import replace
    assert ablation.run_key(replace(cfg, out=str(tmp_path), device="cuda", quiet=True), fp) == k
    for change in (dict(seed=1), dict(epochs=3), dict(data_root=str(tmp_path)), dict(alpha=1.2), dict(lr=0.01)):
        assert ablation.run_key(replace(cfg, **change), fp) != k, change
    assert ablation.run_key(cfg, {**fp, "annotations": "other"}) != k
    for name, neutral in ablation.KEY_NEUTRAL.items():       # an option at its neutral value leaves keys alone
        assert name not in ablation.key_material(replace(cfg, **{name: neutral}), fp)
        assert name in ablation.key_material(replace(cfg, **{name: not neutral}), fp)


def test_parsers_and_errors(data_root, tmp_path, capsys):
    assert ablation.parse_tables("fig2,2") == ("2", "fig2")
    assert ablation.parse_tables("table3, Fig.2") == ("3", "fig2")
    with pytest.raises(ValueError, match="--tables"):
        ablation.parse_tables("5")
    assert ablation.parse_seeds(3, "fig2=1,4=2", 10, ("2", "4", "fig2")) == {"2": [10, 11, 12], "4": [10, 11], "fig2": [10]}
    with pytest.raises(ValueError, match="--table-seeds"):
        ablation.parse_seeds(2, "2:3", 0, ("2",))
    assert S.main(["--data-root", str(tmp_path / "nope")]) == 2
    assert "data root not found" in capsys.readouterr().err
    assert S.main(["--data-root", str(data_root), "--cells", "t9-x", "--feature-dim", str(DIM)]) == 2
    assert "unknown cell" in capsys.readouterr().err


def test_report_only_and_fig2_plot(tiny_study, data_root, tmp_path):
    # nothing cached for fig2: --report-only trains nothing and reports the cells as missing
    out = tmp_path / "fig"
    assert S.main(["--data-root", str(data_root), "--out", str(out), "--tables", "fig2", "--alphas", "1.0", "1.3",
                   "--report-only", "--feature-dim", str(DIM), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["session"]["missing"] == 6 and res["session"]["trained"] == 0   # 2 alphas x 3 seeds
    assert "0/3" in (out / "report.md").read_text()
    # the plot itself, from a results dict
    fake = {"headline": "auc", "dataset": "ucf", "cells": {
        f"fig2-{a}": {"table": "fig2", "overrides": {"alpha": a},
                      "validation": {"mean": m, "std": 0.01, "n": 2}, "final": {"mean": m - 0.02, "std": None, "n": 1}}
        for a, m in ((1.0, 0.80), (1.3, 0.84), (1.5, 0.82))}}
    png = ablation.plot_alpha(fake, tmp_path / "fig2_alpha.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
