"""Tests of pipeline.synth: generated datasets parse with pipeline.model.data exactly like the real files,
labels and intervals match the recorded truth, the CLI runs, the difficulty is as documented."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.synth import features as synth
from pipeline.model.data import (find_file, index_features, load_features, load_split, read_annotations,
                                 read_split)

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_train_normal=5, n_train_abnormal=6, n_test_normal=4, n_test_abnormal=5,
             min_clips=12, max_clips=30, dim=64)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "ucf"
    summary = synth.make_dataset(out, "ucf", **SMALL)
    return out, summary


def test_ucf_layout_is_rtfm(ucf):
    out, s = ucf
    assert s["counts"] == dict(train_normal=5, train_abnormal=6, test_normal=4, test_abnormal=5)
    raw = (out / "ucf-i3d.list").read_bytes()
    lines = raw.decode().split("\r\n")
    assert raw.endswith(b"\r\n") and lines[-1] == "" and b"\n" not in raw.replace(b"\r\n", b"")
    assert lines[0] == "G:\\UCF_Train_ten_crop_i3d\\Abuse001_x264_i3d.npy"
    assert lines[6].startswith("G:\\UCF_Train_ten_crop_i3d\\Normal_Videos001_x264")
    assert (out / "UCF_Train_ten_crop_i3d" / "Abuse001_x264_i3d.npy").is_file()
    assert (out / "UCF_Test_ten_crop_i3d" / "Normal_Videos_001_x264_i3d.npy").is_file()
    ann = (out / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").read_text().splitlines()
    assert len(ann) == 9 and all(l.endswith("  ") and "  " in l for l in ann)
    normal = [l for l in ann if "Normal_Videos" in l][0]
    assert normal.endswith("  Normal  -1  -1  -1  -1  ")
    assert ann == sorted(ann)
    assert json.loads((out / "synth.json").read_text())["dataset"] == "ucf"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_ucf_parses_like_real(ucf):
    out, _ = ucf
    truth = synth.load_truth(out)
    assert find_file(out, "ucf", "train").name == "ucf-i3d.list"
    tr_e = read_split(out / "ucf-i3d.list", "ucf")
    assert [e.label for e in tr_e] == [1] * 6 + [0] * 5  # anomalous first, like RTFM
    ann = read_annotations(out, "ucf")
    assert ann.path.name == "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    tr = load_split(out, "ucf", "train")
    te = load_split(out, "ucf", "test", annotation=ann)
    ann.check_names(v.name for v in te)
    assert len(tr) == 11 and len(te) == 9
    classes = set()
    for v in tr + te:
        t = truth[v.name]
        assert (t["label"], t["cls"]) == (v.label, v.cls)
        classes.add(v.cls)
        x = load_features(v.paths, dim=64)
        assert x.shape == (len(t["clip_labels"]), 1, 64) and (x >= 0).all()
        assert t["clip_labels"].any() == bool(v.label)
        if v in te:
            np.testing.assert_array_equal(ann.frame_labels(v.name, 16 * x.shape[0]),
                                          np.repeat(t["clip_labels"], 16))
            assert ann.classes[v.name] == v.cls
            assert 1 <= len(ann.intervals.get(v.name, [])) <= 2 or not v.label
    assert {"Abuse", "Arrest", "Normal"} <= classes


def test_sht(tmp_path):
    out = tmp_path / "sht"
    synth.make_dataset(out, "sht", crops=3, dtype="float16", **SMALL)
    truth = synth.load_truth(out)
    ann = read_annotations(out, "sht")
    tr = load_split(out, "sht", "train")
    te = load_split(out, "sht", "test", annotation=ann)
    assert sum(v.label for v in tr) == 6 and sum(v.label for v in te) == 5
    assert len(ann.masks) == 11  # anomalous train and test videos, like the real folder
    te_e = read_split(out / "SH_Test_NEW.txt", "sht")
    for v, e in zip(te, te_e):
        t = truth[v.name]
        assert np.load(v.paths[0]).dtype == np.float16
        x = load_features(v.paths, dim=64)
        assert x.shape == (len(t["clip_labels"]), 3, 64)
        np.testing.assert_array_equal(ann.frame_labels(v.name, 16 * len(x)), np.repeat(t["clip_labels"], 16))
        assert e.n_frames == (None if v.label else 16 * len(x))
    # the bare-name list resolves labels from the masks found under the root
    (out / "SH_Train.txt").write_text("\n".join(v.name for v in tr))
    bare = load_split(out, "sht", "train", list_path=out / "SH_Train.txt")
    assert [v.label for v in bare] == [v.label for v in tr]


def test_xd(tmp_path):
    out = tmp_path / "xd"
    synth.make_dataset(out, "xd", crops=2, **SMALL)
    truth = synth.load_truth(out)
    raw = (out / "annotations.txt").read_bytes()
    assert not raw.endswith(b"\n")
    ann = read_annotations(out, "xd")
    tr = load_split(out, "xd", "train")
    te = load_split(out, "xd", "test", annotation=ann)
    ann.check_names(v.name for v in te)
    assert len(index_features(out)) == 20
    for v in tr + te:
        assert ("label_A" in v.name) == (v.label == 0) and len(v.paths) == 2
        x = load_features(v.paths, dim=64)
        assert x.shape == (len(truth[v.name]["clip_labels"]), 2, 64)
    for v in te:
        np.testing.assert_array_equal(ann.frame_labels(v.name, 16 * len(truth[v.name]["clip_labels"])),
                                      np.repeat(truth[v.name]["clip_labels"], 16))


def test_truth_model(tmp_path):
    """Intervals cover 5-40% of an abnormal video, 1-2 of them; normal videos have none;
    same seed -> same data; distractors occur in normal and abnormal videos."""
    out = tmp_path / "d"
    synth.make_dataset(out, "ucf", n_train_normal=30, n_train_abnormal=30, n_test_normal=2,
                       n_test_abnormal=2, min_clips=20, max_clips=60, dim=16, seed=3)
    truth = synth.load_truth(out)
    dis = {0: 0, 1: 0}
    for t in truth.values():
        y = t["clip_labels"]
        if t["label"]:
            assert 0.04 <= y.mean() <= 0.41
            n_runs = int(y[0]) + int(np.sum(np.diff(y.astype(int)) == 1))
            assert n_runs in (1, 2)
        else:
            assert y.sum() == 0
        dis[t["label"]] += int(t["distractor"].any())
    assert dis[0] > 0 and dis[1] > 0
    out2 = tmp_path / "d2"
    synth.make_dataset(out2, "ucf", n_train_normal=30, n_train_abnormal=30, n_test_normal=2,
                       n_test_abnormal=2, min_clips=20, max_clips=60, dim=16, seed=3)
    a = np.load(out / "UCF_Train_ten_crop_i3d" / "Abuse001_x264_i3d.npy")
    b = np.load(out2 / "UCF_Train_ten_crop_i3d" / "Abuse001_x264_i3d.npy")
    np.testing.assert_array_equal(a, b)


def _distance_auc(out: Path, dim: int) -> float:
    from sklearn.metrics import roc_auc_score
    ann = read_annotations(out, "ucf")
    tr = load_split(out, "ucf", "train")
    te = load_split(out, "ucf", "test", annotation=ann)
    mu = np.concatenate([load_features(v.paths, dim).mean(1) for v in tr if v.label == 0]).mean(0)
    s, y = [], []
    for v in te:
        x = load_features(v.paths, dim).mean(1)
        s.append(np.linalg.norm(x - mu, axis=1))
        y.append(ann.frame_labels(v.name, 16 * len(x))[::16])  # clip level = frame level here
    return roc_auc_score(np.concatenate(y), np.concatenate(s))


def test_difficulty(tmp_path):
    """signal 1: a distance-to-normal-mean score is well above chance, far from perfect;
    signal 0: chance; signal 3: easy."""
    kw = dict(n_train_normal=30, n_train_abnormal=10, n_test_normal=20, n_test_abnormal=20,
              min_clips=30, max_clips=80, dim=512)
    aucs = {}
    for sig in (0.0, 1.0, 3.0):
        out = tmp_path / f"s{sig}"
        synth.make_dataset(out, "ucf", signal=sig, seed=1, **kw)
        aucs[sig] = _distance_auc(out, 512)
    assert 0.35 < aucs[0.0] < 0.65, aucs
    assert 0.65 < aucs[1.0] < 0.92, aucs
    assert aucs[3.0] > 0.95, aucs
    x = load_features(next(iter(index_features(tmp_path / "s1.0").values())), dim=512)
    assert 0.2 < x.mean() < 0.5  # like pooled I3D activations


def test_refuses_non_empty(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    synth.make_dataset(out, "ucf", **SMALL)  # empty dir is fine
    with pytest.raises(FileExistsError, match="not empty"):
        synth.make_dataset(out, "ucf", **SMALL)
    synth.make_dataset(out, "sht", overwrite=True, **SMALL)
    assert (out / "SH_Train_new.txt").is_file() and not (out / "ucf-i3d.list").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


def test_ucf_lengths(tmp_path):
    rng = np.random.default_rng(0)
    c = synth._clip_counts(rng, 500, "train_normal", "ucf", 10, 3000, {})
    assert c.min() >= 10 and c.max() <= 3000 and 150 < np.median(c) < 400
    c = synth._clip_counts(rng, 50, "train_normal", "ucf", 10, 3000, {"train_normal": [160, 1600]})
    assert set(c) <= {10, 100}


def test_cli(tmp_path):
    out = tmp_path / "tiny"
    r = subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(out), "--preset", "tiny",
                        "--dim", "32"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote ucf dataset" in r.stdout
    s = json.loads((out / "synth.json").read_text())
    assert s["counts"] == dict(train_normal=8, train_abnormal=8, test_normal=4, test_abnormal=4)
    assert len(load_split(out, "ucf", "train")) == 16
    r = subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(out), "--preset", "tiny"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not empty" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipeline.synth", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--preset" in r.stdout and "ucf-scale" in r.stdout


def _motion_subspace(path: Path, dim: int) -> np.ndarray:
    x = load_features([path], dim)[:, 0].astype(np.float64)              # (clips, dim)
    x -= x.mean(0)
    return np.linalg.svd(x, full_matrices=False)[2][:8].T               # (dim, 8)


def test_private_motion(tmp_path):
    """private_motion 0 is the old generator, bit for bit; at 1 two videos vary along different directions."""
    kw = dict(n_train_normal=2, n_train_abnormal=1, n_test_normal=1, n_test_abnormal=1,
              min_clips=300, max_clips=300, dim=64, seed=5)
    synth.make_dataset(tmp_path / "old", "ucf", **kw)
    synth.make_dataset(tmp_path / "zero", "ucf", private_motion=0.0, **kw)
    synth.make_dataset(tmp_path / "own", "ucf", private_motion=1.0, **kw)
    name = "UCF_Train_ten_crop_i3d/Normal_Videos{:03d}_x264_i3d.npy"
    np.testing.assert_array_equal(np.load(tmp_path / "old" / name.format(1)), np.load(tmp_path / "zero" / name.format(1)))
    overlap = {}
    for d in ("zero", "own"):
        a, b = (_motion_subspace(tmp_path / d / name.format(i), 64) for i in (1, 2))
        overlap[d] = float(np.sum((a.T @ b) ** 2) / 8)                   # 1: same subspace, ~8/64: unrelated
    assert overlap["zero"] > 0.5 and overlap["own"] < 0.3, overlap       # measured: 0.66, 0.16
    assert json.loads((tmp_path / "own" / "synth.json").read_text())["private_motion"] == 1.0
    with pytest.raises(ValueError, match="private_motion"):
        synth.make_dataset(tmp_path / "bad", "ucf", private_motion=1.5, **kw)


# --------------------------------------------------------------------------------------------
# the calibrated model (--profile ped2 | ucf)
# --------------------------------------------------------------------------------------------
def test_old_profile_is_the_original_generator(tmp_path):
    """profile='old' (the default) writes what the generator wrote before profiles existed: the values
    below come from the commit before them (3da11f2); the truth file is byte-identical there too."""
    kw = dict(n_train_normal=2, n_train_abnormal=2, n_test_normal=1, n_test_abnormal=1, min_clips=12,
              max_clips=30, dim=64, seed=7)
    synth.make_dataset(tmp_path / "a", "ucf", **kw)
    synth.make_dataset(tmp_path / "b", "ucf", profile="old", **kw)
    f = "UCF_Test_ten_crop_i3d/Abuse002_x264_i3d.npy"
    a, b = np.load(tmp_path / "a" / f), np.load(tmp_path / "b" / f)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (18, 64)
    np.testing.assert_allclose(a.reshape(-1)[[0, 5, 77]], [0.2605481743812561, 0.36566561460494995,
                                                            0.23188066482543945], rtol=1e-6)
    n = np.load(tmp_path / "a" / "UCF_Train_ten_crop_i3d/Normal_Videos002_x264_i3d.npy")
    assert n.shape == (28, 64)
    np.testing.assert_allclose(n.reshape(-1)[[0, 5, 77]], [0.31516557931900024, 0.23263922333717346,
                                                            0.057011015713214874], rtol=1e-6)
    assert json.loads((tmp_path / "a" / "synth.json").read_text())["profile"] == "old"


def test_spread_profile_and_motion_variances():
    m = np.array([0.25, 1.0, 0.0, 0.0625])
    # spread * level^(1-p) * m^p with spread 0.2, p 0.5, level 0.25: 0.2 * 0.5 * sqrt(m)
    np.testing.assert_allclose(synth.spread_profile(m, 0.2, 0.5, 0.25), [0.05, 0.1, 0.0, 0.025])
    np.testing.assert_allclose(synth.spread_profile(m, 0.2, 1.0, 0.25), 0.2 * m)     # proportional to m
    np.testing.assert_allclose(synth.spread_profile(m, 0.2, 0.0, 0.25), [0.05] * 4)  # equal: spread * level
    # j^-1 for j = 1, 2, 3 is 1, 1/2, 1/3 (sum 11/6) -> 6/11, 3/11, 2/11
    np.testing.assert_allclose(synth.motion_variances(3, 1.0), [6 / 11, 3 / 11, 2 / 11], rtol=1e-6)
    np.testing.assert_allclose(synth.motion_variances(4, 0.0), [0.25] * 4)


def test_real_intervals():
    rng = np.random.default_rng(0)
    for n in (8, 12, 40):
        for _ in range(200):
            ivs = synth._real_intervals(rng, n, 0.5, 0.5)                      # exactly round(n / 2) clips
            assert sum(b - a for a, b in ivs) == round(n / 2) and len(ivs) in (1, 2)
            assert all(0 <= a < b <= n for a, b in ivs)
            if len(ivs) == 2:
                assert ivs[0][1] < ivs[1][0] and n >= 10                        # disjoint, a gap between
    assert synth._real_intervals(rng, 10, 1.2, 1.5) == [(0, 10)]                # > 1: the whole video
    full = [synth._real_intervals(rng, 12, 0.45, 1.25) == [(0, 12)] for _ in range(2000)]
    assert 0.25 < np.mean(full) < 0.37                                          # P(u > 1) = 0.25 / 0.8


def _shares(x: np.ndarray) -> tuple[float, float]:
    """(clips, D) -> share of the mean-removed sum of squares along the first / first five principal directions."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    return s[0] / s.sum(), s[:5].sum() / s.sum()


