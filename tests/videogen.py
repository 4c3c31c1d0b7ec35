"""Small generated test videos (PyAV), deterministic, with the quirks extraction must survive."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def frame_image(i: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Frame ``i`` of a moving pattern: (height, width, 3) uint8, distinct per frame and seed."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1) + 7 * i + 31 * seed) % 256
    g = (y * 255 // max(1, height - 1) + 3 * i) % 256
    cx = (i * 3 + seed * 5) % max(1, width)
    b = np.where(np.abs(x - cx) < max(2, width // 8), 255, 40 + (seed * 17) % 100)
    return np.stack([r, g, b], -1).astype(np.uint8)


def make_video(path, frames: int, width: int = 64, height: int = 48, fps: int = 25,
               codec: Optional[str] = None, gray: bool = False, vfr: bool = False,
               seed: int = 0, gop: int = 12, pts_ms: Optional[Sequence[int]] = None,
               rotation: int = 0, faststart: bool = False) -> Path:
    """Write a video of ``frames`` frames; returns its path.

    codec None: mpeg4 (yuv420p) for even sizes in .mp4/.avi/.mov/.m4v, ffv1 otherwise
    (odd sizes, grayscale, .mkv). vfr: irregular timestamps (millisecond time base); pts_ms: each
    frame's timestamp in milliseconds (a chosen variable frame rate). rotation: a display matrix
    (degrees counter-clockwise, as players read ``rotate``). faststart: the MP4 index (moov) before
    the data, as web and phone files have it.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    odd = width % 2 or height % 2
    if codec is None:
        codec = "ffv1" if (odd or gray or path.suffix.lower() == ".mkv") else "mpeg4"
    pix_fmt = "gray" if gray else ("yuv420p" if codec in ("mpeg4", "libx264") else
                                   "rgb24" if codec == "png" else "yuv444p")
    vfr = vfr or pts_ms is not None
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        if codec in ("mpeg4", "libx264"):
            stream.gop_size = gop
            stream.bit_rate = 400_000
        if vfr:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        rng = np.random.default_rng(seed)
        pts = 0
        for i in range(frames):
            img = frame_image(i, width, height, seed)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if vfr:
                frame.pts = pts if pts_ms is None else int(pts_ms[i])
                frame.time_base = Fraction(1, 1000)
                pts += int(rng.choice([20, 40, 75]))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_hour_video(path, seconds: int = 3600, width: int = 64, height: int = 48,
                    fps: int = 25) -> Path:
    """A long cheap video (default one hour at 64x48, 25 fps) for memory benchmarks.

    A short loop of pre-rendered frames keeps generation fast.
    """
    import av

    path = Path(path)
    loop = [frame_image(i, width, height) for i in range(50)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = 250
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(loop[i % len(loop)], format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_frame_folder(folder, frames: int, width: int = 64, height: int = 48, ext: str = ".png",
                      names: Optional[Sequence[str]] = None, seed: int = 0) -> Path:
    """A folder of numbered images (the frames of ``make_video``), written with PyAV's image
    encoders; ``names`` overrides the file names (default 000.png, 001.png, ...)."""
    import av

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tif": "tiff"}[ext]
    for i in range(frames):
        name = names[i] if names is not None else f"{i:03d}{ext}"
        img = av.VideoFrame.from_ndarray(frame_image(i, width, height, seed), format="rgb24")
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p", "bmp": "bgr24", "tiff": "rgb24"}[codec]
        ctx.time_base = Fraction(1, 25)
        if ctx.pix_fmt != "rgb24":
            img = img.reformat(format=ctx.pix_fmt)
        data = b"".join(bytes(p) for p in ctx.encode(img)) + b"".join(bytes(p) for p in ctx.encode(None))
        (folder / name).write_bytes(data)
    return folder


def truncate(path, fraction: float = 0.5) -> Path:
    """Cut a file to ``fraction`` of its bytes in place."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
