"""Live detection on camera streams: scores while the footage arrives, with bounded latency and memory.

    python -m pipeline.watch rtsp://cam.local/stream1 --checkpoint runs/ucf
    python -m pipeline.watch udp://0.0.0.0:5600 http://cam2/live.ts --checkpoint runs/ucf --jsonl live.jsonl
    python -m pipeline.watch --sources cameras.txt --checkpoint runs/ucf --on-alert ./notify.sh --save-clips alerts/
    python -m pipeline.watch recording.mp4 --realtime --checkpoint runs/ucf      # a file at its own pace

Per stream (``pipeline.apps.stream``: one reader thread each, PyAV, reconnects): rolling 16-frame clips ->
I3D features with the extractor the checkpoint was trained on (read from its ``extractor`` record,
exactly as ``pipeline.detect``) -> the model over a **causal window**: the features of the stream's
last ``--window`` clips (default 32) form one graph, the model runs on it, and the *newest* clip's
score is reported (:class:`CausalWindow`). A clip's score never uses later footage, and the window
bounds the graph (memory and time per clip are constant). Offline scoring sees the whole video; the
AUC this costs is measured in bench/RESULTS.md ("Watch a camera"); :func:`causal_scores` computes the
same causal scores from a video's features offline.

Output: JSON lines, line-buffered, on stdout or ``--jsonl FILE`` (appended). Every line has
``event`` and ``stream``:

* ``score``: one per clip: ``conn`` (connection number), ``clip``, ``frame`` (first frame, counted
  from the connection's start), ``t`` / ``t_end`` (stream time of its first frame / end of its last,
  from the frames' timestamps), ``score`` (full precision: rounding would tie the many scores a
  trained model puts within 1e-6 of 0 or 1, and cost AUC), ``latency_s`` (last frame decoded -> score computed),
  ``wall`` (UTC).
* ``interval_open`` / ``interval_close``: an anomalous interval, found with ``pipeline.detect``'s
  :func:`~pipeline.scoring.timeline.find_intervals` rules (``--threshold``, ``--merge-gap``, ``--min-duration``):
  opened as soon as a run of frames at or above the threshold lasts ``--min-duration``, closed when
  ``--merge-gap`` seconds below it have followed (nothing later could join it), when the connection
  ends (``cut``), or at shutdown. Fields as detect's intervals CSV (``start_frame`` ... ``mean_score``)
  with ``start_s``/``end_s`` in stream time; ``clip_file`` with ``--save-clips``.
* ``connected``, ``disconnected``, ``retry``, ``gap`` (a reconnect: last stream time before, first
  after, wall seconds lost), ``drop`` (a clip dropped because scoring fell behind), ``error``,
  ``end`` (per stream at the end, with its counts and the latency median and maximum over its
  last 1000 clips).

Faults: see ``pipeline.apps.stream``. SIGINT and SIGTERM stop the readers, close open intervals, finish
alert clips and flush the output; the exit code is then 0. Exit code 2: nothing could run (bad
flags, checkpoint); 1: a stream ended on an error.
"""
from __future__ import annotations

import time

#: When this module was loaded: for ``python -m pipeline.watch``, about when the process started, so
#: that ``--duration`` counts the start-up (torch, the model) too.
LOADED = time.monotonic()

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import Sequence  # noqa: E402

