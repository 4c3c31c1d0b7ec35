"""Video decoding, exact 16-frame clips, crops and normalisation (stage 1).

Decoding is a stream: PyAV pulls one frame at a time from the demuxer, so memory
stays bounded whatever the video length (decord 0.6.0 reads ahead without bound, so
it is not used). Frames are counted as they are decoded, never estimated from
timestamps, so a clip is always exactly ``clip_len`` decoded frames.

Pixel path (the choices, in order):
1. decode, convert to RGB24 and resize so the short side is ``short_side``
   (libswscale, bilinear) in one ``reformat`` call; the output size is fixed by
   the first frame, so a mid-stream resolution change cannot change clip shapes;
2. group frames into non-overlapping clips of ``clip_len``; the tail is padded
   by repeating the last decoded frame (``tail="pad"``, ``ceil(frames/16)``
   clips, RTFM's public features) or dropped (``tail="drop"``, ``floor``);
3. on the device: centre crop or torchvision's ``ten_crop`` order (four corners,
   centre, then the same five of the horizontally flipped frame), then the
   normalisation the weights were trained with.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
#: A folder of numbered images with these extensions (and no video file) is one video.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
CLIP_LEN = 16
#: Frame rate of a frame folder when none is given (its images carry no timestamps).
DEFAULT_IMAGE_FPS = 25.0
#: Demuxers that read a single still image: such a file is not a video, whatever its name.
STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "tiff_pipe", "webp_pipe",
                       "gif", "gif_pipe", "jpegls_pipe", "pgm_pipe", "ppm_pipe", "qoi_pipe")

# Normalisations: name -> (mean, std) applied to RGB/255.
# "kinetics": pytorchvideo's I3D_8x8_R50 and video-nonlocal-net's 32x2 baseline
#             (both RGB, mean 0.45, std 0.225 on [0, 1], i.e. 114.75 / 57.375 on [0, 255]).
# "minus1to1": x / 127.5 - 1, used by some public extractors.
NORMS: Dict[str, Tuple[float, float]] = {
    "kinetics": (0.45, 0.225),
    "minus1to1": (0.5, 0.5),
}

PathLike = Union[str, os.PathLike]


class VideoError(RuntimeError):
    """A video that cannot be decoded into clips; the message names the file."""


# ----------------------------------------------------------------------------- discovery

def is_video_file(path: PathLike) -> bool:
    """True when the file name ends in one of VIDEO_EXTENSIONS (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_file(path: PathLike) -> bool:
    """True when the file name ends in one of IMAGE_EXTENSIONS (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def natural_key(name: str) -> List[Union[int, str]]:
    """Sort key that orders numbers by value: 1.png < 2.png < 10.png, frame_9 < frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_images(folder: PathLike) -> List[Path]:
    """The image files directly in ``folder`` (not hidden), in natural order of their names."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def numbering_gaps(folder: PathLike, images: Sequence[Path]) -> Optional[str]:
    """A message when the numbered images of a frame folder skip numbers (000.jpg, 001.jpg, 003.jpg:
    an image is missing, so later frames are timed one frame early), else None. Names without a
    number, or numbers that do not increase, are not judged."""
    nums = []
    for p in images:
        m = re.search(r"(\d+)\D*$", p.stem)
        if m is None:
            return None
        nums.append(int(m.group(1)))
    gaps = [(a, b) for a, b in zip(nums, nums[1:]) if b - a > 1]
    if not gaps or any(b <= a for a, b in zip(nums, nums[1:])):
        return None
    missing = sum(b - a - 1 for a, b in gaps)
    return (f"{folder}: the image numbers skip {missing} frame(s) ({len(gaps)} gap(s), first from "
            f"{gaps[0][0]} to {gaps[0][1]}): the images are taken as consecutive frames")


def is_frame_folder(path: PathLike) -> bool:
    """A folder holding image files, no video file and no subfolder: one video, its frames in name
    order. (A folder with subfolders is searched instead: a stray image beside ``Test001/`` ...
    must not turn the whole tree into one video.)"""
    path = Path(path)
    if not path.is_dir():
        return False
    has_image = False
    for p in path.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() or is_video_file(p):
            return False
        if not p.is_file():
            continue
        has_image = has_image or is_image_file(p)
    return has_image


def find_videos(root: PathLike) -> List[Path]:
    """Videos under ``root`` (recursive, sorted): video files and frame folders (see
    :func:`is_frame_folder`; a frame folder is not searched further), or ``[root]`` for a single
    file or a frame folder.

    Raises FileNotFoundError when ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file() or is_frame_folder(root):
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    found: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        keep = []
        for n in dirnames:
            if is_frame_folder(d / n):
                found.append(d / n)
            else:
                keep.append(n)
        dirnames[:] = keep
        found.extend(d / n for n in filenames if is_video_file(n) and not n.startswith(".")
                     and (d / n).is_file())
    return sorted(found)


#: How every command reports a folder of :func:`empty_folders`.
EMPTY_FOLDER = (f"empty folder: no video files ({' '.join(VIDEO_EXTENSIONS)}) or images "
                f"({' '.join(IMAGE_EXTENSIONS)}) in it")


def empty_folders(roots: Sequence[PathLike], exclude: Sequence[PathLike] = ()) -> List[Path]:
    """Folders among or below ``roots`` that cannot be a video and hold nothing to search: an input
    folder in which :func:`find_videos` finds nothing, and every folder below an input with no
    entry at all (hidden ones aside), e.g. a camera's folder or a frame folder whose files are
    missing. Every command reports them by name as failed instead of skipping them silently.
    ``exclude``: folders that are not inputs (the command's own --out, when it lies among them)."""
    skip = {Path(p).resolve() for p in exclude}
    found: List[Path] = []
    for root in map(Path, roots):
        if not root.is_dir() or is_frame_folder(root):
            continue
        if not find_videos(root):
            found.append(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            if (not dirnames and not any(not n.startswith(".") for n in filenames)
                    and Path(dirpath).resolve() not in skip):
                found.append(Path(dirpath))
    return found


def video_key(video: PathLike, root: PathLike) -> str:
    """The output name of ``video`` found under the input ``root``: its path relative to the root,
    without the video extension, '/'-separated (``cam1/2024-01-01_0800``), so that equal file
    names in different folders never collide. A root that is itself the video (a file or a frame
    folder) gives its own name (``clip``, ``Test001``)."""
    video, root = Path(video), Path(root)
    rel = Path(video.name) if video == root else video.relative_to(root)
    if is_video_file(rel) or (video.is_file() and rel.suffix):
        rel = rel.with_suffix("")
    return rel.as_posix()


def find_keyed_videos(inputs: Sequence[PathLike]) -> List[Tuple[Path, str]]:
    """(video, output key) for every video of ``inputs`` (see :func:`find_videos`, :func:`video_key`)."""
    out: List[Tuple[Path, str]] = []
    for root in inputs:
        out.extend((v, video_key(v, root)) for v in find_videos(root))
    return out


# ----------------------------------------------------------------------------- geometry

def resized_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """(width, height) after scaling so that min(width, height) == short_side.

    The long side is rounded to the nearest integer (at least 1).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    if width <= height:
        return short_side, max(1, int(round(height * short_side / width)))
    return max(1, int(round(width * short_side / height))), short_side


def num_clips(frames: int, tail: str, clip_len: int = CLIP_LEN) -> int:
    """Number of clips for ``frames`` decoded frames: ceil (tail="pad") or floor ("drop")."""
    if tail == "pad":
        return int(math.ceil(frames / clip_len))
    if tail == "drop":
        return frames // clip_len
    raise ValueError(f"tail must be 'pad' or 'drop', not {tail!r}")


# ----------------------------------------------------------------------------- decoding

def probe(path: PathLike) -> Dict[str, float]:
    """Cheap metadata from the container header (no decoding).

    Returns dict(fps, frames_estimate, duration, width, height); frames_estimate is
    the stream's frame count or duration * fps, 0 when unknown. Raises VideoError.
    """
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            duration = 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1e6
            frames = int(stream.frames or 0) or int(round(duration * fps))
            return dict(fps=fps, frames_estimate=frames, duration=duration,
                        width=int(stream.codec_context.width or 0),
                        height=int(stream.codec_context.height or 0))
    except VideoError:
        raise
    except Exception as exc:  # av.error.*, OSError, ...
        raise VideoError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from exc


class FrameStream:
    """Iterate RGB frames (H, W, 3) uint8 of one video, short side resized, decoded on demand.

    ``path`` is a video file or a frame folder (numbered images, :func:`is_frame_folder`), whose
    images are decoded by the same PyAV / libswscale path as video frames, at ``image_fps``.

    After iteration: ``frames`` (decoded count), ``fps``, ``src_size`` (w, h), ``out_size`` (w, h),
    ``times`` (each frame's presentation time in seconds, from the first frame's: variable frame
    rates are kept as they are), ``rotation`` (degrees counter-clockwise from the container's
    display matrix), ``rotation_applied`` and ``error`` (a message when decoding stopped on an
    error after at least one frame; None otherwise). Errors before the first frame raise
    VideoError, as does a still image under a video name and, in a frame folder, an unreadable
    image or one of another size. ``threads`` is the decoder's thread count (0 = FFmpeg's choice).

    Rotation: players turn a frame by its display matrix (phone videos are stored sideways with
    ``rotate=90``); so does this, after the resize, for multiples of 90 degrees. A display matrix
    with a mirror or another angle is not applied and ``rotation_applied`` says so.
    """

    def __init__(self, path: PathLike, short_side: Optional[int] = 256, threads: int = 0,
                 image_fps: float = DEFAULT_IMAGE_FPS):
        self.path = Path(path)
        self.short_side = short_side
        self.threads = threads
        self.image_fps = float(image_fps)
        self.frames = 0
        self.fps = 0.0
        self.src_size: Optional[Tuple[int, int]] = None
        self.out_size: Optional[Tuple[int, int]] = None
        self.error: Optional[str] = None
        self.warning: Optional[str] = None         # frame folders: missing image numbers
        self.frames_expected = 0  # from the container header; 0 when unknown
        self.header_frames = 0    # the stream's frame count in the header; 0 when not given
        self.header_seconds = 0.0  # the duration the header announces; 0 when unknown
        self.first_time: Optional[float] = None   # timestamps (s) of the first / last decoded frame
        self.last_time: Optional[float] = None
        self.times: List[float] = []              # per frame, seconds from the first frame
        self.rotation = 0
        self.rotation_applied = True
        self.frame_folder = False

    def truncated(self, below: float = 0.9) -> bool:
        """After iteration: True when far less was decoded than the header announces (a cut
        file): fewer than ``below`` x its frame count, or, without one, less than ``below`` x
        its duration in timestamps (variable frame rates included)."""
        if self.header_frames:
            return self.frames < below * self.header_frames
        if self.header_seconds and self.first_time is not None and self.last_time is not None:
            step = 1.0 / self.fps if self.fps else 0.0
            return (self.last_time - self.first_time + step) < below * self.header_seconds
        return False

    def _to_rgb(self, frame) -> np.ndarray:
        """One decoded frame -> (H, W, 3) uint8 at ``out_size`` (bilinear), turned as displayed."""
        if self.out_size is None:
            self.src_size = (frame.width, frame.height)
            self.out_size = (self.src_size if not self.short_side else
                             resized_size(frame.width, frame.height, self.short_side))
        w, h = self.out_size
        if (frame.width, frame.height) == (w, h):
            rgb = frame.to_ndarray(format="rgb24")
        else:
            rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
        if self.rotation % 360 and self.rotation_applied:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=(self.rotation // 90) % 4))   # counter-clockwise
        return rgb

    def _read_rotation(self, frame) -> None:
        """The display matrix of the first frame: rotation, and whether it can be applied."""
        try:
            self.rotation = int(round(frame.rotation or 0))
        except Exception:       # no display matrix support: nothing to apply
            self.rotation = 0
        mirrored = False
        try:
            for sd in frame.side_data:
                if "DISPLAYMATRIX" in str(getattr(sd, "type", "")).upper():
                    m = np.frombuffer(bytes(sd), dtype="<i4")[:9].astype(np.float64)   # 16.16 fixed point
                    mirrored = m[0] * m[4] - m[1] * m[3] < 0
        except Exception:
            pass
        self.rotation_applied = self.rotation % 90 == 0 and not mirrored

    def __iter__(self) -> Iterator[np.ndarray]:
        path = self.path
        if path.is_dir():
            yield from self._iter_folder()
            return
        import av

        if not path.exists():
            raise VideoError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise VideoError(f"{path}: empty file (0 bytes)")
        try:
            container = av.open(str(path))
        except Exception as exc:
            raise VideoError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from exc
        with container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            fmt = (container.format.name or "").split(",")
            if any(f in STILL_IMAGE_FORMATS for f in fmt):
                raise VideoError(f"{path}: a still image ({container.format.name}), not a video")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.threads:
                stream.thread_count = self.threads
            self.fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            self.header_frames = int(stream.frames or 0)
            if stream.duration and stream.time_base:
                self.header_seconds = float(stream.duration * stream.time_base)
            elif container.duration:                      # e.g. Matroska: the segment's duration
                self.header_seconds = container.duration / 1e6
            self.frames_expected = self.header_frames or int(round(self.header_seconds * self.fps))
            decoded = container.decode(stream)
            while True:
                try:
                    frame = next(decoded)
                except StopIteration:
                    break
                except Exception as exc:
                    msg = f"{path}: decode error after {self.frames} frames ({type(exc).__name__}: {exc})"
                    if self.frames == 0:
                        raise VideoError(msg) from exc
                    self.error = msg
                    break
                if self.frames == 0:
                    self._read_rotation(frame)
                try:
                    rgb = self._to_rgb(frame)
                except Exception as exc:
                    msg = f"{path}: cannot convert frame {self.frames} ({type(exc).__name__}: {exc})"
                    if self.frames == 0:
                        raise VideoError(msg) from exc
                    self.error = msg
                    break
                self.frames += 1
                t = frame.time
                if t is not None:
                    self.first_time = t if self.first_time is None else self.first_time
                    self.last_time = t
                # a frame without a timestamp: one frame period after the previous one
                prev = self.times[-1] if self.times else None
                if t is None or self.first_time is None:
                    rel = 0.0 if prev is None else prev + (1.0 / self.fps if self.fps else 0.0)
                else:
                    rel = t - self.first_time
                self.times.append(round(float(rel), 6))
                yield rgb  # (H, W, 3) uint8
        if self.frames == 0:
            raise VideoError(f"{path}: no decodable frames")

    def _iter_folder(self) -> Iterator[np.ndarray]:
        """Frames of a frame folder: each image decoded by PyAV, all of one size, at image_fps."""
        import av

        images = frame_images(self.path)
        if not images:
            raise VideoError(f"{self.path}: a folder without images (looked for {' '.join(IMAGE_EXTENSIONS)})")
        self.frame_folder = True
        self.warning = numbering_gaps(self.path, images)
        self.fps = self.image_fps
        self.header_frames = self.frames_expected = len(images)
        self.header_seconds = len(images) / self.fps
        for img in images:
            try:
                with av.open(str(img)) as c:
                    # a truncated or damaged image is an error, not FFmpeg's concealed partial picture
                    c.streams.video[0].codec_context.options = {"err_detect": "explode"}
                    frame = next(c.decode(video=0))
                    if self.src_size is not None and (frame.width, frame.height) != self.src_size:
                        raise VideoError(f"{img}: {frame.width}x{frame.height}, but the folder's first image "
                                         f"{images[0].name} is {self.src_size[0]}x{self.src_size[1]}: "
                                         f"the images of one video must have one size")
                    rgb = self._to_rgb(frame)
            except VideoError:
                raise
            except Exception as exc:
                raise VideoError(f"{img}: the image does not decode completely (truncated or damaged file; "
                                 f"{type(exc).__name__}: {exc})") from exc
            self.times.append(round(self.frames / self.fps, 6))
            self.first_time = 0.0
            self.last_time = self.times[-1]
            self.frames += 1
            yield rgb  # (H, W, 3) uint8


def iter_clips(frames: Iterator[np.ndarray], tail: str = "pad",
               clip_len: int = CLIP_LEN) -> Iterator[np.ndarray]:
    """Group a frame stream into non-overlapping clips (clip_len, H, W, 3) uint8.

    tail="pad": a last partial clip is completed by repeating its last frame
    (ceil(frames / clip_len) clips); tail="drop": it is discarded (floor).
    """
    if tail not in ("pad", "drop"):
        raise ValueError(f"tail must be 'pad' or 'drop', not {tail!r}")
    buf: Optional[np.ndarray] = None
    n = 0
    for frame in frames:
        if buf is None:
            buf = np.empty((clip_len,) + frame.shape, dtype=np.uint8)
        buf[n] = frame
        n += 1
        if n == clip_len:
            yield buf.copy()
            n = 0
    if n and tail == "pad":
        buf[n:] = buf[n - 1]
        yield buf.copy()


def iter_clip_batches(clips: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Stack clips into batches (B, clip_len, H, W, 3) uint8, the last one possibly smaller."""
    batch: List[np.ndarray] = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


# ----------------------------------------------------------------------------- crops / norm

def crop_boxes(height: int, width: int, crop: int, crops: int) -> List[Tuple[int, int, bool]]:
    """(top, left, hflip) of each crop, in torchvision's center_crop / ten_crop order.

    crops=1: the centre crop; crops=10: top-left, top-right, bottom-left, bottom-right,
    centre, then the same five boxes taken on the horizontally flipped frame.
    """
    if crop > height or crop > width:
        raise ValueError(f"crop {crop} larger than frame {width}x{height}")
    center = (int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0)))
    if crops == 1:
        return [(center[0], center[1], False)]
    if crops != 10:
        raise ValueError(f"crops must be 1 or 10, not {crops}")
    five = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop), center]
    return [(t, l, False) for t, l in five] + [(t, l, True) for t, l in five]


