"""The data contract: split lists, video labels, test annotations, feature files, resampling.

Everything here reads the field's public formats *as they are* (numpy only, no torch):

* split lists: RTFM ``.list`` files (Windows ``G:\\...\\X_i3d.npy`` or POSIX paths, CRLF or LF),
  the official UCF-Crime split (``Abuse/Abuse001_x264.mp4``), ShanghaiTech ``video,label[,n_frames]``
  lines (MIST ``SH_Train_new.txt`` / ``SH_Test_NEW.txt``) and bare names (RTFM ``SH_Train.txt``,
  no final newline), XD-Violence per-crop lists (``.../<video>__<k>.npy``, one line per crop).
* test ground truth: UCF-Crime ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt`` (and MIST's
  tab-separated ``*_New.txt``, ekosman's ``Test_Annotation.txt``), ShanghaiTech ``test_frame_mask/``,
  XD-Violence ``annotations.txt``.
* features: one ``.npy`` per video, ``(clips, D)`` or ``(clips, crops, D)``, or one file per crop
  (XD ``<video>__<k>.npy``), matched to list entries by *video name*, never by path.

Interval convention (our choice, stated once): an annotation interval ``(s, e)`` is a pair of
0-based frame indices with an **inclusive** end, so frames ``s, s+1, ..., e`` are anomalous,
i.e. ``labels[s:e+1] = 1``, clipped to the video length. The official UCF-Crime file does not say
whether its indices are 0- or 1-based; some ends equal the frame count (Assault006: end 8096 of 8096
frames) or exceed it by one or two (Arson011, Explosion033), so clipping is required. The
difference between the readings is at most one frame per interval boundary. Against the frame
counts of MIST's file, the official intervals overrun by at most 3 frames (``e + 1 - frames``:
Explosion033, Shooting015); :data:`OVERRUN_TOLERANCE` clips that much quietly, and
:func:`check_extent` reports anything more (features of another fps, ``--tail drop``, a re-encoded
video) for ``pipeline.evaluate`` to warn about or refuse.

Errors raise :class:`DataError` (a ``ValueError``) whose message names the offending file, and the
line or video when relevant.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FEATURE_DIM = 2048
DATASETS = ("ucf", "sht", "xd")

#: The 13 anomaly classes of UCF-Crime (folder names of the official release).
UCF_CLASSES = (
    "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
    "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
)
#: Folders of the official UCF-Crime split that hold normal videos.
UCF_NORMAL_FOLDERS = ("Training_Normal_Videos_Anomaly", "Testing_Normal_Videos_Anomaly")

#: Extensions stripped by :func:`video_name` (only these: XD names contain dots).
KNOWN_EXTENSIONS = (
    ".npy", ".npz", ".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv",
    ".flv", ".txt", ".pt", ".pth", ".h5",
)

_CROP_RE = re.compile(r"__(\d+)$")

#: Frames an annotation may mark past a video's last frame and be clipped without a word: the
#: official UCF-Crime file overruns MIST's frame counts by up to 3 (see the module docstring).
OVERRUN_TOLERANCE = 3
#: Clips a feature file may differ from ``frames / 16`` (floor or ceil) before its frame count
#: (MIST's annotation) is reported as not matching: decoders disagree by a few frames.
CLIP_COUNT_TOLERANCE = 1


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return dataset


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------
def _strip_name(entry: str) -> tuple[str, int | None]:
    """Base name of ``entry`` without dirs/extension/'_i3d', and its XD crop index (or None)."""
    base = re.split(r"[\\/]", str(entry).strip())[-1]
    low = base.lower()
    for ext in KNOWN_EXTENSIONS:
        if low.endswith(ext):
            base = base[: -len(ext)]
            break
    crop = None
    m = _CROP_RE.search(base)
    if m:
        crop = int(m.group(1))
        base = base[: m.start()]
    if base.endswith("_i3d"):
        base = base[: -len("_i3d")]
    return base, crop


def video_name(entry: str) -> str:
    """Canonical video name of a list entry or file path.

    Strips Windows or POSIX directories, a known extension (``.npy``, ``.mp4``, ... -- never an
    arbitrary suffix after a dot, since XD-Violence names contain dots), a trailing ``_i3d``
    (RTFM feature files) and an XD-Violence crop suffix ``__<digits>``::

        'G:\\\\UCF_Train_ten_crop_i3d\\\\Abuse001_x264_i3d.npy' -> 'Abuse001_x264'
        'Abuse/Abuse001_x264.mp4'                           -> 'Abuse001_x264'
        'A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A__0.npy'
                                            -> 'A.Beautiful.Mind.2001__#00-01-45_00-02-50_label_A'
    """
    name, _ = _strip_name(entry)
    if not name:
        raise ValueError(f"cannot derive a video name from entry {entry!r}")
    return name


def crop_index(entry: str) -> int | None:
    """The XD-Violence crop index ``k`` of ``'<video>__<k>.npy'``, or None when there is none."""
    return _strip_name(entry)[1]


def ucf_class(name: str) -> str:
    """UCF-Crime class of a video name: 'Normal' for ``Normal_Videos*``, else the prefix before
    the digits (``RoadAccidents012_x264`` -> ``RoadAccidents``)."""
    if "Normal_Videos" in name:
        return "Normal"
    m = re.match(r"([A-Za-z]+)", name)
    return m.group(1) if m else ""


def xd_class(name: str) -> str:
    """XD-Violence label code of a video name: the text after ``label_`` ('A' = normal,
    e.g. 'B2-B6-0' for violent); '' when absent."""
    i = name.rfind("label_")
    return name[i + len("label_"):] if i >= 0 else ""


def dataset_label(name: str, dataset: str) -> int | None:
    """Video label from the name alone: ucf ``Normal_Videos`` -> 0 else 1; xd ``label_A`` -> 0
    else 1; sht -> None (the name does not say)."""
    if dataset == "ucf":
        return 0 if "Normal_Videos" in name else 1
    if dataset == "xd":
        return 0 if "label_A" in name else 1
    return None


# --------------------------------------------------------------------------------------------
# split lists
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One video of a split list."""

    name: str  # canonical video name
    label: int | None  # 1 abnormal, 0 normal, None when the list itself does not say
    cls: str = ""  # class, e.g. 'Abuse', 'Normal'; '' when unknown
    n_frames: int | None = None  # frame count when the list gives one (SH_Test_NEW.txt), else None


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank stripped lines with their 1-based line numbers (BOM, CRLF, no final newline ok)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from e
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]