def test_ped2_profile_statistics(tmp_path):
    """The calibrated ped2 profile lands near the statistics measured on real UCSD Ped2 I3D clips
    (bench/RESULTS.md, real vs generated), with ranges wide enough for a set of 32 videos."""
    out = tmp_path / "p"
    s = synth.make_dataset(out, "ucf", profile="ped2", n_train_normal=8, n_train_abnormal=8, n_test_normal=8,
                           n_test_abnormal=8, seed=2)
    assert s["dim"] == 1024 and s["profile_parameters"]["anomaly"] == synth.PROFILES["ped2"].anomaly
    truth = synth.load_truth(out)
    xs = {v.name: load_features(v.paths, 1024)[:, 0].astype(np.float64)
          for split in ("train", "test") for v in load_split(out, "ucf", split)}
    assert all(len(x) in (8, 10, 12) and len(x) == len(truth[k]["clip_labels"]) for k, x in xs.items())
    allx = np.concatenate(list(xs.values()))
    pc1, pc5 = np.median([_shares(x) for x in xs.values()], axis=0)
    assert 0.25 < pc1 < 0.45 and 0.7 < pc5 < 0.88, (pc1, pc5)               # real Ped2: 0.32, 0.79
    within = sum(((x - x.mean(0)) ** 2).sum() for x in xs.values())
    between = 1 - within / ((allx - allx.mean(0)) ** 2).sum()
    assert 0.2 < between < 0.5, between                                     # real: 0.37
    assert (allx == 0).mean() < 0.02 and 0.2 < allx.mean() < 0.3              # real: 0.003, 0.25
    norms = [np.linalg.norm(x, axis=1) for x in xs.values()]
    cv = np.median([n.std() / n.mean() for n in norms])
    assert 0.03 < cv < 0.1, cv                                              # real: 0.063 (old generator: 0.014)
    frac = [t["clip_labels"].mean() for t in truth.values() if t["label"]]
    assert 0.6 < np.median(frac) <= 1.0 and max(frac) == 1.0                # real: 0.87, 4 of 12 whole videos
    assert all(not t["distractor"].any() and t["scene"] == -1 for t in truth.values())