#: What of each frame the network sees: the whole resized frame (pooled once, or per region of a
#: grid over it), its centre crop, or ten crops.
COVERAGES = ("grid", "full", "center", "ten")
COVERAGE_CROPS = {"grid": None, "full": 1, "center": 1, "ten": 10}
DEFAULT_GRID = (2, 2)
#: pipeline.extract's coverage when neither --coverage nor --crops is given (README, "Choices").
DEFAULT_COVERAGE = "grid"


def parse_grid(text) -> Tuple[int, int]:
    """'2x2' -> (2, 2): rows x columns of regions of the frame."""
    try:
        rows, cols = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"grid must be ROWSxCOLS such as 2x2, not {text!r}") from None
    if not (1 <= rows <= 8 and 1 <= cols <= 8):
        raise ValueError(f"grid {text!r}: rows and columns must be 1-8")
    return rows, cols


def resolve_coverage(coverage: Optional[str], crops: Optional[int]) -> str:
    """--coverage, or the older --crops (1: center, 10: ten); neither: DEFAULT_COVERAGE. With both,
    crops must say the same (a record's crops of a grid, its region count, says nothing)."""
    if crops is not None and crops not in (1, 10) and coverage is None:
        raise ValueError(f"crops must be 1 or 10, not {crops}")
    from_crops = {1: "center", 10: "ten"}.get(crops)
    if coverage is not None and coverage not in COVERAGES:
        raise ValueError(f"coverage must be one of {', '.join(COVERAGES)}, not {coverage!r}")
    if coverage in ("center", "ten") and from_crops and coverage != from_crops or \
            coverage in ("grid", "full") and crops == 10:
        raise ValueError(f"--coverage {coverage} contradicts --crops {crops}")
    return coverage or from_crops or DEFAULT_COVERAGE