_CSV_RE = re.compile(r"^([^,]+?)\s*,\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?$")
_NFRAMES_RE = re.compile(r"^(\S+)\s+(\d+)$")


def read_split(path, dataset: str) -> list[Entry]:
    """Read a split list in any of the accepted formats (detected from content).

    Formats: RTFM ``.list`` (Windows or POSIX feature paths, CRLF or LF); the official UCF-Crime
    split ``Folder/Name_x264.mp4`` (class = folder, the two ``*_Normal_Videos_Anomaly`` folders ->
    'Normal'); ``video,label[,n_frames]`` lines (``SH_Train_new.txt``, ``SH_Test_NEW.txt``; an
    n_frames of -1 means unknown); bare names (``SH_Train.txt``); XD per-crop lists, where the
    lines ``<video>__0.npy .. <video>__4.npy`` collapse into one entry; ``Folder/Name.mp4 n_frames``
    lines (ekosman's ``Train_Annotation.txt``).

    Labels: a label column wins; else ucf ``Normal_Videos`` -> 0 else 1; xd ``label_A`` -> 0 else
    1; sht -> None (resolved later from the frame masks, see :func:`load_split`).
    Classes: ucf as above (else from the name prefix), xd the label code after ``label_``, sht ''.

    Raises DataError naming the file (and line) for an empty list, a bad label, a duplicate video.
    """
    path = Path(path)
    _check_dataset(dataset)
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: split list is empty")
    entries: list[Entry] = []
    seen: dict[str, tuple[int, set[int | None]]] = {}  # name -> (first line, crops seen)
    for lineno, line in lines:
        label: int | None = None
        n_frames: int | None = None
        m = _CSV_RE.match(line)
        if m:
            raw = m.group(1)
            label = int(m.group(2))
            if label not in (0, 1):
                raise DataError(f"{path}:{lineno}: label must be 0 or 1, got {label} in {line!r}")
            if m.group(3) is not None and int(m.group(3)) >= 0:
                n_frames = int(m.group(3))
        elif "," in line:
            raise DataError(f"{path}:{lineno}: cannot parse {line!r} (expected 'video,label[,n_frames]')")
        elif _NFRAMES_RE.match(line):  # ekosman Train_Annotation.txt: 'Folder/Name.mp4 n_frames'
            raw, nf = _NFRAMES_RE.match(line).groups()
            n_frames = int(nf)
        else:
            raw = line
        try:
            name, crop = _strip_name(raw)
        except ValueError:
            name, crop = "", None
        if not name:
            raise DataError(f"{path}:{lineno}: no video name in {line!r}")
        if name in seen:
            first, crops = seen[name]
            if crop is None or crop in crops or None in crops:
                raise DataError(f"{path}:{lineno}: duplicate video {name!r} (first on line {first})")
            crops.add(crop)
            continue  # another crop of an XD video already listed
        seen[name] = (lineno, {crop})
        parts = re.split(r"[\\/]", raw)
        folder = parts[-2] if len(parts) >= 2 else ""
        if label is None:
            label = dataset_label(name, dataset)
        if dataset == "ucf":
            if folder in UCF_NORMAL_FOLDERS:
                cls = "Normal"
            elif folder in UCF_CLASSES:
                cls = folder
            else:
                cls = ucf_class(name)
        elif dataset == "xd":
            cls = xd_class(name)
        else:
            cls = ""
        entries.append(Entry(name=name, label=label, cls=cls, n_frames=n_frames))
    return entries


