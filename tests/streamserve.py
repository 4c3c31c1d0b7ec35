"""Publish a video as a live stream with PyAV (used by tests/test_watch.py and bench/bench_watch.py).

    python tests/streamserve.py VIDEO udp://127.0.0.1:5600 [--speed 1] [--loops 1]
    python tests/streamserve.py VIDEO http://127.0.0.1:5601/live.ts     (an HTTP server for one client)

Every frame of VIDEO is decoded, re-encoded (H.264 ``zerolatency``, a keyframe every 16 frames, so a
receiver that joins late starts within one clip) and muxed as MPEG-TS to the URL, paced by the
frames' own timestamps divided by ``--speed`` (2: twice real time). For ``http://`` a Python
``http.server`` on that address answers the first GET of the path with the live MPEG-TS body
(no length; closed at the end). ``--loops N`` plays the video N times in a row with continuous timestamps.
This is a real network stream from FFmpeg's own muxer and protocols, not a file read in disguise.
"""
from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction

import av


def read_frames(video: str) -> tuple[list, Fraction]:
    """All frames of ``video`` as RGB arrays (H, W, 3) uint8, and its frame rate."""
    frames = []
    with av.open(video) as src:
        s = src.streams.video[0]
        fps = s.average_rate or Fraction(25)
        for f in src.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
    return frames, fps


def send(out, frames: list, fps: Fraction, speed: float, loops: int) -> int:
    """Encode ``frames`` into the open MPEG-TS container ``out``, paced by their timestamps."""
    h, w = frames[0].shape[:2]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg2video"
    st = out.add_stream(codec, rate=fps)
    st.width, st.height, st.pix_fmt = w, h, "yuv420p"
    st.gop_size = 16
    if codec == "libx264":
        st.options = {"preset": "ultrafast", "tune": "zerolatency", "qp": "10"}
    t0 = time.monotonic()
    n = 0
    for _ in range(loops):
        for img in frames:
            wait = t0 + n / float(fps) / speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            frame.time_base = 1 / fps
            for p in st.encode(frame):
                out.mux(p)
            n += 1
    for p in st.encode():
        out.mux(p)
    return n


def publish(video: str, url: str, speed: float = 1.0, loops: int = 1) -> int:
    """Send ``video`` to ``url`` (udp://HOST:PORT or http://HOST:PORT/PATH); returns the frames sent."""
    frames, fps = read_frames(video)
    if url.startswith("udp://"):
        with av.open(url + ("" if "?" in url else "?pkt_size=1316"), "w", format="mpegts") as out:
            return send(out, frames, fps, speed, loops)
    if not url.startswith("http://"):
        raise SystemExit(f"{url}: only udp:// and http:// are served")
    import http.server
    from urllib.parse import urlsplit

    u = urlsplit(url)
    sent = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):                       # one live MPEG-TS body, no length, then close
            if self.path != (u.path or "/"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                with av.open(self.wfile, "w", format="mpegts") as out:
                    sent.append(send(out, frames, fps, speed, loops))
            except (BrokenPipeError, ConnectionResetError):
                sent.append(-1)

        def log_message(self, *args):
            pass

    with http.server.HTTPServer((u.hostname, u.port), Handler) as server:
        print(f"serving {url}", flush=True)
        while not sent:
            server.handle_request()
    return sent[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video")
    p.add_argument("url")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (1: real time)")
    p.add_argument("--loops", type=int, default=1, help="play the video this many times")
    a = p.parse_args(argv)
    n = publish(a.video, a.url, a.speed, a.loops)
    print(f"sent {n} frames to {a.url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
