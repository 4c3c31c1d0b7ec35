"""bench/ped2_benchmark.py end to end on a tiny generated stand-in for UCSD Ped2 (truth file, TEVAD-style
lists, random features with shifted anomalous clips): roots, runs, table, and a rerun that runs nothing."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.model import diagnostics as DG

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "ped2_benchmark.py"
ANOMALOUS = {"Test001": (40, [[16, 39]]), "Test002": (50, [[20, 49]]), "Test003": (45, [[0, 20]]),
             "Test004": (60, [[30, 59]])}
NORMAL = {f"Train00{i}": 40 + 8 * i for i in range(1, 5)}


def load_script():
    spec = importlib.util.spec_from_file_location("ped2_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def standin(tmp_path):
    data, feats = tmp_path / "ped2", tmp_path / "feats"
    data.mkdir()
    feats.mkdir()
    truth = {n: {"frames": f, "anomalous_frames": sum(e - s + 1 for s, e in iv), "intervals": iv}
             for n, (f, iv) in ANOMALOUS.items()}
    truth.update({n: {"frames": f, "anomalous_frames": 0, "intervals": []} for n, f in NORMAL.items()})
    (data / "videos.json").write_text(json.dumps(truth))
    rng = np.random.default_rng(0)
    for n, v in truth.items():
        clips = math.ceil(v["frames"] / 16)
        x = rng.normal(size=(clips, 64)).astype(np.float32)                 # (clips, D)
        lab = DG.clip_truth_from_frames(np.isin(np.arange(v["frames"]), [f for s, e in v["intervals"]
                                                                         for f in range(s, e + 1)]), clips)
        x[lab == 1] += 2.0
        np.save(feats / f"{n}.npy", x)
    (data / "ped2-i3d.list").write_text("".join(f"/save/ped2_i3d/{n}_i3d.npy\n"
                                                for n in ("Test001", "Test002", "Train001", "Train002")))
    (data / "ped2-i3d-test.list").write_text("".join(f"/save/ped2_i3d/{n}_i3d.npy\n"
                                                     for n in ("Test003", "Test004", "Train003", "Train004")))
    return data, feats, tmp_path / "work"


def args(data, feats, work, *extra):
    return ["--frames", str(data / "frames"), "--features", str(feats), "--work", str(work), "--splits", "1",
            "--seeds", "1", "--epochs", "2", "--configs", "defaults,mil,bc,distance", *extra]


def test_end_to_end_table_cache_and_rerun(standin, capsys):
    data, feats, work = standin
    md = work / "table.md"
    mod = load_script()                  # its main() is the command line (a subprocess would only add torch's import)
    assert mod.main(args(data, feats, work, "--markdown", str(md))) == 0
    first = capsys.readouterr().out
    assert "8 runs, 0 cached" in first and "ETA" in first

    # step 2: the roots
    tevad = work / "roots" / "tevad"
    assert (tevad / "train.list").read_text() == "Test001,1\nTest002,1\nTrain001,0\nTrain002,0\n"
    assert sorted(f.stem for f in (tevad / "test_frame_mask").glob("*.npy")) == ["Test003", "Test004"]
    mask = np.load(tevad / "test_frame_mask" / "Test003.npy")
    assert mask.shape == (45,) and mask[:21].all() and not mask[21:].any()
    truth = DG.load_clip_truth(tevad / "clip_truth.npz")
    assert len(truth) == 8 and truth["Test001"]["clip_labels"].tolist() == [0, 1, 1]
    assert truth["Test001"]["split"] == "train" and truth["Test003"]["split"] == "test"
    r0 = [l.split(",") for l in (work / "roots" / "r0" / "train.list").read_text().split()]
    assert sorted(int(lab) for _, lab in r0) == [0, 0, 1, 1]
    assert (tevad / "features" / "Test001.npy").resolve() == (feats / "Test001.npy").resolve()

    # step 3: one line per run, mechanism measured against the training videos' truth
    rows = [json.loads(l) for l in (work / "results.jsonl").read_text().splitlines()]
    assert sorted((r["split"], r["config"]) for r in rows) == sorted(
        (s, c) for s in ("tevad", "r0") for c in ("defaults", "mil", "bc", "distance"))
    assert all(0 <= r["auc"] <= 1 and 0 <= r["ap"] <= 1 for r in rows)
    for r in rows:
        if r["config"] == "bc":                                 # the batch clustering loss: k-means runs
            assert 0 <= r["purity"] <= 1 and 0 < r["anomaly_rate"] < 1 and r["d_abnormal"] is not None
        else:
            assert r["purity"] is None                          # no clustering in the defaults, MIL, untrained
    dist = {r["split"]: r["auc"] for r in rows if r["config"] == "distance"}
    assert dist["tevad"] > 0.8                                  # the planted shift is found untrained

    # step 4: the table
    table = md.read_text()
    assert table.strip() in first
    for line in ("| defaults (the graph backbone) | grid | (none) |", "| plain MIL | grid | `--adjacency none` |",
                 "| distance to normal (untrained) | grid | (untrained) |",
                 "| defaults (the graph backbone) - plain MIL (paired) | grid |",
                 "| AUC (%) | AP (%) | AUC in anomalous videos (%) |", "| configuration | tevad | r0 |"):
        assert line in table
    assert "1 pairs |" in table and f"{100 * dist['tevad']:.1f}" in table

    # a rerun runs nothing and prints the same table
    before = (work / "results.jsonl").read_text()
    assert mod.main(args(data, feats, work)) == 0
    out = capsys.readouterr().out
    assert "8 runs, 8 cached" in out and "0 to do" in out and "[1/" not in out
    assert (work / "results.jsonl").read_text() == before
    assert table.strip() in out


def test_changed_flags_mean_new_runs_and_missing_data_is_skipped(standin, capsys, tmp_path):
    mod = load_script()
    data, feats, work = standin
    root = tmp_path / "root"
    train = ["Test001", "Test002", "Train001", "Train002"]
    test = ["Test003", "Test004", "Train003", "Train004"]
    truth = mod.read_truth(data / "videos.json")
    mod.build_root(root, feats, train, test, truth, "x")
    fp = {"data": 1}
    k = mod.run_key("defaults", root, 0, 50, "cpu", fp)
    assert k == mod.run_key("defaults", root, 0, 50, "cpu", fp)
    assert len({k, mod.run_key("defaults", root, 1, 50, "cpu", fp), mod.run_key("defaults", root, 0, 2, "cpu", fp),
                mod.run_key("full", root, 0, 50, "cpu", fp), mod.run_key("defaults", root, 0, 50, "cpu", {"data": 2})}) == 5
    # Zhong et al.'s draws: the sizes of TEVAD's training list, anomalous drawn first
    tr, te = mod.random_split(3, truth, 2, 2)
    assert sorted(tr + te) == sorted(truth) and sum(n.startswith("Test") for n in tr) == 2 and len(tr) == 4

    assert mod.main(["--frames", str(tmp_path / "nowhere" / "frames"), "--work", str(work)]) == 0
    assert f"skipped: {tmp_path / 'nowhere' / 'videos.json'} not found" in capsys.readouterr().out
    assert mod.main(["--truth", str(data / "videos.json"), "--frames", str(tmp_path / "none"),
                     "--work", str(work)]) == 0
    assert f"skipped: {tmp_path / 'none'} not found" in capsys.readouterr().out
    (feats / "Train004.npy").unlink()
    assert mod.main(args(data, feats, work)) == 2
    assert "Train004" in capsys.readouterr().err