# --------------------------------------------------------------------------------------------
# annotations
# --------------------------------------------------------------------------------------------
@dataclass
class Annotation:
    """Test ground truth of one dataset.

    Frame labels follow our stated convention: an interval ``(s, e)`` marks 0-based frames
    ``s..e`` inclusive (``labels[s:e+1] = 1``), clipped to the video length. A ShanghaiTech mask
    is used frame for frame; it is truncated to ``n_frames``, or padded by repeating its last
    label (the rule RTFM's ``gt-sh.npy`` was built with: each anomalous video's mask padded up to
    a multiple of 16 frames).
    """

    dataset: str
    path: Path
    intervals: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # ucf/xd
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # sht: uint8 (frames,)
    classes: dict[str, str] = field(default_factory=dict)  # ucf: incl. 'Normal'
    n_frames: dict[str, int] = field(default_factory=dict)  # frame counts when the file gives them

    def names(self) -> set[str]:
        """Every video the annotation names (anomalous or, for UCF, listed normal)."""
        return set(self.intervals) | set(self.masks) | set(self.classes)

    def is_abnormal(self, name: str) -> bool:
        """True when the video has >= 1 interval (ucf/xd) or a mask file (sht: the mask folder
        holds exactly the anomalous videos)."""
        if self.dataset == "sht":       # a mask that marks no frame (a normal video's) is normal
            return name in self.masks and bool(self.masks[name].any())
        return len(self.intervals.get(name, ())) > 0

    def frame_labels(self, name: str, n_frames: int) -> np.ndarray:
        """uint8 ``(n_frames,)`` labels of one video; zeros for a video without annotation."""
        n_frames = int(n_frames)
        if n_frames < 0:
            raise ValueError(f"n_frames must be >= 0, got {n_frames}")
        out = np.zeros(n_frames, dtype=np.uint8)  # (frames,)
        mask = self.masks.get(name)
        if mask is not None and len(mask):
            k = min(len(mask), n_frames)
            out[:k] = mask[:k]
            out[k:] = mask[-1]  # pad by repeating the last label (RTFM gt-sh.npy rule)
        for s, e in self.intervals.get(name, ()):
            out[max(s, 0): max(min(e + 1, n_frames), 0)] = 1  # 0-based, inclusive end
        return out

    def overrun(self, name: str, n_frames: int) -> int:
        """Frames the annotation marks past the end of a video of ``n_frames`` frames: the largest
        ``e + 1 - n_frames`` over its intervals (a ShanghaiTech mask: its length minus ``n_frames``),
        0 when everything fits."""
        over = max([e + 1 - int(n_frames) for _, e in self.intervals.get(name, ())] or [0])
        if name in self.masks:
            over = max(over, len(self.masks[name]) - int(n_frames))
        return max(over, 0)

    def check_names(self, names: Iterable[str]) -> None:
        """Raise DataError when the annotation names videos that are not in ``names``.

        ShanghaiTech is the exception: its mask folder covers all 107 original test videos, 63 of
        which belong to the weak *train* split, so extra masks are allowed there; it only raises
        when no masked video at all is among ``names`` (a naming mismatch).
        """
        names = set(names)
        if self.dataset == "sht":
            if names and self.masks and not (set(self.masks) & names):
                raise DataError(
                    f"{self.path}: none of the {len(self.masks)} masked videos is among the "
                    f"{len(names)} given names (e.g. mask {sorted(self.masks)[0]!r} vs video "
                    f"{sorted(names)[0]!r}); are the names spelled the same?")
            return
        unknown = sorted(self.names() - names)
        if unknown:
            raise DataError(
                f"{self.path}: {len(unknown)} annotated video(s) not among the {len(names)} "
                f"videos: {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")


