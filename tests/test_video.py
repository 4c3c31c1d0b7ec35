"""Decoding, clip counting, crops and normalisation (pipeline.features.video)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.features.video import (FrameStream, VideoError, crop_boxes, crop_clips, find_videos,
                                     iter_clips, normalize, num_clips, probe, resized_size)
from videogen import frame_image, make_video, truncate


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return dict(
        a=make_video(d / "a.mp4", 37),
        odd=make_video(d / "sub" / "Odd.AVI", 20, 63, 47),
        gray=make_video(d / "gray.mkv", 20, gray=True),
        vfr=make_video(d / "vfr.mkv", 40, vfr=True),
        trunc=truncate(make_video(d / "trunc.mp4", 60)),
        empty=(d / "empty.mp4"),
        text=(d / "text.mp4"),
        d=d,
    )


@pytest.fixture(scope="module", autouse=True)
def _junk(vids):
    vids["empty"].write_bytes(b"")
    vids["text"].write_text("this is not a video\n")


def test_num_clips_and_sizes():
    assert [num_clips(n, "pad") for n in (1, 15, 16, 17, 32, 33)] == [1, 1, 1, 2, 2, 3]
    assert [num_clips(n, "drop") for n in (1, 15, 16, 17, 32, 33)] == [0, 0, 1, 1, 2, 2]
    assert resized_size(320, 240, 256) == (341, 256)
    assert resized_size(240, 320, 256) == (256, 341)
    assert resized_size(63, 47, 32) == (43, 32)


def test_iter_clips_pad_repeats_last_frame():
    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(37)]
    pad = list(iter_clips(iter(frames), "pad"))
    drop = list(iter_clips(iter(frames), "drop"))
    assert len(pad) == 3 and len(drop) == 2
    assert all(c.shape == (16, 4, 5, 3) for c in pad)
    assert [int(f[0, 0, 0]) for f in pad[2]] == list(range(32, 37)) + [36] * 11
    np.testing.assert_array_equal(pad[0], drop[0])


@pytest.mark.parametrize("h,w,crop", [(32, 43, 32), (37, 50, 32), (48, 64, 28)])
def test_crops_match_torchvision(h, w, crop):
    from torchvision.transforms.v2 import functional as F

    x = torch.randint(0, 256, (2, 3, h, w, 3), dtype=torch.uint8)      # (B, T, H, W, C)
    ours = crop_clips(x, crop, 10)                                      # (B, 10, C, T, s, s)
    ref = F.ten_crop(x.permute(0, 1, 4, 2, 3), [crop, crop])            # 10 x (B, T, C, s, s)
    for k in range(10):
        torch.testing.assert_close(ours[:, k], ref[k].permute(0, 2, 1, 3, 4), rtol=0, atol=0)
    centre = crop_clips(x, crop, 1)
    ref1 = F.center_crop(x.permute(0, 1, 4, 2, 3), [crop, crop]).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(centre[:, 0], ref1, rtol=0, atol=0)
    assert crop_boxes(h, w, crop, 10)[4] == crop_boxes(h, w, crop, 1)[0]


def test_normalize():
    x = torch.tensor([0, 255, 114], dtype=torch.uint8)
    k = normalize(x, "kinetics")
    torch.testing.assert_close(k, (x.float() / 255 - 0.45) / 0.225)
    m = normalize(x, "minus1to1")
    torch.testing.assert_close(m, x.float() / 127.5 - 1)


def test_frame_counts_exact(vids):
    for key, n in (("a", 37), ("odd", 20), ("gray", 20), ("vfr", 40)):
        s = FrameStream(vids[key], short_side=32)
        frames = list(s)
        assert len(frames) == n == s.frames, key
        assert frames[0].dtype == np.uint8 and frames[0].shape[2] == 3
        assert min(frames[0].shape[:2]) == 32
        assert s.error is None
    assert probe(vids["a"])["fps"] == pytest.approx(25.0)


def test_decoded_pixels_close_to_source(vids):
    frames = list(FrameStream(vids["a"], short_side=None))
    assert frames[0].shape == (48, 64, 3)
    ref = frame_image(5, 64, 48).astype(float)
    assert np.abs(frames[5].astype(float) - ref).mean() < 20  # lossy codec, same picture


def test_gray_becomes_three_equal_channels(vids):
    f = next(iter(FrameStream(vids["gray"], short_side=None)))
    assert f.shape == (48, 64, 3)
    assert np.abs(f[..., 0].astype(int) - f[..., 1]).max() <= 1


@pytest.mark.parametrize("key,what", [("empty", "empty file"), ("text", "cannot open"),
                                      ("trunc", "cannot open")])
def test_bad_files_raise_video_error(vids, key, what):
    with pytest.raises(VideoError, match=what) as e:
        list(FrameStream(vids[key]))
    assert str(vids[key]) in str(e.value)


def test_find_videos(vids):
    found = find_videos(vids["d"])
    names = {p.name for p in found}
    assert {"a.mp4", "Odd.AVI", "gray.mkv", "vfr.mkv"} <= names
    assert find_videos(vids["a"]) == [vids["a"]]
    with pytest.raises(FileNotFoundError):
        find_videos(vids["d"] / "nope")