def test_ucf_profile_and_formats(tmp_path):
    """ucf profile: videos differ more than their clips do (real C3D: 0.75 of the variance between
    videos); every format parses; crops add their own noise; bad arguments are refused."""
    out = tmp_path / "u"
    synth.make_dataset(out, "ucf", profile="ucf", n_train_normal=6, n_train_abnormal=2, n_test_normal=2,
                       n_test_abnormal=2, min_clips=40, max_clips=60, dim=256, seed=1)
    xs = [load_features(v.paths, 256)[:, 0].astype(np.float64) for v in load_split(out, "ucf", "train")]
    allx = np.concatenate(xs)
    between = 1 - sum(((x - x.mean(0)) ** 2).sum() for x in xs) / ((allx - allx.mean(0)) ** 2).sum()
    assert between > 0.5, between
    for ds in ("sht", "xd"):
        o = tmp_path / ds
        synth.make_dataset(o, ds, profile="ped2", crops=3, dim=32, **{k: v for k, v in SMALL.items()
                                                                    if k not in ("min_clips", "max_clips", "dim")})
        truth = synth.load_truth(o)
        for v in load_split(o, ds, "train"):
            x = load_features(v.paths, 32)
            assert x.shape == (len(truth[v.name]["clip_labels"]), 3, 32) and (x >= 0).all()
            assert not np.array_equal(x[:, 0], x[:, 1])
    with pytest.raises(ValueError, match="profile"):
        synth.make_dataset(tmp_path / "bad", "ucf", profile="c3d", **SMALL)
    with pytest.raises(ValueError, match="private_motion"):
        synth.make_dataset(tmp_path / "bad", "ucf", profile="ped2", private_motion=0.5, **SMALL)