@dataclass
class ExtentReport:
    """What :func:`check_extent` found: annotations running past the features, frame counts that do
    not match the features' clip counts (each a list of ``(video, detail)``)."""
    overruns: list[tuple[str, int]] = field(default_factory=list)          # (video, frames past the end)
    whole_beyond: list[str] = field(default_factory=list)                  # videos with an interval starting past the end
    frame_counts: list[tuple[str, str]] = field(default_factory=list)      # (video, "N frames but C clips")

    def problems(self, path) -> list[str]:
        """One line per kind of problem, naming the annotation file, a count and the first videos."""
        def some(items):
            return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
        out = []
        if self.overruns:
            out.append(f"{path}: {len(self.overruns)} video(s) have anomalous frames annotated more than "
                       f"{OVERRUN_TOLERANCE} frames past the end of their features "
                       f"({some([f'{v} by {k}' for v, k in self.overruns])})"
                       + (f"; {len(self.whole_beyond)} interval(s) start after the end ({some(self.whole_beyond)})"
                          if self.whole_beyond else "")
                       + ": features of another fps, --tail drop or re-encoded videos?")
        if self.frame_counts:
            out.append(f"{path}: {len(self.frame_counts)} video(s) have a frame count that does not match their "
                       f"features ({some([f'{v}: {d}' for v, d in self.frame_counts])}), at 16 frames a clip")
        return out


def check_extent(annotation: Annotation, clips: dict[str, int], clip_len: int = 16) -> ExtentReport:
    """Compare the annotation with the features: ``clips`` maps video name -> number of clips.

    Reports intervals (or masks) ending more than :data:`OVERRUN_TOLERANCE` frames past
    ``clip_len * clips`` (the frames evaluation scores), and frame counts given by the annotation
    (MIST's 7th column, ekosman's 2nd, a ShanghaiTech mask's length) more than
    :data:`CLIP_COUNT_TOLERANCE` clips away from ``floor``/``ceil(frames / clip_len)``.
    """
    rep = ExtentReport()
    for name, c in clips.items():
        n = clip_len * int(c)
        over = annotation.overrun(name, n)
        if over > OVERRUN_TOLERANCE:
            rep.overruns.append((name, over))
            if any(s >= n for s, _ in annotation.intervals.get(name, ())):
                rep.whole_beyond.append(name)
        frames = annotation.n_frames.get(name)
        if frames is not None:
            lo, hi = frames // clip_len, -(-frames // clip_len)
            if not lo - CLIP_COUNT_TOLERANCE <= int(c) <= hi + CLIP_COUNT_TOLERANCE:
                rep.frame_counts.append((name, f"{frames} frames but {c} clips"))
    return rep


def check_mask_lengths(annotation: Annotation, clips: dict[str, int], frames: dict[str, int] | None = None,
                       clip_len: int = 16) -> None:
    """Raise DataError when a ShanghaiTech frame mask's length differs from its video's frame count
    beyond the clip-padding rule (a mask is padded by its last label up to the clips' frames).

    ``clips``: video -> clips of its features; ``frames``: video -> decoded frames, where the
    extraction manifest says (then the mask must have exactly that many frames, or ``clip_len *
    clips``); without it the mask must give the same number of clips (``floor`` or ``ceil`` of
    ``len / clip_len``). A shorter mask would otherwise mark the video's last frames with its last
    label, a longer one lose its tail, and the AUC change without a word."""
    frames = frames or {}
    for name, c in clips.items():
        mask = annotation.masks.get(name)
        if mask is None:
            continue
        m, c, f = len(mask), int(c), frames.get(name)
        ok = m in (f, clip_len * c) if f is not None else m // clip_len <= c <= -(-m // clip_len)
        if not ok:
            video = f"{f} frames (extraction manifest), {c} clips" if f is not None else \
                f"{c} clips of {clip_len} frames ({clip_len * (c - 1) + 1}..{clip_len * c} frames)"
            raise DataError(f"{annotation.path / (name + '.npy')}: the mask of video {name} has {m} frames, the video "
                            f"{video}: a mask {'shorter' if m < (f or clip_len * c) else 'longer'} than its video "
                            f"is refused (its frames would be labelled by a guess); use the mask of these frames")