def coverage_of(record: dict) -> str:
    """The coverage an extractor record describes; records written before coverage existed
    name only ``crops``: 1 was the centre crop, 10 ten crops."""
    if record.get("coverage"):
        return record["coverage"]
    return "ten" if record.get("crops") == 10 else "center"


def coverage_text(record: dict) -> str:
    """'the whole frame' / 'the centre 224 crop' / '10 crops of 224', for messages."""
    cov = coverage_of(record)
    if cov == "full":
        return "the whole frame"
    if cov == "grid":
        return f"the whole frame in {record.get('grid')} regions"
    size = record.get("crop_size")
    return f"the centre {size} crop" if cov == "center" else f"10 crops of {size}"


def clip_views(x, coverage: str, crop: int):
    """What the network sees of a batch of clips, on whatever device ``x`` lives.

    x: (B, T, H, W, 3) uint8 tensor  ->  (B, views, 3, T, h, w) uint8 tensor: the whole frame
    (coverage "full": views 1, h x w = H x W), the centre crop ("center": 1, crop x crop) or
    ten crops ("ten": 10, crop x crop, torchvision ten_crop order). "grid" sees the whole frame as
    "full" does; its regions are pooled from the network's feature map (``pool_regions``).
    """
    if coverage not in COVERAGE_CROPS:
        raise ValueError(f"coverage must be one of {COVERAGES}, not {coverage!r}")
    if coverage in ("full", "grid"):
        return x.permute(0, 4, 1, 2, 3).unsqueeze(1)   # (B, 1, 3, T, H, W)
    return crop_clips(x, crop, COVERAGE_CROPS[coverage])