def test_cli_profile(tmp_path):
    out = tmp_path / "p"
    r = subprocess.run([sys.executable, "-m", "pipeline.synth", "--out", str(out), "--preset", "tiny",
                        "--profile", "ped2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "synth.json").read_text())
    assert s["profile"] == "ped2" and s["dim"] == 1024            # the profile's width, not the preset's 2048
    assert all(n in (8, 10, 12) for n in (len(t["clip_labels"]) for t in synth.load_truth(out).values()))
    r = subprocess.run([sys.executable, "-m", "pipeline.synth", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert "--profile" in r.stdout and "ped2" in r.stdout


def test_real_stats_bench_on_generated(tmp_path, capsys, monkeypatch):
    """bench/real_stats.py runs on a generated root without any real data (those columns are skipped)."""
    out = tmp_path / "g"
    synth.make_dataset(out, "ucf", profile="ped2", n_train_normal=3, n_train_abnormal=3, n_test_normal=2,
                       n_test_abnormal=3, dim=64, seed=1)
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import real_stats
    assert real_stats.main(["--realdata", str(tmp_path / "none"), "--ped2", str(tmp_path / "none"),
                            "--generated", str(out)]) == 0
    r = capsys.readouterr()
    assert "Ped2 column skipped" in r.err and "columns skipped" in r.err
    rows = {l.split("|")[1].strip(): l.split("|")[2].strip() for l in r.out.splitlines()[2:]}
    assert rows["videos (anomalous)"] == "11 (6)" and rows["dim"] == "64"
    assert 0 <= float(rows["distance AUC"]) <= 1 and float(rows["between-video variance"]) > 0