def _pairs(path: Path, lineno: int, values: list[str]) -> list[tuple[int, int]]:
    """(start, end) pairs from a flat list of integer strings; (-1, -1) pairs dropped."""
    try:
        nums = [int(v) for v in values]
    except ValueError:
        raise DataError(f"{path}:{lineno}: frame indices must be integers, got {values}") from None
    if len(nums) % 2:
        raise DataError(f"{path}:{lineno}: odd number of frame indices ({len(nums)}); expected start/end pairs")
    out = []
    for s, e in zip(nums[::2], nums[1::2]):
        if s == -1 and e == -1:
            continue
        if s < 0 or e < 0:
            raise DataError(f"{path}:{lineno}: interval ({s}, {e}) has one end -1 and not the other")
        if e < s:
            raise DataError(f"{path}:{lineno}: interval ({s}, {e}) ends before it starts")
        out.append((s, e))
    return out


def _is_int(s: str) -> bool:
    return re.fullmatch(r"-?\d+", s) is not None


def _read_ucf_annotation(path: Path) -> Annotation:
    ann = Annotation("ucf", path)
    for lineno, line in _read_lines(path):
        tok = line.split()  # two spaces, tabs (MIST) or single spaces (ekosman) alike
        if len(tok) < 2:
            raise DataError(f"{path}:{lineno}: cannot parse {line!r}")
        name = video_name(tok[0])
        n_frames = None
        if _is_int(tok[1]):  # ekosman: 'Folder/Name.mp4 n_frames Class s1 e1 s2 e2'
            n_frames, cls, nums = int(tok[1]), (tok[2] if len(tok) > 2 else ""), tok[3:]
        else:  # official / MIST: 'Name.mp4 Class s1 e1 s2 e2 [n_frames]'
            cls, nums = tok[1], tok[2:]
            if len(nums) % 2 == 1:  # MIST: 7th column is the frame count
                n_frames, nums = int(nums[-1]) if _is_int(nums[-1]) else None, nums[:-1]
        if cls and not re.fullmatch(r"[A-Za-z_]+", cls):
            raise DataError(f"{path}:{lineno}: bad class {cls!r} in {line!r}")
        if name in ann.classes:
            raise DataError(f"{path}:{lineno}: duplicate video {name!r}")
        ann.classes[name] = cls
        pairs = _pairs(path, lineno, nums)
        if pairs:
            ann.intervals[name] = pairs
        if n_frames is not None and n_frames >= 0:
            ann.n_frames[name] = n_frames
    if not ann.classes:
        raise DataError(f"{path}: annotation file is empty")
    return ann


def _read_xd_annotation(path: Path) -> Annotation:
    ann = Annotation("xd", path)
    for lineno, line in _read_lines(path):
        tok = line.split()
        name = video_name(tok[0])
        if name in ann.intervals:
            raise DataError(f"{path}:{lineno}: duplicate video {name!r}")
        pairs = _pairs(path, lineno, tok[1:])
        if not pairs:
            raise DataError(f"{path}:{lineno}: video {name!r} is listed without any interval")
        ann.intervals[name] = pairs
        ann.classes[name] = xd_class(name)
    if not ann.intervals:
        raise DataError(f"{path}: annotation file is empty")
    return ann


def _mask_dir(path: Path) -> Path:
    if path.is_dir() and path.name != "test_frame_mask":
        for cand in [path / "test_frame_mask", *sorted(path.glob("*/test_frame_mask"))]:
            if cand.is_dir():
                return cand
    return path


def _read_sht_masks(path: Path) -> Annotation:
    d = _mask_dir(path)
    if not d.is_dir():
        raise DataError(f"{path}: not a directory of ShanghaiTech frame masks (test_frame_mask/)")
    files = sorted(d.glob("*.npy"))
    if not files:
        raise DataError(f"{d}: no <video>.npy frame masks found")
    ann = Annotation("sht", d)
    for f in files:
        try:
            m = np.load(f, allow_pickle=False)
        except Exception as e:
            raise DataError(f"{f}: cannot read frame mask ({e})") from e
        if m.ndim != 1 or m.size == 0:
            raise DataError(f"{f}: frame mask must be a non-empty 1-D array, got shape {m.shape}")
        if not np.isin(m, (0, 1)).all():
            raise DataError(f"{f}: frame mask holds values other than 0/1")
        ann.masks[video_name(f.name)] = m.astype(np.uint8)
        ann.n_frames[video_name(f.name)] = int(m.size)
    return ann


