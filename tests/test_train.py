"""Stage 2 through its CLI, on generated data laid out like RTFM's UCF-Crime release."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.model import data as D
from pipeline.model import training
from pipeline import train as T
from pipeline.synth.features import make_dataset

FAST = ["--epochs", "2", "--batch-size", "8", "--T", "16", "--quiet", "--feature-dim", "256"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("ucf") / "data"
    make_dataset(out, "ucf", n_train_normal=6, n_train_abnormal=6, n_test_normal=3, n_test_abnormal=3,
                 min_clips=12, max_clips=30, dim=256, seed=0)
    return out


def test_cli_on_full_width_features(tmp_path):
    make_dataset(tmp_path / "data", "ucf", n_train_normal=2, n_train_abnormal=2, n_test_normal=1,
                 n_test_abnormal=1, min_clips=10, max_clips=20, dim=2048, seed=0)
    assert T.main(["--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
                   "--T", "8", "--quiet"]) == 0
    assert load(tmp_path / "run" / "model.pt")["in_dim"] == 2048


def run(root, out, *extra):
    return T.main(["--data-root", str(root), "--out", str(out), *FAST, *extra])


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_cli_writes_a_run(root, tmp_path):
    assert run(root, tmp_path / "run", "--bc", "--bcg") == 0
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "log.jsonl", "last.pt", "model.pt"} <= files
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(np.isfinite(r[k]) for r in log for k in ("loss", "kmax", "bc", "d_normal", "d_abnormal"))
    ckpt = load(tmp_path / "run" / "model.pt")
    assert ckpt["epoch"] == 2 and ckpt["in_dim"] == 256 and ckpt["config"]["cluster_layer"] == "fc"
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["T"] == 16 and cfg["n_train"] == 12 and cfg["cross_batch"] == "1"
    # the default centring: the training normal videos' statistics travel in the checkpoint
    assert (ckpt["config"]["centre"], ckpt["config"]["smooth"]) == ("normal", 3)
    std = ckpt["model"]["normal_std"]
    assert std.shape == (256,) and bool((std > 0).all()) and not torch.equal(std, torch.ones(256))


def test_refuses_to_overwrite_a_run(root, tmp_path, capsys):
    assert run(root, tmp_path / "run") == 0
    before = (tmp_path / "run" / "model.pt").read_bytes()
    assert run(root, tmp_path / "run") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.pt").read_bytes() == before
    assert run(root, tmp_path / "run", "--overwrite") == 0


def test_interrupted_run_resumes_to_the_same_model(root, tmp_path):
    args = ["--epochs", "4", "--batch-size", "8", "--T", "16", "--quiet", "--feature-dim", "256"]
    assert T.main(["--data-root", str(root), "--out", str(tmp_path / "whole"), *args]) == 0
    # "interrupted" after epoch 2: only last.pt of epoch 2 survives, then --resume finishes the run
    assert T.main(["--data-root", str(root), "--out", str(tmp_path / "cut"), "--epochs", "2", "--batch-size", "8",
                   "--T", "16", "--quiet", "--feature-dim", "256"]) == 0
    (tmp_path / "cut" / "model.pt").unlink()
    assert T.main(["--data-root", str(root), "--out", str(tmp_path / "cut"), *args, "--resume"]) == 0
    a, b = load(tmp_path / "whole" / "model.pt"), load(tmp_path / "cut" / "model.pt")
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
    log = [json.loads(l)["epoch"] for l in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


@pytest.mark.parametrize("flags", [
    ["--no-bc", "--no-bcg", "--cross-batch", "none"],        # backbone (Table 2, row 1)
    ["--bc", "--no-bcg", "--cross-batch", "none"],           # + L_bc
    ["--bc", "--cluster-layer", "fc"], ["--bc", "--cluster-layer", "gcn2"],  # Table 3
    ["--bc", "--bcg", "--cross-batch", "2"], ["--bc", "--cross-batch", "3"], ["--bc", "--cross-batch", "4"],   # Table 4
    ["--adjacency", "sum"],
])
def test_every_ablation_switch_trains(root, tmp_path, flags):
    assert run(root, tmp_path / "run", *flags) == 0
    cfg = load(tmp_path / "run" / "model.pt")["config"]
    assert cfg["epochs"] == 2
    names = {"--no-bc": ("bc", False), "--no-bcg": ("bcg", False), "--bc": ("bc", True), "--bcg": ("bcg", True)}
    for i, f in enumerate(flags):
        if f in names:
            assert cfg[names[f][0]] is names[f][1]
        elif f.startswith("--"):
            assert str(cfg[f[2:].replace("-", "_")]) == flags[i + 1]


def test_validation_selection_holds_out_stratified_videos(root, tmp_path):
    assert run(root, tmp_path / "run", "--val-fraction", "0.34", "--keep-epochs") == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    val = cfg["val_videos"]
    assert len(val) == 4 and sum("Normal" in v for v in val) == 2     # 2 of 6 per label
    assert cfg["n_train"] == 8
    best = load(tmp_path / "run" / "best.pt")
    assert best["selected_by"] == "validation" and 1 <= best["epoch"] <= 2
    assert sorted(p.name for p in (tmp_path / "run" / "epochs").iterdir()) == ["epoch_0001.pt", "epoch_0002.pt"]
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("val_auc" in r and "val_kmax" in r for r in log)


def test_balanced_batches_are_half_normal_half_abnormal():
    labels = torch.tensor([0] * 5 + [1] * 9)
    b = training.BalancedBatches(labels, list(range(14)), 6, torch.Generator().manual_seed(0))
    assert len(b) == 3                                   # ceil(9 / 3)
    seen = set()
    for normal, abnormal in b:
        assert len(normal) == len(abnormal) == 3
        assert all(labels[i] == 0 for i in normal) and all(labels[i] == 1 for i in abnormal)
        seen.update(abnormal)
    assert seen == set(range(5, 14))                     # every abnormal video once per epoch


def test_split_validation_is_stratified_and_disjoint():
    labels = torch.tensor([0] * 10 + [1] * 20)
    tr, va = training.split_validation(labels, 0.2, torch.Generator().manual_seed(0))
    assert not set(tr) & set(va) and len(tr) + len(va) == 30
    assert sum(int(labels[i]) for i in va) == 4 and len(va) == 6


def test_bad_input_errors_name_the_file(root, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    feats = sorted((bad / "UCF_Train_ten_crop_i3d").glob("*.npy"))
    # a feature file of the wrong width
    np.save(feats[0], np.zeros((10, 1024), np.float32))
    assert run(bad, tmp_path / "r1") == 2
    err = capsys.readouterr().err
    assert feats[0].name in err and "1024" in err and "256" in err
    # NaNs
    a = np.ones((10, 256), np.float32)
    a[3, 5] = np.nan
    np.save(feats[0], a)
    assert run(bad, tmp_path / "r2") == 2
    err = capsys.readouterr().err
    assert feats[0].name in err and "NaN" in err
    # a list naming a missing feature file
    feats[0].unlink()
    assert run(bad, tmp_path / "r3") == 2
    err = capsys.readouterr().err
    assert "ucf-i3d.list" in err and feats[0].name.replace("_i3d.npy", "") in err
    # an empty list
    (bad / "ucf-i3d.list").write_text("")
    assert run(bad, tmp_path / "r4") == 2
    assert "ucf-i3d.list" in capsys.readouterr().err


def test_missing_data_root_is_a_clear_error(tmp_path, capsys):
    assert run(tmp_path / "nowhere", tmp_path / "run") == 2
    assert "nowhere" in capsys.readouterr().err


def test_extraction_settings_travel_into_the_checkpoint(root, tmp_path, capsys):
    import shutil
    d = tmp_path / "data"
    shutil.copytree(root, d)
    folder = d / "UCF_Train_ten_crop_i3d"
    row = {"profile": "32x2", "weights_sha256": "abc", "random_init": False, "crops": 1, "short_side": 256,
           "crop_size": 224, "norm": "kinetics", "tail": "pad", "clip_len": 16, "status": "ok"}
    lines = [json.dumps({**row, "video": p.name[:-len("_i3d.npy")]}) for p in sorted(folder.glob("*.npy"))]
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert run(d, tmp_path / "run") == 0
    meta = load(tmp_path / "run" / "model.pt")["extractor"]
    assert meta["profile"] == "32x2" and meta["weights_sha256"] == "abc" and meta["videos_described"] == 12
    lines[0] = lines[0].replace('"32x2"', '"8x8"')
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert run(d, tmp_path / "run2") == 2
    assert "manifest.jsonl" in capsys.readouterr().err


def test_no_manifest_means_unknown_extractor(root, tmp_path):
    assert run(root, tmp_path / "run") == 0
    assert load(tmp_path / "run" / "model.pt")["extractor"] is None


def test_standardize_stores_training_statistics_in_the_model(root, tmp_path):
    from pipeline.model import data as D
    assert run(root, tmp_path / "run", "--standardize") == 0
    state = load(tmp_path / "run" / "model.pt")["model"]
    videos = D.load_split(root, "ucf", "train")
    x = np.concatenate([D.resample(D.load_features(v.paths, dim=256), 16).astype(np.float16).astype(np.float64)
                        .reshape(-1, 256) for v in videos])
    assert np.allclose(state["feature_mean"].numpy(), x.mean(0), atol=1e-4)
    assert np.allclose(state["feature_std"].numpy(), np.maximum(x.std(0), 1e-2 * x.std(0).mean()), atol=1e-4)
    assert torch.equal(load(tmp_path / "run" / "model.pt")["model"]["feature_mean"], state["feature_mean"])
    assert run(root, tmp_path / "raw", "--no-standardize") == 0                      # the identity transform
    raw = load(tmp_path / "raw" / "model.pt")["model"]
    assert not raw["feature_mean"].any() and torch.equal(raw["feature_std"], torch.ones(256))


def test_extractor_seed_only_matters_for_random_weights(tmp_path):
    from pipeline.model.data import Video
    folder = tmp_path / "f"
    folder.mkdir()
    base = {"profile": "32x2", "weights_sha256": "abc", "crops": 1, "short_side": 256, "crop_size": 224,
            "norm": "kinetics", "tail": "pad", "clip_len": 16}
    videos = [Video(n, 0, "", [folder / f"{n}.npy"]) for n in ("a", "b")]

    def write(random_init):
        rows = [{**base, "video": n, "seed": s, "random_init": random_init} for n, s in (("a", 0), ("b", 7))]
        (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    write(False)                                     # pretrained weights: the seeds differ, nothing else
    assert training.extractor_meta(videos)["videos_described"] == 2
    write(True)                                      # random weights: different seeds are different networks
    with pytest.raises(D.DataError, match="different settings"):
        training.extractor_meta(videos)


# ----------------------------------------------------------------------------- issue 11

@pytest.mark.parametrize("flags,message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--T", "0"], "--T must be at least 1"),
    (["--alpha", "0"], "--alpha must be a positive number"),
    (["--alpha", "-1"], "--alpha must be a positive number"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--mu", "0"], "--mu must be a positive number"),
    (["--kmeans-iters", "0"], "--kmeans-iters must be at least 1"),
    (["--lambda1", "-0.1"], "--lambda1 must be >= 0"),
    (["--smooth", "2"], "--smooth must be an odd number >= 1"),
    (["--normal-share", "0"], "--normal-share must be in (0, 1]"),
])
def test_nonsense_flags_are_refused_before_any_work(root, tmp_path, capsys, flags, message):
    assert run(root, tmp_path / "run", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_failed_run_leaves_no_empty_run_dir(tmp_path, capsys):
    assert run(tmp_path / "nowhere", tmp_path / "run") == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_from_corrupt_last_pt_names_the_file(root, tmp_path, capsys, monkeypatch):
    assert run(root, tmp_path / "run") == 0
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])                       # truncated by a full disk, say
    loads = []
    monkeypatch.setattr(training, "load_training_set", lambda *a, **k: loads.append(1))
    assert run(root, tmp_path / "run", "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "cannot resume" in err[0] and "--overwrite" in err[0]
    assert not loads                                                 # refused before loading the data
    torch.save({"epoch": 1}, last)                                   # readable, but not a training state
    assert run(root, tmp_path / "run", "--resume") == 2
    assert "not a training state" in capsys.readouterr().err


def test_features_beyond_float16_range_are_refused_naming_the_file(root, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    f = sorted((bad / "UCF_Train_ten_crop_i3d").glob("*.npy"))[0]
    a = np.load(f).astype(np.float32)
    a[:, ..., 7] = 1e5                                              # finite, but inf as float16
    np.save(f, a)
    assert run(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert f.name in err and "float16" in err and "Traceback" not in err


def test_small_validation_split_warns(root, tmp_path, capsys):
    assert run(root, tmp_path / "run", "--val-fraction", "0.2") == 0  # 1 normal + 1 abnormal held out
    err = capsys.readouterr().err
    assert "warning: --val-fraction holds out only 1 normal and 1 abnormal" in err


def test_same_seed_same_model_bytes(root, tmp_path):
    assert run(root, tmp_path / "a", "--seed", "5") == 0
    assert run(root, tmp_path / "b", "--seed", "5") == 0
    a, b = load(tmp_path / "a" / "model.pt"), load(tmp_path / "b" / "model.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in p.read_text().splitlines()]
    assert strip(tmp_path / "a" / "log.jsonl") == strip(tmp_path / "b" / "log.jsonl")


def test_epoch_lines_without_progress_bars_when_redirected(root, tmp_path, capsys):
    # capsys: stdout/stderr are not terminals, as when the log goes to a file
    assert T.main(["--data-root", str(root), "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8",
                   "--T", "16", "--feature-dim", "256"]) == 0
    cap = capsys.readouterr()
    assert [l.split()[1] for l in cap.out.splitlines() if l.startswith("epoch ")] == ["1/2", "2/2"]
    assert "\r" not in cap.out + cap.err and "batch/s" not in cap.err and "it/s" not in cap.err


def test_ctrl_c_is_one_line_and_exit_130(root, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.train", "--data-root", str(root), "--out",
                             str(tmp_path / "run"), "--epochs", "100000", "--batch-size", "8", "--T", "16",
                             "--feature-dim", "256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                            # a job started in the background of a non-interactive shell inherits SIGINT
                            # ignored, and Python then installs no KeyboardInterrupt handler: restore it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = proc.stdout.readline()
    while line and not line.startswith("epoch 1/"):
        line = proc.stdout.readline()
    assert line.startswith("epoch 1/"), proc.stderr.read()
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)                 # generous: CI machines may be busy
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    assert (tmp_path / "run" / "last.pt").exists() and not list((tmp_path / "run").glob(".*.tmp"))


def test_training_set_cache_is_reused_and_keyed_by_the_files(root, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns(training.CACHE_DIR))   # other tests' caches stay behind
    args = ["--epochs", "1", "--batch-size", "8", "--T", "16", "--feature-dim", "256"]
    assert T.main(["--data-root", str(data), "--out", str(tmp_path / "a"), *args]) == 0
    caches = list((data / training.CACHE_DIR).glob("train_T16_*.cache"))
    assert len(caches) == 1 and "from the cache" not in capsys.readouterr().out
    assert T.main(["--data-root", str(data), "--out", str(tmp_path / "b"), *args]) == 0
    assert "from the cache" in capsys.readouterr().out
    assert T.main(["--data-root", str(data), "--out", str(tmp_path / "c"), *args, "--no-cache"]) == 0
    assert "from the cache" not in capsys.readouterr().out
    a, b, c = (load(tmp_path / r / "model.pt")["model"] for r in "abc")
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    # a changed feature file is a different training set: a new cache file, never the stale one
    f = sorted((data / "UCF_Train_ten_crop_i3d").glob("*.npy"))[0]
    np.save(f, np.load(f) * 2)
    assert T.main(["--data-root", str(data), "--out", str(tmp_path / "d"), *args]) == 0
    assert "from the cache" not in capsys.readouterr().out
    assert len(list((data / training.CACHE_DIR).glob("train_T16_*.cache"))) == 2
    # another T: another file
    assert training.training_cache_path(D.load_split(data, "ucf", "train"), 8, 256, tmp_path).name.startswith("train_T8_")


def test_pickled_feature_file_gives_no_unsafe_advice(root, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(root, bad, ignore=shutil.ignore_patterns(training.CACHE_DIR))
    f = sorted((bad / "UCF_Train_ten_crop_i3d").glob("*.npy"))[0]
    np.save(f, np.array([{"not": "features"}], dtype=object), allow_pickle=True)
    assert run(bad, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f.name in err[0] and "pickled Python objects" in err[0]
    assert "allow_pickle" not in err[0] and "weights_only" not in err[0]


def test_generic_clip_truth_file_gives_the_log_its_truth_measures(root, tmp_path):
    """A data root's ``clip_truth.npz`` (any dataset: e.g. real Ped2, whose anomalous training videos
    have frame truth) is what training measures purity etc. against, like a generated root's synth_truth.npz."""
    import shutil
    from pipeline.model import diagnostics as DG
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns(".pipeline_cache"))
    truth = DG.load_clip_truth(data / "synth_truth.npz")
    (data / "synth_truth.npz").unlink()
    names = sorted(truth)
    assert training.load_segment_truth(data, names, 16) is None
    DG.save_clip_truth(data / "clip_truth.npz", [dict(name=n, clip_labels=truth[n]["clip_labels"]) for n in names])
    back = DG.load_clip_truth(data / "clip_truth.npz")
    assert sorted(back) == names
    for n in names:
        assert np.array_equal(back[n]["clip_labels"], truth[n]["clip_labels"])
        assert back[n]["label"] == int(truth[n]["clip_labels"].any()) and back[n]["split"] == ""
    seg = training.load_segment_truth(data, names, 16)
    assert seg.shape == (len(names), 16) and seg.sum() > 0
    assert run(data, tmp_path / "run", "--bc") == 0
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0 <= r["purity"] <= 1 and 0 < r["anomaly_rate"] < 1 for r in log)


def test_clip_truth_from_frames_counts_half_and_pads_like_evaluate():
    from pipeline.model.diagnostics import clip_truth_from_frames
    f = np.zeros(36, np.uint8)          # 3 clips of 16, the last one 4 real frames
    f[8:16] = 1                         # half of clip 0
    f[16:23] = 1                        # 7 of clip 1's 16: below half
    f[35] = 1                           # the last frame: the padded clip takes its label
    assert clip_truth_from_frames(f, 3).tolist() == [1, 0, 1]
    assert clip_truth_from_frames(np.ones(10, np.uint8), 2).tolist() == [1, 1]