def pool_regions(fmap, grid: Tuple[int, int]):
    """Average a feature map over each region of a rows x cols grid (and over time).

    fmap: (N, D, t, h, w) -> (N, rows * cols, D), regions in row-major order (top-left first).
    Region edges are adaptive pooling's (floor / ceil of i * h / rows), so a map smaller than the
    grid still gives every region a value.
    """
    import torch.nn.functional as F

    r = F.adaptive_avg_pool3d(fmap.float(), (1, grid[0], grid[1]))   # (N, D, 1, rows, cols)
    return r.flatten(2).transpose(1, 2)                               # (N, rows * cols, D)


def crop_clips(x, crop: int, crops: int):
    """Crops of a batch of clips, on whatever device ``x`` lives.

    x: (B, T, H, W, 3) uint8 tensor  ->  (B, crops, 3, T, crop, crop) uint8 tensor.
    A crop on the flipped frame equals the flip of the mirrored box on the original,
    which is what is computed here (no full-frame flip).
    """
    import torch

    B, T, H, W, C = x.shape
    out = []
    for top, left, flip in crop_boxes(H, W, crop, crops):
        if flip:  # box (top, left) of the flipped frame = box (top, W-crop-left) flipped
            c = x[:, :, top:top + crop, W - crop - left:W - left].flip(3)
        else:
            c = x[:, :, top:top + crop, left:left + crop]
        out.append(c)
    y = torch.stack(out, 1)                       # (B, crops, T, crop, crop, 3)
    return y.permute(0, 1, 5, 2, 3, 4)            # (B, crops, 3, T, crop, crop)


def normalize(x, norm: str = "kinetics", dtype=None):
    """uint8 RGB tensor -> float, ``(x/255 - mean) / std`` with NORMS[norm] (any shape)."""
    import torch

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, not {norm!r}")
    mean, std = NORMS[norm]
    x = x.to(dtype or torch.float32)
    return (x / 255.0 - mean) / std