def read_annotations(path, dataset: str) -> Annotation:
    """Read a dataset's test ground truth.

    * ucf: the official ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``
      (``Name_x264.mp4  Class  s1  e1  s2  e2  ``, two-space separated, trailing spaces, -1 = none),
      MIST's tab-separated ``Temporal_Anomaly_Annotation_New.txt`` (7th column = frame count, kept
      in ``Annotation.n_frames``) or ekosman's ``Test_Annotation.txt``
      (``Folder/Name.mp4 n_frames Class s1 e1 s2 e2``); detected per line from content. Any number
      of pairs is accepted.
    * sht: a ``test_frame_mask/`` directory of ``<video>.npy`` uint8 masks (``path`` may be the
      directory or a folder holding it, directly or one level down).
    * xd: ``annotations.txt``: ``video f1s f1e [f2s f2e ...]`` for each violent test video.

    ``path`` may also be a data root: the file is then found with :func:`find_file`.
    Video names are canonicalised with :func:`video_name`. Intervals are 0-based frame indices
    with an inclusive end (our choice; see the module docstring) -- :meth:`Annotation.frame_labels`
    sets ``labels[s:e+1] = 1`` clipped to the video.
    """
    path = Path(path)
    _check_dataset(dataset)
    if dataset == "sht":
        return _read_sht_masks(path)
    if path.is_dir():
        path = find_file(path, dataset, "annotations")
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    return _read_ucf_annotation(path) if dataset == "ucf" else _read_xd_annotation(path)


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------
def index_features(root) -> dict[str, list[Path]]:
    """Every ``*.npy`` below ``root`` (recursively), keyed by :func:`video_name`.

    Skips folders named ``test_frame_mask`` and files named ``gt*.npy``. XD per-crop files
    ``<video>__<k>.npy`` are grouped under one name, sorted by ``k``. The same video found in two
    places (two folders, or a whole-video file beside crop files) raises DataError naming both.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: feature folder not found")
    groups: dict[str, dict[int | None, Path]] = {}
    for p in sorted(root.rglob("*.npy")):
        rel = p.relative_to(root).parts
        if "test_frame_mask" in rel[:-1] or p.name.startswith("gt"):
            continue
        name, crop = _strip_name(p.name)
        if not name:
            continue
        g = groups.setdefault(name, {})
        clash = g.get(crop)
        if clash is None and g:
            other = next(iter(g.values()))
            if crop is None or None in g or other.parent != p.parent:
                clash = other
        if clash is not None:
            raise DataError(f"video {name!r} has feature files in two places: {clash} and {p}")
        g[crop] = p
    return {n: [g[k] for k in sorted(g, key=lambda k: -1 if k is None else k)] for n, g in groups.items()}


def feature_clips(paths: Path | str | Sequence[Path | str]) -> int:
    """Number of clips of one video's feature file(s), read from the header only (no data loaded)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    p = Path(paths[0])
    try:
        return int(np.load(p, mmap_mode="r", allow_pickle=False).shape[0])
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read feature file ({type(e).__name__}: {e})") from e


