"""Stage 3 through its CLI: the report, its recomputation with RTFM's protocol, checkpoints, bad input."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline import evaluate as E
from pipeline.scoring import checkpoint
from pipeline.model import training
from pipeline import train as T
from pipeline.common.metrics import ScoredVideo, clip_to_frame_scores, frame_report
from pipeline.synth.features import make_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    root = base / "data"
    make_dataset(root, "ucf", n_train_normal=6, n_train_abnormal=6, n_test_normal=3, n_test_abnormal=4,
                 min_clips=12, max_clips=30, dim=256, crops=2, seed=3)
    assert T.main(["--data-root", str(root), "--out", str(base / "run"), "--epochs", "2", "--batch-size", "8",
                   "--T", "16", "--feature-dim", "256", "--quiet"]) == 0
    return root, base / "run"


def official_frame_labels(annotation: Path, name: str, n: int) -> np.ndarray:
    """An independent reading of the official UCF-Crime format: 'Name.mp4  Class  s1  e1  s2  e2'."""
    lab = np.zeros(n)
    for line in annotation.read_text().splitlines():
        f = line.split()
        if f and f[0].rsplit(".", 1)[0] == name:
            for s, e in ((int(f[2]), int(f[3])), (int(f[4]), int(f[5]))):
                if s >= 0:
                    lab[s:e + 1] = 1
    return lab


def test_report_auc_equals_rtfm_recomputation(trained, tmp_path, capsys):
    root, run = trained
    assert E.main(["--data-root", str(root), "--checkpoint", str(run), "--out", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    assert "frame AUC" in printed and "report.json" in printed
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    for key in ("auc", "ap", "auc_abnormal", "far", "per_class", "n_videos", "n_frames"):
        assert key in report
    scores = np.load(tmp_path / "rep" / "scores.npz")
    assert report["n_videos"] == len(scores.files) == 7
    ann = root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    frame_scores, frame_labels = [], []
    for name in sorted(scores.files):                         # order must not matter
        s = scores[name]
        frame_scores.append(np.repeat(s, 16))
        frame_labels.append(official_frame_labels(ann, name, 16 * len(s)))
    y, s = np.concatenate(frame_labels), np.concatenate(frame_scores)
    assert report["n_frames"] == len(y)
    assert report["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert report["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-9)


def test_crops_are_scored_separately_and_averaged(trained):
    _, run = trained
    model, _ = checkpoint.load_model(run)
    feats = np.random.default_rng(0).random((9, 3, 256), dtype=np.float32)
    with torch.no_grad():
        per_crop = [model(torch.from_numpy(feats[:, c][None]))["scores"][0].numpy() for c in range(3)]
    from pipeline.model.network import moving_mean
    want = moving_mean(torch.from_numpy(np.mean(per_crop, 0)), model.smooth).numpy()   # then smoothed
    assert model.smooth == 3
    assert np.allclose(checkpoint.score_clips(model, feats), want, atol=1e-6)


def test_checkpoint_resolution_prefers_validation_selected(tmp_path, trained):
    _, run = trained
    assert checkpoint.resolve_checkpoint(run).name == "model.pt"
    d = tmp_path / "r"
    shutil.copytree(run, d)
    shutil.copy(d / "model.pt", d / "best.pt")
    assert checkpoint.resolve_checkpoint(d).name == "best.pt"
    assert checkpoint.resolve_checkpoint(d / "model.pt").name == "model.pt"
    with pytest.raises(FileNotFoundError, match="no best.pt or model.pt"):
        checkpoint.resolve_checkpoint(tmp_path)


def test_missing_and_bad_checkpoint(trained, tmp_path, capsys):
    root, _ = trained
    assert E.main(["--data-root", str(root), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert E.main(["--data-root", str(root), "--checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert "junk.pt" in capsys.readouterr().err


def test_annotation_naming_unknown_videos(trained, tmp_path, capsys):
    root, run = trained
    bad = tmp_path / "data"
    shutil.copytree(root, bad)
    ann = bad / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    ann.write_text(ann.read_text() + "Ghost999_x264.mp4  Arson  10  20  -1  -1  \n")
    assert E.main(["--data-root", str(bad), "--checkpoint", str(run)]) == 2
    err = capsys.readouterr().err
    assert ann.name in err and "Ghost999_x264" in err


def test_frame_report_by_hand():
    # two videos of one clip each (16 frames): anomalous video scores 0.9 over 8 anomalous + 8 normal frames,
    # normal video scores 0.2 (no false alarm at 0.5), 0.6 in a second normal video (all frames alarms)
    v1 = ScoredVideo("a", 1, "Arson", clip_to_frame_scores([0.9]), np.r_[np.ones(8), np.zeros(8)])
    v2 = ScoredVideo("n1", 0, "Normal", clip_to_frame_scores([0.2]), np.zeros(16))
    v3 = ScoredVideo("n2", 0, "Normal", clip_to_frame_scores([0.6]), np.zeros(16))
    r = frame_report([v1, v2, v3])
    # positives (8 at 0.9) beat every negative except the 8 ties at 0.9: AUC = (32 + 8 * 0.5) / 40 = 0.9
    assert r["auc"] == pytest.approx(0.9)
    assert r["auc_abnormal"] == pytest.approx(0.5)        # one video, its frames all tie
    assert r["far"] == pytest.approx(0.5)                 # 16 of 32 normal-video frames >= 0.5
    assert r["per_class"]["Arson"] == pytest.approx(0.9)
    assert r["n_frames"] == 48 and r["n_videos"] == 3
    assert frame_report([v3, v1, v2])["auc"] == r["auc"]  # list order does not matter


@pytest.mark.skipif(not (SHARED / "realdata" / "shanghaitech_i3d").exists(), reason="../shared absent")
def test_scores_real_rtfm_ten_crop_features(tmp_path):
    from pipeline.model import data as D
    model = training.model_from_config(training.TrainConfig(), 2048).eval()
    path = SHARED / "realdata" / "shanghaitech_i3d" / "SH_Test_ten_crop_i3d" / "01_006_i3d.npy"
    feats = D.load_features(path)
    assert feats.shape == (32, 10, 2048)
    s = checkpoint.score_clips(model, feats)
    assert s.shape == (32,) and np.all((s >= 0) & (s <= 1))


# ----------------------------------------------------------------------------- issue 11: no silent wrong results

def _ann_rows(root):
    ann = root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    return ann, [l.split() for l in ann.read_text().splitlines() if l.strip()]


def _write_ann(ann, rows):
    ann.write_text("".join("  ".join(r) + "  \n" for r in rows))


def _clips(root, name):
    from pipeline.model import data as D
    return D.feature_clips(D.index_features(root)[name])


def test_annotation_past_the_end_warns_and_strict_refuses(trained, tmp_path, capsys):
    root, run = trained
    bad = tmp_path / "data"
    shutil.copytree(root, bad)
    ann, rows = _ann_rows(bad)
    i = next(k for k, r in enumerate(rows) if int(r[2]) >= 0)
    name = rows[i][0][:-4]
    n = 16 * _clips(bad, name)
    # a 2-frame overrun (as in the official file) is clipped quietly
    rows[i][3] = str(n + 1)
    _write_ann(ann, rows)
    assert E.main(["--data-root", str(bad), "--checkpoint", str(run), "--out", str(tmp_path / "a")]) == 0
    assert "warning" not in capsys.readouterr().err
    # an interval wholly past the end of the features: warned (video named, count), recorded, refused by --strict
    rows[i][4:6] = [str(n + 40), str(n + 80)]
    _write_ann(ann, rows)
    assert E.main(["--data-root", str(bad), "--checkpoint", str(run), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and name in err and "1 video(s)" in err and ann.name in err and "start after" in err
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["annotation_warnings"] and name in report["annotation_warnings"][0]
    assert E.main(["--data-root", str(bad), "--checkpoint", str(run), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and name in err[0] and "--strict" in err[0]


def test_mist_frame_counts_are_checked_against_the_features(trained, tmp_path, capsys):
    root, run = trained
    bad = tmp_path / "data"
    shutil.copytree(root, bad)
    ann, rows = _ann_rows(bad)
    # MIST's format: a 7th column with the frame count; right for every video but one
    for r in rows:
        r.append(str(16 * _clips(bad, r[0][:-4]) - 5))
    rows[0][6] = str(16 * _clips(bad, rows[0][0][:-4]) + 64)
    _write_ann(ann, rows)
    assert E.main(["--data-root", str(bad), "--checkpoint", str(run), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "1 video(s) have a frame count" in err and rows[0][0][:-4] in err
    assert E.main(["--data-root", str(bad), "--checkpoint", str(run), "--strict"]) == 2


def test_checkpoint_of_other_shapes_is_one_line_naming_the_file(trained, tmp_path, capsys):
    root, run = trained
    state = torch.load(run / "model.pt", weights_only=True)
    state["in_dim"] = 512                                   # the weights are for 256-d features
    torch.save(state, tmp_path / "other.pt")
    assert E.main(["--data-root", str(root), "--checkpoint", str(tmp_path / "other.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.pt" in err[0] and "does not fit" in err[0]


def test_pickled_checkpoint_message_gives_no_unsafe_advice(trained, tmp_path, capsys):
    root, _ = trained
    torch.save({"model": {}, "config": {}, "x": Path("/")}, tmp_path / "pickled.pt")   # a pickled object
    assert E.main(["--data-root", str(root), "--checkpoint", str(tmp_path / "pickled.pt")]) == 2
    err = capsys.readouterr().err
    assert "pickled.pt" in err and "pickled Python objects" in err
    assert "weights_only" not in err and "allow_pickle" not in err and len(err.strip().splitlines()) == 1


def test_quiet_without_out_is_refused(trained, capsys):
    root, run = trained
    with pytest.raises(SystemExit) as e:
        E.main(["--data-root", str(root), "--checkpoint", str(run), "--quiet"])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


def test_last_pt_is_labelled_as_resume_state(trained, tmp_path, capsys):
    root, run = trained
    state = torch.load(run / "last.pt", weights_only=True)
    state["epoch"] = 1                                       # as if training stopped after epoch 1 of 2
    torch.save(state, tmp_path / "last.pt")
    assert E.main(["--data-root", str(root), "--checkpoint", str(tmp_path / "last.pt")]) == 0
    out = capsys.readouterr().out
    assert "resume state, epoch 1 of 2" in out and "final" not in out