from pipeline.apps import stream as S  # noqa: E402
from pipeline.apps.watching import DEFAULT_MAX_INTERVAL, watch  # noqa: E402
from pipeline.common.cli import HelpFormatter, user_message  # noqa: E402
from pipeline.features.reproduce import EXTRACTOR_FLAGS, RUNTIME_FLAGS, CheckpointError, add_extractor_flags  # noqa: E402
from pipeline.scoring.causal import DEFAULT_WINDOW  # noqa: E402
from pipeline.scoring.timeline import DEFAULT_MERGE_GAP, DEFAULT_MIN_DURATION, DEFAULT_THRESHOLD  # noqa: E402


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.watch",
        description="Live anomaly scores for camera streams (RTSP, RTMP, HTTP(S), UDP/MPEG-TS, SRT URLs, "
                    "/dev/videoN, or a file): one JSON line per 16-frame clip, anomalous intervals opened and "
                    "closed live, reconnects with backoff, whole clips dropped when scoring falls behind. "
                    "Scores are causal: the model runs on the last --window clips, the newest clip's score "
                    "is reported.",
        formatter_class=HelpFormatter)
    p.add_argument("sources", nargs="*", help="stream URLs, devices or files")
    p.add_argument("--sources", dest="sources_file", default=None, metavar="FILE",
                   help="file with one source a line ('URL' or 'NAME URL'; # comments)")
    p.add_argument("--checkpoint", required=True,
                   help="run directory (best.pt if validation-selected, else model.pt) or checkpoint file")
    p.add_argument("--jsonl", default=None, metavar="FILE", help="append the JSON lines to this file instead of stdout")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help="causal window: the model sees a stream's last this many clips")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="a frame is anomalous when its score >= this")
    p.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION,
                   help="an interval opens once it lasts this many seconds")
    p.add_argument("--merge-gap", type=float, default=DEFAULT_MERGE_GAP,
                   help="join intervals separated by less than this many seconds (an interval closes after this "
                        "long below the threshold)")
    p.add_argument("--max-interval", type=float, default=DEFAULT_MAX_INTERVAL,
                   help="close (and reopen) intervals longer than this many seconds, bounding memory")
    p.add_argument("--realtime", action="store_true",
                   help="play files at their own pace, as a camera would (then clips are dropped when scoring "
                        "falls behind); without it a file is a replay scored completely, as fast as possible")
    p.add_argument("--on-alert", default=None, metavar="CMD",
                   help="shell command run on every interval_open / interval_close with its JSON line on stdin")
    p.add_argument("--save-clips", default=None, metavar="DIR",
                   help="write the frames around each interval (what the model saw) to DIR/<stream>_<start>.mp4")
    p.add_argument("--save-before", type=float, default=5.0, help="seconds kept before an interval's start")
    p.add_argument("--save-after", type=float, default=5.0, help="seconds recorded after an interval's end")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=4, help="most clips (of all streams) per I3D forward")
    p.add_argument("--max-pending", type=int, default=2,
                   help="clips a live stream may have waiting; beyond that its oldest is dropped")
    p.add_argument("--open-timeout", type=float, default=S.DEFAULT_OPEN_TIMEOUT, help="seconds to open a network source")
    p.add_argument("--stall-timeout", type=float, default=S.DEFAULT_STALL_TIMEOUT,
                   help="seconds without data before a connection counts as stalled and is reopened")
    p.add_argument("--backoff", type=float, default=S.DEFAULT_BACKOFF, help="first reconnect delay, doubled each failure")
    p.add_argument("--max-backoff", type=float, default=S.DEFAULT_MAX_BACKOFF, help="longest reconnect delay")
    p.add_argument("--max-retries", type=int, default=None,
                   help="end a stream after this many failed reconnects in a row (default: retry forever)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run until "
                                                                   "the streams end or SIGINT/SIGTERM)")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr (the JSON lines still go out)")
    add_extractor_flags(p, precision_default="auto")     # live: bf16 where the CPU has it
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    flags = {k: getattr(a, k) for k in (*EXTRACTOR_FLAGS, *RUNTIME_FLAGS)}
    try:
        pairs = [(None, s) for s in a.sources]
        if a.sources_file:
            pairs += S.read_sources(a.sources_file)
        if not pairs:
            p.error("give at least one source (or --sources FILE)")
        res = watch(S.name_sources(pairs), a.checkpoint, a.jsonl, a.window, a.threshold, a.min_duration,
                    a.merge_gap, a.max_interval, a.realtime, a.device, a.batch_size, a.max_pending,
                    a.open_timeout, a.stall_timeout, a.backoff, a.max_backoff, a.max_retries, a.on_alert,
                    a.save_clips, a.save_before, a.save_after, flags, a.quiet, a.duration, started=LOADED)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    if res["signal"]:
        return 0
    return 1 if any(v["error"] for v in res["streams"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