def feature_width(paths: Path | str | Sequence[Path | str]) -> int:
    """Feature width (last axis) of one video's feature file(s), read from the header only."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    p = Path(paths[0])
    try:
        shape = np.load(p, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read feature file ({type(e).__name__}: {e})") from e
    if len(shape) not in (2, 3) or shape[-1] < 1:
        raise DataError(f"{p}: expected shape (clips, dim) or (clips, crops, dim), got {shape}")
    return int(shape[-1])


def load_features(paths: Path | str | Sequence[Path | str], dim: int = FEATURE_DIM) -> np.ndarray:
    """Load one video's features as float32 ``(clips, crops, dim)``.

    Accepts one file ``(clips, dim)`` (-> one crop) or ``(clips, crops, dim)``, float16/32/64, or
    several per-crop files (XD ``<video>__<k>.npy``) stacked along the crop axis; their clip counts
    must agree. Raises DataError naming the file when it cannot be read, has the wrong ndim, the
    wrong width (expected vs got), zero clips, a non-float dtype, or NaN/Inf values (with a count).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("load_features: no feature files given")
    parts = []
    for p in paths:
        try:
            x = np.load(p, allow_pickle=False)
        except Exception as e:
            raise DataError(f"{p}: cannot read feature file ({type(e).__name__}: {e})") from e
        if not isinstance(x, np.ndarray):
            raise DataError(f"{p}: expected one array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise DataError(f"{p}: features must be float16/32/64, got dtype {x.dtype}")
        if x.ndim == 2:
            x = x[:, None, :]  # (clips, dim) -> (clips, 1, dim)
        elif x.ndim != 3:
            raise DataError(f"{p}: expected shape (clips, {dim}) or (clips, crops, {dim}), got {x.shape}")
        if x.shape[-1] != dim:
            raise DataError(f"{p}: wrong feature width: expected {dim}, got {x.shape[-1]} (shape {x.shape})")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise DataError(f"{p}: no clips (shape {x.shape})")
        x = x.astype(np.float32, copy=False)
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise DataError(f"{p}: {bad} non-finite value(s) (NaN/Inf) in features of shape {x.shape}")
        parts.append(x)
    if len(parts) == 1:
        return np.ascontiguousarray(parts[0])
    counts = {p.name: x.shape[0] for p, x in zip(paths, parts)}
    if len(set(counts.values())) > 1:
        raise DataError(f"{paths[0]}: per-crop files disagree on the clip count: {counts}")
    return np.concatenate(parts, axis=1)  # (clips, crops, dim)


def resample(features: np.ndarray, T: int) -> np.ndarray:
    """Resample a video's clip features to ``T`` segments by RTFM's rule.

    RTFM (Tian et al., ICCV 2021), ``utils.process_feat``: boundaries
    ``r = np.linspace(0, clips, T + 1).astype(int)``; segment ``i`` is the mean of
    ``features[r[i]:r[i+1]]`` over the clip axis, or ``features[r[i]]`` when that span is empty
    (fewer clips than segments). Works for ``(clips, D)`` and ``(clips, crops, D)``;
    returns float32 ``(T, ...)``.
    """
    x = np.asarray(features)
    T = int(T)
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"cannot resample features of shape {x.shape}: no clips")
    n = x.shape[0]
    r = np.linspace(0, n, T + 1).astype(int)  # (T+1,) segment boundaries
    # reduceat sums x[r[i]:r[i+1]]; where r[i] == r[i+1] it returns x[r[i]], exactly RTFM's rule.
    sums = np.add.reduceat(x.astype(np.float64, copy=False), r[:-1], axis=0)  # (T, ...)
    counts = np.maximum(np.diff(r), 1).reshape((T,) + (1,) * (x.ndim - 1))
    return (sums / counts).astype(np.float32)


# --------------------------------------------------------------------------------------------
# data roots and splits
# --------------------------------------------------------------------------------------------
@dataclass
class Video:
    """One video of a split, ready to load: ``load_features(video.paths)``."""

    name: str
    label: int
    cls: str
    paths: list[Path]
    #: where the label came from when the list gives none: "mask" (ShanghaiTech, a mask file),
    #: "no mask" (ShanghaiTech, no mask file: taken as normal), "name" (the dataset's naming rule)
    label_from: str = "list"


SPLIT_CANDIDATES: dict[str, dict[str, list[str]]] = {
    "ucf": {
        "train": ["train.list", "ucf-i3d.list", "Anomaly_Train.txt"],
        "test": ["test.list", "ucf-i3d-test.list", "Anomaly_Test.txt"],
        "annotations": [
            "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "Temporal_Anomaly_Annotation.txt",
            "Temporal_Anomaly_Annotation_New.txt", "Test_Annotation.txt",
        ],
    },
    "sht": {
        "train": ["train.list", "shanghai-i3d-train-10crop.list", "SH_Train_new.txt", "SH_Train.txt"],
        "test": ["test.list", "shanghai-i3d-test-10crop.list", "SH_Test_NEW.txt", "SH_Test.txt"],
        "annotations": ["test_frame_mask"],
    },
    "xd": {
        "train": ["train.list", "rgb.list"],
        "test": ["test.list", "rgbtest.list"],
        "annotations": ["annotations.txt"],
    },
}


