"""Tests of pipeline.model.data: every real split/annotation file in ../shared, real feature files,
resampling worked by hand, and every error case naming its file."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.model.data import (FEATURE_DIM, SPLIT_CANDIDATES, Annotation, DataError, Entry, Video,
                                 find_file, index_features, load_features, load_split, read_annotations,
                                 read_split, resample, video_name)

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
REAL = SHARED / "realdata"
UCF, SHT, XD = DATA / "ucf_crime", DATA / "shanghaitech", DATA / "xd_violence"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared (real data files) is absent")


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry, name", [
    ("G:\\UCF_Train_ten_crop_i3d\\Abuse001_x264_i3d.npy", "Abuse001_x264"),
    ("G:\\UCF_Train_ten_crop_i3d\\Abuse001_x264_i3d.npy\r", "Abuse001_x264"),
    ("Abuse/Abuse001_x264.mp4", "Abuse001_x264"),
    ("Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4", "Normal_Videos001_x264"),
    ("/home/yu/yu_ssd/SH_Train_ten_crop_i3d/01_0014_i3d.npy", "01_0014"),
    ("01_0014", "01_0014"),
    ("A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A__0.npy",
     "A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A"),
    ("/x/RGB/A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A__4.npy",
     "A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A"),
    ("Taken.Extended.Cut.2008__#00-50-45_00-51-04_label_B2-B6-0", "Taken.Extended.Cut.2008__#00-50-45_00-51-04_label_B2-B6-0"),
    ("v=S-7rRLrxnVQ__#1_label_B4-0-0", "v=S-7rRLrxnVQ__#1_label_B4-0-0"),
    ("Abuse028_x264.mp4", "Abuse028_x264"),
    ("Synth.Movie.2001.npy", "Synth.Movie.2001"),
])
def test_video_name(entry, name):
    assert video_name(entry) == name


def test_video_name_empty():
    with pytest.raises(ValueError):
        video_name("dir/")


# --------------------------------------------------------------------------------------------
# real split lists
# --------------------------------------------------------------------------------------------
@needs_shared
def test_rtfm_ucf_lists():
    tr = read_split(UCF / "ucf-i3d.list", "ucf")
    assert len(tr) == 1610
    assert [e.label for e in tr] == [1] * 810 + [0] * 800  # anomalous first, RTFM splits at 810
    assert tr[0] == Entry("Abuse001_x264", 1, "Abuse")
    assert tr[-1].name == "Normal_Videos950_x264" and tr[-1].cls == "Normal"
    te = read_split(UCF / "ucf-i3d-test.list", "ucf")
    assert len(te) == 290 and [e.label for e in te] == [1] * 140 + [0] * 150
    assert te[140].name == "Normal_Videos_003_x264"


@needs_shared
def test_official_ucf_split():
    tr = read_split(UCF / "Anomaly_Train.txt", "ucf")
    assert len(tr) == 1610 and sum(e.label for e in tr) == 810
    cls = {}
    for e in tr:
        cls[e.cls] = cls.get(e.cls, 0) + 1
    assert cls["Normal"] == 800 and cls["RoadAccidents"] == 127 and cls["Robbery"] == 145
    assert len(cls) == 14
    te = read_split(UCF / "Anomaly_Test.txt", "ucf")
    assert len(te) == 290 and sum(e.label for e in te) == 140
    assert sum(e.cls == "Normal" for e in te) == 150 and sum(e.cls == "Explosion" for e in te) == 21
    # same videos as RTFM's lists
    assert {e.name for e in tr} == {e.name for e in read_split(UCF / "ucf-i3d.list", "ucf")}
    assert {e.name for e in te} == {e.name for e in read_split(UCF / "ucf-i3d-test.list", "ucf")}
    # class from the folder agrees with the class from the name
    rt = {e.name: e.cls for e in read_split(UCF / "ucf-i3d-test.list", "ucf")}
    assert all(rt[e.name] == e.cls for e in te)


@needs_shared
def test_ekosman_train_annotation_as_split():
    tr = read_split(UCF / "Train_Annotation.txt", "ucf")
    assert len(tr) == 1610 and sum(e.label for e in tr) == 810
    assert all(e.n_frames and e.n_frames > 0 for e in tr)


@needs_shared
def test_shanghaitech_lists():
    tr = read_split(SHT / "SH_Train_new.txt", "sht")
    assert len(tr) == 238 and sum(e.label for e in tr) == 63
    te = read_split(SHT / "SH_Test_NEW.txt", "sht")
    assert len(te) == 199 and sum(e.label for e in te) == 44 and sum(e.label == 0 for e in te) == 155
    assert te[0] == Entry("01_001", 0, "", 764)
    assert all(e.n_frames is None for e in te if e.label == 1)  # -1 in the file
    bare_tr = read_split(SHT / "SH_Train.txt", "sht")  # no final newline
    bare_te = read_split(SHT / "SH_Test.txt", "sht")
    assert len(bare_tr) == 238 and len(bare_te) == 199
    assert all(e.label is None for e in bare_tr + bare_te)
    assert [e.name for e in bare_tr] == [e.name for e in tr]
    assert {e.name for e in bare_te} == {e.name for e in te}
    l_tr = read_split(SHT / "shanghai-i3d-train-10crop.list", "sht")
    l_te = read_split(SHT / "shanghai-i3d-test-10crop.list", "sht")
    lab = {e.name: e.label for e in tr + te}
    assert [lab[e.name] for e in l_tr] == [1] * 63 + [0] * 175
    assert [lab[e.name] for e in l_te] == [1] * 44 + [0] * 155


# --------------------------------------------------------------------------------------------
# real annotations
# --------------------------------------------------------------------------------------------
@needs_shared
def test_official_ucf_annotation():
    a = read_annotations(UCF / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "ucf")
    assert len(a.classes) == 290 and len(a.intervals) == 140
    assert sum(c == "Normal" for c in a.classes.values()) == 150
    assert a.intervals["Abuse028_x264"] == [(165, 240)]
    assert a.intervals["Vandalism028_x264"] == [(1830, 1980), (2400, 2670)]
    assert a.classes["Abuse028_x264"] == "Abuse"
    assert a.is_abnormal("Abuse028_x264") and not a.is_abnormal("Normal_Videos_003_x264")
    te = read_split(UCF / "ucf-i3d-test.list", "ucf")
    a.check_names(e.name for e in te)
    assert all(a.is_abnormal(e.name) == bool(e.label) for e in te)
    assert all(a.classes[e.name] == e.cls for e in te)
    y = a.frame_labels("Abuse028_x264", 1412)
    assert y.dtype == np.uint8 and y.shape == (1412,)
    assert y.sum() == 240 - 165 + 1 and y[165] == 1 and y[240] == 1 and y[164] == 0 and y[241] == 0
    # Assault006's interval ends at 8096 = its frame count: clipped
    y = a.frame_labels("Assault006_x264", 8096)
    assert y.shape == (8096,) and y[1185:].all() and y[:1185].sum() == 0
    assert a.frame_labels("Normal_Videos_003_x264", 50).sum() == 0


@needs_shared
@pytest.mark.parametrize("fname", ["Temporal_Anomaly_Annotation_New.txt", "Test_Annotation.txt"])
def test_other_ucf_annotations_agree(fname):
    off = read_annotations(UCF / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "ucf")
    other = read_annotations(UCF / fname, "ucf")
    assert other.intervals == off.intervals
    assert other.classes == off.classes
    assert len(other.n_frames) == 290 and other.n_frames["Abuse028_x264"] == 1412


@needs_shared
def test_ucf_annotation_from_dir():
    a = read_annotations(UCF, "ucf")
    assert a.path.name == "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"


@needs_shared
def test_shanghaitech_masks_and_gt_sh():
    a = read_annotations(SHT / "test_frame_mask", "sht")
    b = read_annotations(SHT, "sht")  # the parent folder works too
    assert len(a.masks) == 107 and set(a.masks) == set(b.masks)
    assert all(m.dtype == np.uint8 and m.ndim == 1 for m in a.masks.values())
    tr = read_split(SHT / "SH_Train_new.txt", "sht")
    te = read_split(SHT / "SH_Test_NEW.txt", "sht")
    assert {e.name for e in tr if e.label} | {e.name for e in te if e.label} == set(a.masks)
    assert all(a.is_abnormal(e.name) == bool(e.label) for e in tr + te)
    a.check_names(e.name for e in te)  # extra (train) masks are allowed for sht
    with pytest.raises(DataError, match="test_frame_mask"):
        a.check_names(["nothing_like_it"])
    # RTFM's gt-sh.npy: 199 test videos in 10crop-list order, 16 frames per clip; each anomalous
    # video is its mask padded to 16 * ceil(len / 16) by repeating the last label.
    gt = np.load(SHT / "gt-sh.npy")
    order = read_split(SHT / "shanghai-i3d-test-10crop.list", "sht")
    parts = []
    for e in order[:44]:
        n = 16 * math.ceil(len(a.masks[e.name]) / 16)
        parts.append(a.frame_labels(e.name, n))
    block = np.concatenate(parts)
    np.testing.assert_array_equal(gt[:len(block)], block)
    assert gt[len(block):].sum() == 0  # the 155 normal videos
    for e in order[44:]:
        assert a.frame_labels(e.name, 32).sum() == 0
    assert (len(gt) - len(block)) % 16 == 0


def test_mask_truncate_and_pad(tmp_path):
    ann = Annotation("sht", tmp_path, masks={"v": np.array([0, 1, 1], np.uint8)})
    np.testing.assert_array_equal(ann.frame_labels("v", 5), [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(ann.frame_labels("v", 2), [0, 1])
    ann = Annotation("sht", tmp_path, masks={"v": np.array([1, 0], np.uint8)})
    np.testing.assert_array_equal(ann.frame_labels("v", 4), [1, 0, 0, 0])
    ann = Annotation("ucf", tmp_path, intervals={"v": [(2, 4), (8, 20)]})
    np.testing.assert_array_equal(ann.frame_labels("v", 10), [0, 0, 1, 1, 1, 0, 0, 0, 1, 1])


@needs_shared
def test_xd_annotations():
    a = read_annotations(XD / "annotations.txt", "xd")  # last line has no newline
    assert len(a.intervals) == 500
    assert not any("label_A" in n for n in a.intervals)
    assert max(len(v) for v in a.intervals.values()) == 22
    name = "v=u5SF4SlqNDQ__#00-00-00_00-01-00_label_G-0-0"
    assert a.intervals[name] == [(624, 912), (950, 1441)]
    assert a.classes[name] == "G-0-0"
    assert a.intervals["City.of.God.2002__#01-24-10_01-25-10_label_B2-0-0"] == [(340, 1090)]


# --------------------------------------------------------------------------------------------
# real features
# --------------------------------------------------------------------------------------------
@needs_shared
def test_real_shanghaitech_features():
    idx = index_features(REAL / "shanghaitech_i3d")  # gt/ masks and gt-sh.npy are skipped
    assert set(idx) == {"01_001", "01_002", "01_003", "01_004", "01_005", "01_006", "01_007"}
    x = load_features(idx["01_001"])
    assert x.shape == (48, 10, 2048) and x.dtype == np.float32 and np.isfinite(x).all()
    assert 0.1 < x.mean() < 0.4
    assert resample(x, 32).shape == (32, 10, 2048)
    with pytest.raises(DataError, match="expected 1024, got 2048"):
        load_features(idx["01_001"], dim=1024)


@needs_shared
def test_real_xd_features():
    idx = index_features(REAL / "xd_violence_i3d" / "RGB")
    assert len(idx) == 24
    name = "A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A"
    assert [p.name for p in idx[name]] == [name + "__0.npy"]
    x = load_features(idx[name], dim=1024)
    assert x.shape == (97, 1, 1024) and x.dtype == np.float32
    with pytest.raises(DataError, match=r"__0\.npy.*expected 2048, got 1024"):
        load_features(idx[name])


@needs_shared
def test_load_split_real_sht_normals(tmp_path):
    """The real SH feature files through load_split, with a list of the videos that exist."""
    (tmp_path / "SH_Test.txt").write_text("01_001\n01_004\n01_006")
    vids = load_split(tmp_path, "sht", "test", features_root=REAL / "shanghaitech_i3d",
                      annotation=read_annotations(SHT, "sht"))
    assert [(v.name, v.label) for v in vids] == [("01_001", 0), ("01_004", 0), ("01_006", 0)]
    assert load_features(vids[0].paths).shape == (48, 10, FEATURE_DIM)


# --------------------------------------------------------------------------------------------
# resample, worked by hand
# --------------------------------------------------------------------------------------------
def test_resample_by_hand():
    x = np.arange(5, dtype=np.float32)[:, None] * np.array([[1.0, 10.0]], np.float32)  # (5, 2)
    # 5 clips -> T=2: r = floor(linspace(0, 5, 3)) = [0, 2, 5]; means of clips {0,1} and {2,3,4}
    np.testing.assert_allclose(resample(x, 2), [[0.5, 5.0], [3.0, 30.0]])
    # 2 clips -> T=4: r = floor([0, .5, 1, 1.5, 2]) = [0, 0, 1, 1, 2]; empty spans take x[r[i]]
    y = np.array([[1.0], [3.0]], np.float32)
    np.testing.assert_allclose(resample(y, 4), [[1.0], [1.0], [3.0], [3.0]])
    # 3 clips -> T=3 is the identity; T=1 is the mean
    np.testing.assert_allclose(resample(x[:3], 3), x[:3])
    np.testing.assert_allclose(resample(x, 1), [[2.0, 20.0]])
    # (clips, crops, D) works along axis 0
    z = np.stack([x, 2 * x], axis=1)  # (5, 2, 2)
    out = resample(z, 2)
    assert out.shape == (2, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 1], 2 * resample(x, 2))


def test_resample_matches_rtfm_loop():
    rng = np.random.default_rng(0)
    for n, T in [(1, 32), (7, 32), (32, 32), (100, 32), (1000, 150), (151, 150)]:
        feat = rng.random((n, 3)).astype(np.float32)
        r = np.linspace(0, n, T + 1).astype(int)
        ref = np.stack([feat[r[i]:r[i + 1]].mean(0) if r[i] != r[i + 1] else feat[r[i]] for i in range(T)])
        np.testing.assert_allclose(resample(feat, T), ref, rtol=1e-6)


def test_resample_bad():
    with pytest.raises(ValueError):
        resample(np.zeros((0, 3)), 4)
    with pytest.raises(ValueError):
        resample(np.zeros((3, 3)), 0)


# --------------------------------------------------------------------------------------------
# load_features formats and errors
# --------------------------------------------------------------------------------------------
def test_load_features_formats(tmp_path):
    a = np.random.default_rng(0).random((6, 8))
    for dt in ("float16", "float32", "float64"):
        np.save(tmp_path / f"a_{dt}.npy", a.astype(dt))
        x = load_features(tmp_path / f"a_{dt}.npy", dim=8)
        assert x.shape == (6, 1, 8) and x.dtype == np.float32
    np.save(tmp_path / "b.npy", np.zeros((6, 3, 8), np.float32))
    assert load_features(str(tmp_path / "b.npy"), dim=8).shape == (6, 3, 8)
    for k in range(3):
        np.save(tmp_path / f"v__{k}.npy", np.full((6, 8), k, np.float32))
    x = load_features([tmp_path / f"v__{k}.npy" for k in range(3)], dim=8)
    assert x.shape == (6, 3, 8) and (x[:, 2] == 2).all()


def test_load_features_errors(tmp_path):
    with pytest.raises(DataError, match="missing.npy.*cannot read"):
        load_features(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="junk.npy"):
        load_features(tmp_path / "junk.npy")
    np.save(tmp_path / "w.npy", np.zeros((4, 1024), np.float32))
    with pytest.raises(DataError, match="w.npy.*expected 2048, got 1024"):
        load_features(tmp_path / "w.npy")
    np.save(tmp_path / "nd.npy", np.zeros((4,), np.float32))
    with pytest.raises(DataError, match="nd.npy.*shape"):
        load_features(tmp_path / "nd.npy")
    np.save(tmp_path / "e.npy", np.zeros((0, 2048), np.float32))
    with pytest.raises(DataError, match="e.npy.*no clips"):
        load_features(tmp_path / "e.npy")
    bad = np.zeros((4, 2048), np.float32)
    bad[1, 3] = np.nan
    bad[2, 5] = np.inf
    bad[3, 7] = -np.inf
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"nan.npy: 3 non-finite"):
        load_features(tmp_path / "nan.npy")
    np.save(tmp_path / "i.npy", np.zeros((4, 2048), np.int64))
    with pytest.raises(DataError, match="i.npy.*dtype"):
        load_features(tmp_path / "i.npy")
    np.save(tmp_path / "c__0.npy", np.zeros((4, 8), np.float32))
    np.save(tmp_path / "c__1.npy", np.zeros((5, 8), np.float32))
    with pytest.raises(DataError, match="c__0.npy.*clip count"):
        load_features([tmp_path / "c__0.npy", tmp_path / "c__1.npy"], dim=8)


# --------------------------------------------------------------------------------------------
# index_features
# --------------------------------------------------------------------------------------------
def test_index_features(tmp_path):
    f = tmp_path / "feats"
    (f / "a").mkdir(parents=True)
    (f / "test_frame_mask").mkdir()
    np.save(f / "a" / "Abuse001_x264_i3d.npy", np.zeros((2, 4)))
    np.save(f / "gt-sh.npy", np.zeros(3))
    np.save(f / "test_frame_mask" / "01_0014.npy", np.zeros(3))
    for k in (10, 2, 0, 1):
        np.save(f / f"X.Movie__#1_label_A__{k}.npy", np.zeros((2, 4)))
    idx = index_features(f)
    assert set(idx) == {"Abuse001_x264", "X.Movie__#1_label_A"}
    assert [p.name for p in idx["X.Movie__#1_label_A"]] == [f"X.Movie__#1_label_A__{k}.npy" for k in (0, 1, 2, 10)]
    np.save(f / "Abuse001_x264.npy", np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"Abuse001_x264.*two places.*Abuse001_x264"):
        index_features(f)
    with pytest.raises(DataError, match="nowhere"):
        index_features(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------
# split errors and formats on small hand-made files
# --------------------------------------------------------------------------------------------
def test_read_split_errors(tmp_path):
    p = tmp_path / "empty.list"
    p.write_text("\n\n")
    with pytest.raises(DataError, match="empty.list.*empty"):
        read_split(p, "ucf")
    p = tmp_path / "dup.list"
    p.write_bytes(b"G:\\a\\Abuse001_x264_i3d.npy\r\nG:\\a\\Abuse002_x264_i3d.npy\r\nAbuse/Abuse001_x264.mp4\r\n")
    with pytest.raises(DataError, match=r"dup.list:3: duplicate video 'Abuse001_x264' \(first on line 1\)"):
        read_split(p, "ucf")
    p = tmp_path / "lab.txt"
    p.write_text("01_001,0\n01_002,2\n")
    with pytest.raises(DataError, match="lab.txt:2"):
        read_split(p, "sht")
    with pytest.raises(DataError, match="nope.list"):
        read_split(tmp_path / "nope.list", "ucf")
    with pytest.raises(ValueError):
        read_split(p, "kinetics")


def test_read_split_xd_crop_lines(tmp_path):
    p = tmp_path / "rgb.list"
    lines = [f"/d/RGB/V.1__#1_label_B1-0-0__{k}.npy" for k in range(5)]
    lines += [f"/d/RGB/V.2__#1_label_A__{k}.npy" for k in range(5)]
    p.write_text("\n".join(lines) + "\n")
    e = read_split(p, "xd")
    assert e == [Entry("V.1__#1_label_B1-0-0", 1, "B1-0-0"), Entry("V.2__#1_label_A", 0, "A")]
    p.write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(DataError, match="rgb.list:11: duplicate"):
        read_split(p, "xd")


def test_read_annotation_errors(tmp_path):
    p = tmp_path / "ann.txt"
    p.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1  \nAbuse030_x264.mp4  Abuse  300  200  -1  -1  \n")
    with pytest.raises(DataError, match="ann.txt:2.*ends before"):
        read_annotations(p, "ucf")
    p.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1  \nAbuse028_x264.mp4  Abuse  165  240  -1  -1  \n")
    with pytest.raises(DataError, match="ann.txt:2: duplicate"):
        read_annotations(p, "ucf")
    p.write_text("v1 10 20 30\n")
    with pytest.raises(DataError, match="ann.txt:1: odd number"):
        read_annotations(p, "xd")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="sub: no ucf annotations file found"):
        read_annotations(tmp_path / "sub", "ucf")
    (tmp_path / "m").mkdir()
    with pytest.raises(DataError, match="no <video>.npy"):
        read_annotations(tmp_path / "m", "sht")
    np.save(tmp_path / "m" / "01_0014.npy", np.array([0, 2, 1], np.uint8))
    with pytest.raises(DataError, match="01_0014.npy.*0/1"):
        read_annotations(tmp_path / "m", "sht")


def test_check_names_unknown(tmp_path):
    p = tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    p.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1  \n"
                 "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1  \n")
    a = read_annotations(p, "ucf")
    a.check_names(["Abuse028_x264", "Normal_Videos_003_x264", "Other"])
    with pytest.raises(DataError, match=r"Temporal_Anomaly_Annotation_for_Testing_Videos.txt: 1 annotated.*Normal_Videos_003_x264"):
        a.check_names(["Abuse028_x264"])


# --------------------------------------------------------------------------------------------
# find_file / load_split
# --------------------------------------------------------------------------------------------
def _mini_ucf(root: Path) -> None:
    (root / "features").mkdir(parents=True)
    names = ["Abuse001_x264", "Arson002_x264", "Normal_Videos001_x264"]
    for i, n in enumerate(names):
        np.save(root / "features" / f"{n}_i3d.npy", np.full((3 + i, 8), i, np.float32))
    (root / "ucf-i3d.list").write_bytes("".join(f"G:\\UCF_Train_ten_crop_i3d\\{n}_i3d.npy\r\n" for n in names).encode())


def test_find_file(tmp_path):
    _mini_ucf(tmp_path)
    assert find_file(tmp_path, "ucf", "train") == tmp_path / "ucf-i3d.list"
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "test.list").write_text("x\n")
    assert find_file(tmp_path, "ucf", "test") == tmp_path / "lists" / "test.list"
    with pytest.raises(DataError, match=r"Temporal_Anomaly_Annotation_for_Testing_Videos.txt.*Test_Annotation.txt"):
        find_file(tmp_path, "ucf", "annotations")
    assert SPLIT_CANDIDATES["sht"]["annotations"] == ["test_frame_mask"]


def test_load_split_ucf(tmp_path):
    _mini_ucf(tmp_path)
    v = load_split(tmp_path, "ucf", "train")
    assert [(x.name, x.label, x.cls) for x in v] == [("Abuse001_x264", 1, "Abuse"), ("Arson002_x264", 1, "Arson"),
                                                       ("Normal_Videos001_x264", 0, "Normal")]
    assert isinstance(v[0], Video) and load_features(v[2].paths, dim=8).shape == (5, 1, 8)
    (tmp_path / "features" / "Arson002_x264_i3d.npy").unlink()
    with pytest.raises(DataError, match=r"ucf-i3d.list: 1 of 3 listed.*Arson002_x264"):
        load_split(tmp_path, "ucf", "train")


def test_load_split_sht_labels_from_masks(tmp_path):
    (tmp_path / "features").mkdir()
    for n in ("01_0014", "01_001"):
        np.save(tmp_path / "features" / f"{n}_i3d.npy", np.zeros((2, 8), np.float32))
    (tmp_path / "SH_Train.txt").write_text("01_0014\n01_001")
    with pytest.raises(DataError, match="SH_Train.txt.*no video labels"):
        load_split(tmp_path, "sht", "train")
    (tmp_path / "test_frame_mask").mkdir()
    np.save(tmp_path / "test_frame_mask" / "01_0014.npy", np.array([0, 1], np.uint8))
    v = load_split(tmp_path, "sht", "train")
    assert [(x.name, x.label) for x in v] == [("01_0014", 1), ("01_001", 0)]
    # a test list whose labels contradict the masks
    (tmp_path / "SH_Test_NEW.txt").write_text("01_0014,0,-1\n01_001,0,32\n")
    with pytest.raises(DataError, match="SH_Test_NEW.txt: 1 video label.*01_0014"):
        load_split(tmp_path, "sht", "test", annotation=read_annotations(tmp_path, "sht"))
