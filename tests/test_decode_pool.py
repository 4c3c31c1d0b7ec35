"""The decode pool never waits forever: stuck workers and workers the OS will not start fall back
to decoding in this process, failing only the videos already begun, each named with the reason."""
from __future__ import annotations

import time

import pytest

from pipeline.features import decode
from pipeline.features.decode import DecodePool
from videogen import make_video

CFG = dict(short_side=32, crop_size=32, tail="pad", batch_size=2, threads=1)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    return [str(make_video(d / f"v{i}.mp4", 20 + 16 * i)) for i in range(3)]


def finals(messages):
    """video -> its final message kind (and clips seen), from a pool's messages."""
    out, clips = {}, {}
    for kind, vid, payload in messages:
        if kind == "clips":
            clips[vid] = clips.get(vid, 0) + len(payload)
        else:
            out[vid] = (kind, payload)
    return out, clips


def test_workers_give_what_this_process_gives(paths):
    want, want_clips = finals(DecodePool(paths, [0, 1, 2], CFG, 0, 4))
    got, got_clips = finals(DecodePool(paths, [2, 0, 1], CFG, 2, 4))
    assert got_clips == want_clips == {0: 2, 1: 3, 2: 4}
    assert {v: k for v, (k, _) in got.items()} == {0: "end", 1: "end", 2: "end"}


def _stuck_worker(wid, parent, paths, tasks, out, cfg):
    """A worker that takes its first video, says so, and then never sends anything again."""
    vid = tasks.get()
    out.put(("start", vid, wid))
    time.sleep(3600)


def test_stuck_workers_fail_their_video_and_the_rest_decode_here(paths, monkeypatch, caplog):
    monkeypatch.setattr(decode, "_worker_main", _stuck_worker)   # spawned children unpickle the patched one
    pool = DecodePool(paths, [0, 1, 2], CFG, 1, 4, stall_s=2)
    t0 = time.monotonic()
    got, clips = finals(pool)
    assert time.monotonic() - t0 < 30
    kind, message = got[0]
    assert kind == "error" and "v0.mp4" in message and "sent nothing for 2 s" in message
    assert got[1][0] == got[2][0] == "end" and clips == {1: 3, 2: 4}
    assert not any(p.is_alive() for p in pool.procs.values())   # the stuck worker was stopped
    assert "decoding the remaining videos in this process" in caplog.text


def test_a_worker_the_os_refuses_to_start_falls_back_to_this_process(paths, monkeypatch, caplog):
    import multiprocessing.process

    def refuse(self):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    pool = DecodePool(paths, [0, 1, 2], CFG, 2, 4)
    got, clips = finals(pool)
    assert {v: k for v, (k, _) in got.items()} == {0: "end", 1: "end", 2: "end"}
    assert clips == {0: 2, 1: 3, 2: 4}
    assert pool.warnings and "could not start a decode worker" in pool.warnings[0]
    assert "Resource temporarily unavailable" in caplog.text