def find_file(root, dataset: str, kind: str) -> Path:
    """The first of ``SPLIT_CANDIDATES[dataset][kind]`` present in ``root``.

    All candidates are tried directly in ``root`` first (in order), then one folder level down.
    Raises DataError listing what was looked for when none exists.
    """
    root = Path(root)
    _check_dataset(dataset)
    if kind not in SPLIT_CANDIDATES[dataset]:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(SPLIT_CANDIDATES[dataset])}")
    cands = SPLIT_CANDIDATES[dataset][kind]
    for c in cands:
        if (root / c).exists():
            return root / c
    if root.is_dir():
        for c in cands:
            hits = sorted(p for p in root.glob(f"*/{c}") if p.exists())
            if hits:
                return hits[0]
    raise DataError(f"{root}: no {dataset} {kind} file found; looked for {', '.join(cands)} "
                    f"in {root} and its subfolders")


def load_split(root, dataset: str, split: str, list_path=None, features_root=None,
               annotation: Annotation | None = None) -> list[Video]:
    """The videos of one split, in list order, each with its label, class and feature files.

    ``list_path`` defaults to :func:`find_file` ``(root, dataset, split)``; features are indexed
    from ``features_root`` (default ``root/'features'`` if it exists, else ``root``).
    Label resolution: the list's label; else the dataset rule (ucf/xd names); ShanghaiTech entries
    without a label are anomalous iff ``annotation`` (or, when none is given, the
    ``test_frame_mask/`` found under ``root``) has a mask for them -- the 63 anomalous training
    videos have masks too. For ``split='test'`` with an annotation, a video whose label disagrees
    with the annotation raises DataError.
    A list entry without a feature file raises DataError naming the list file, the first missing
    videos and how many are missing in all.
    """
    _check_dataset(dataset)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    list_path = Path(list_path) if list_path is not None else find_file(root, dataset, split)
    entries = read_split(list_path, dataset)
    if features_root is None:
        features_root = root / "features" if (root / "features").is_dir() else root
    index = index_features(features_root)

    if annotation is None and any(e.label is None for e in entries):
        try:
            annotation = read_annotations(find_file(root, dataset, "annotations"), dataset)
        except DataError as e:
            raise DataError(f"{list_path}: the list gives no video labels and no annotation to "
                            f"derive them from was found ({e})") from e
    missing = [e.name for e in entries if e.name not in index]
    if missing:
        raise DataError(
            f"{list_path}: {len(missing)} of {len(entries)} listed video(s) have no feature file "
            f"under {features_root}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")

    if annotation is not None and annotation.dataset == "sht":
        unmasked = [e.name for e in entries if e.label is None and e.name not in annotation.masks]
        normal_masks = [n for n, m in annotation.masks.items() if not m.any()]
        if unmasked and normal_masks:   # the folder has masks of normal videos too: a missing one is a gap
            raise DataError(
                f"{annotation.path}: no frame mask for {len(unmasked)} video(s) of {list_path}, which gives "
                f"no labels: {', '.join(unmasked[:5])}{' ...' if len(unmasked) > 5 else ''}; the folder holds "
                f"masks of normal videos too (e.g. {normal_masks[0]}.npy marks no frame), so a missing mask "
                f"cannot be taken to mean normal: add the missing masks or give labels in the list")

    videos = []
    for e in entries:
        label, source = e.label, "list"
        if label is None:
            label = int(annotation.is_abnormal(e.name))
            source = ("mask" if e.name in annotation.masks else "no mask") if annotation.dataset == "sht" else "name"
        videos.append(Video(name=e.name, label=int(label), cls=e.cls, paths=list(index[e.name]), label_from=source))

    if split == "test" and annotation is not None:
        wrong = [v.name for v in videos if bool(v.label) != annotation.is_abnormal(v.name)]
        if wrong:
            raise DataError(
                f"{list_path}: {len(wrong)} video label(s) disagree with the annotation "
                f"{annotation.path}: {', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}")
    return videos


def n_clips_to_frames(n_clips: int, clip_len: int = 16) -> int:
    """Frames covered by ``n_clips`` non-overlapping clips (RTFM: each clip covers 16 frames)."""
    return int(n_clips) * clip_len


def frames_to_n_clips(n_frames: int, clip_len: int = 16) -> int:
    """Clips of a video of ``n_frames`` frames with the last one padded: ``ceil(frames/16)``."""
    return math.ceil(int(n_frames) / clip_len)
