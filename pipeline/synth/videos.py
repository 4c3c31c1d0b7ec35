"""Raw synthetic videos with planted anomalies, for the demo and the tests.

Each video is calm footage of one *scene*: a smooth colour texture (a sum of a few low-frequency
sinusoids) drifting slowly, two or three soft blobs wandering across it and a little sensor
noise. Scenes differ in palette, texture and drift, so normal videos are not all alike.

Planted anomalies are visually and temporally distinct events, each one to a few seconds long:

==============  ===============  ============================================================
kind            UCF-style class  what happens
==============  ===============  ============================================================
``flash``       Explosion        strobing full-frame flashes (bright frame every 2-3 frames)
``shake``       Fighting         violent shaking: the frame jolts by up to 1/4 of its size and
                                 a cluster of small black/white fragments scatters every frame
``fast_object`` RoadAccidents    a bright saturated block racing across, bouncing off walls
==============  ===============  ============================================================

Normal videos (and abnormal ones, outside their anomalies) may hold mild *benign* events that a
detector must not flag: a dim object gliding slowly through, or a gentle change of lighting.

Ground truth is a list of ``(start, end)`` 0-based frame intervals with an inclusive end (the
convention of :mod:`pipeline.model.data`). :func:`write_ucf_dataset` lays out a UCF-Crime-style data
root that ``pipeline.extract`` / ``train`` / ``evaluate`` read unchanged: ``videos/<Class>/<Name>.mp4``,
the official split files ``Anomaly_Train.txt`` / ``Anomaly_Test.txt`` (``Class/Name_x264.mp4``
lines) and the official ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``
(``Name_x264.mp4  Class  s1  e1  s2  e2  ``, -1 for none).

Videos are written with PyAV: lossless H.264 (libx264, ``qp=0``, one thread), or MPEG-4 part 2
(lossy, one thread) where libx264 is missing. Everything is drawn from ``seed`` and the
encode is deterministic: the same call writes the same file, and it decodes to the same pixels.
(libx264's default rate control is not: ten ``crf=18`` encodes of one video gave several
different decodes, so a lossy encode would make every seeded run differ.)
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.common.io import atomic_write_json, atomic_write_text

ANOMALY_KINDS = {"flash": "Explosion", "shake": "Fighting", "fast_object": "RoadAccidents"}
BENIGN_KINDS = ("slow_object", "lighting")
ANNOTATION_FILE = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"


@dataclass
class Event:
    """One event of a video: ``kind`` over frames ``start..end`` (inclusive)."""
    kind: str
    start: int
    end: int

    @property
    def anomalous(self) -> bool:
        return self.kind in ANOMALY_KINDS


@dataclass
class VideoSpec:
    """Everything needed to render one video (all randomness is in ``seed``)."""
    name: str                       # e.g. 'Explosion003_x264'
    n_frames: int
    fps: int = 16
    size: int = 64                  # frames are size x size
    seed: int = 0
    events: list[Event] = field(default_factory=list)

    @property
    def anomalies(self) -> list[tuple[int, int]]:
        """Ground-truth intervals (0-based, inclusive end), in time order."""
        return sorted((e.start, e.end) for e in self.events if e.anomalous)

    @property
    def label(self) -> int:
        return int(bool(self.anomalies))


# ----------------------------------------------------------------------------- rendering

def _scene(rng: np.random.Generator, size: int):
    """A scene: drifting sinusoid texture + wandering blobs -> frame(t) (size, size, 3) float in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size          # (S, S) each
    n_waves = 4
    freq = rng.uniform(0.5, 3.0, (n_waves, 2)) * rng.choice([-1, 1], (n_waves, 2))
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    speed = rng.uniform(0.02, 0.08, n_waves) * rng.choice([-1, 1], n_waves)   # radians per frame
    amp = rng.uniform(0.5, 1.0, n_waves)
    palette = rng.uniform(0.15, 0.85, (2, 3)).astype(np.float32)        # two colours mixed by the texture
    n_blobs = int(rng.integers(2, 4))
    b_pos = rng.uniform(0.2, 0.8, (n_blobs, 2))
    b_vel = rng.uniform(-0.004, 0.004, (n_blobs, 2))                     # fraction of the frame per frame
    b_rad = rng.uniform(0.08, 0.18, n_blobs)
    b_col = rng.uniform(0.0, 1.0, (n_blobs, 3)).astype(np.float32)
    b_str = rng.uniform(0.2, 0.45, n_blobs)

    def frame(t: int) -> np.ndarray:
        tex = np.zeros((size, size), np.float32)
        for k in range(n_waves):
            tex += amp[k] * np.sin(2 * np.pi * (freq[k, 0] * xx + freq[k, 1] * yy) + phase[k] + speed[k] * t)
        tex = 0.5 + 0.5 * tex / amp.sum()                                 # (S, S) in [0, 1]
        img = palette[0] * (1 - tex[..., None]) + palette[1] * tex[..., None]   # (S, S, 3)
        for j in range(n_blobs):
            p = b_pos[j] + b_vel[j] * t
            p = 1 - np.abs(1 - np.mod(p, 2))                              # bounce inside [0, 1]
            g = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * b_rad[j] ** 2))
            img += b_str[j] * g[..., None] * (b_col[j] - img)
        return img

    return frame


def _bounce(p0: np.ndarray, v: np.ndarray, t: float, lo: float, hi: float) -> np.ndarray:
    """Position at time t of a point moving at v, reflected off [lo, hi]."""
    span = hi - lo
    q = np.mod(p0 - lo + v * t, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _event_renderer(ev: Event, rng: np.random.Generator, size: int):
    """fn(img, t) -> img applying ``ev`` at frame t (only called for t inside the event)."""
    if ev.kind == "flash":
        period = int(rng.integers(2, 4))
        colour = np.array([1.0, 1.0, rng.uniform(0.7, 1.0)], np.float32)

        def f(img, t):
            k = (t - ev.start) % period
            return img * 0.15 + 0.85 * colour if k == 0 else img * (0.55 + 0.3 * k / period)
        return f
    if ev.kind == "shake":
        n = ev.end - ev.start + 1
        amp = size // 4
        offs = rng.integers(-amp, amp + 1, (n, 2))                        # camera jolts
        n_frag = 14
        centre = rng.uniform(0.3, 0.7, 2) * size
        frag = max(2, size // 16)
        jit = rng.normal(0, size / 8, (n, n_frag, 2))                     # fragments scatter every frame
        shade = rng.choice([0.0, 1.0], n_frag).astype(np.float32)

        def f(img, t):
            k = t - ev.start
            img = np.roll(img, (int(offs[k, 0]), int(offs[k, 1])), axis=(0, 1)).copy()
            for j in range(n_frag):
                y, x = np.clip(centre + jit[k, j], 0, size - frag).astype(int)
                img[y:y + frag, x:x + frag] = shade[j]
            return img
        return f
    if ev.kind == "fast_object":
        side = max(6, size // 4)
        p0 = rng.uniform(0, size - side, 2)
        v = rng.uniform(4, 7, 2) * rng.choice([-1, 1], 2) * size / 64      # pixels per frame
        yy, xx = np.mgrid[0:side, 0:side]
        checker = (((yy // max(2, side // 4)) + (xx // max(2, side // 4))) % 2).astype(np.float32)
        colour = np.eye(3, dtype=np.float32)[rng.integers(3)] * 0.5 + 0.5
        block = checker[..., None] * colour                               # (side, side, 3) high contrast

        def f(img, t):
            y, x = _bounce(p0, v, t - ev.start, 0, size - side).astype(int)
            img = img.copy()
            img[y:y + side, x:x + side] = block
            return img
        return f
    if ev.kind == "slow_object":
        side = max(3, size // 8)
        p0 = rng.uniform(0, size - side, 2)
        v = rng.uniform(0.2, 0.5, 2) * rng.choice([-1, 1], 2) * size / 64
        shade = rng.uniform(0.25, 0.45)

        def f(img, t):
            y, x = _bounce(p0, v, t - ev.start, 0, size - side).astype(int)
            img = img.copy()
            img[y:y + side, x:x + side] = 0.6 * img[y:y + side, x:x + side] + 0.4 * shade
            return img
        return f
    if ev.kind == "lighting":
        depth = rng.uniform(-0.15, 0.15)
        n = ev.end - ev.start + 1

        def f(img, t):
            return img * (1 + depth * math.sin(math.pi * (t - ev.start) / max(n - 1, 1)))
        return f
    raise ValueError(f"unknown event kind {ev.kind!r}; expected one of {list(ANOMALY_KINDS) + list(BENIGN_KINDS)}")


def render_frames(spec: VideoSpec):
    """Yield the frames of ``spec`` as (size, size, 3) uint8 RGB arrays."""
    rng = np.random.default_rng(spec.seed)
    scene = _scene(rng, spec.size)
    renderers = [(ev, _event_renderer(ev, np.random.default_rng([spec.seed, i]), spec.size))
                 for i, ev in enumerate(spec.events)]
    noise_rng = np.random.default_rng([spec.seed, 10_000])
    for t in range(spec.n_frames):
        img = scene(t)
        for ev, fn in renderers:
            if ev.start <= t <= ev.end:
                img = fn(img, t)
        img = img + noise_rng.normal(0, 0.01, img.shape).astype(np.float32)
        yield (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def pick_codec() -> str:
    """'libx264' when PyAV has it, else 'mpeg4'."""
    import av
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure means the encoder is unavailable
        return "mpeg4"


def write_video(spec: VideoSpec, path: str | Path, codec: str | None = None) -> Path:
    """Render ``spec`` into an mp4 at ``path`` (written to a temp name, then renamed)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or pick_codec()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with av.open(str(tmp), mode="w") as out:
        stream = out.add_stream(codec, rate=spec.fps)
        stream.width = stream.height = spec.size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":     # lossless: the decode is the encoded YUV, whatever the encoder decides
            stream.options = {"qp": "0", "preset": "veryfast", "threads": "1"}
        else:                      # mpeg4 fallback (lossy): one thread -> the same bytes every run
            stream.bit_rate = 2_000_000
            stream.options = {"threads": "1"}
        for rgb in render_frames(spec):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- planning

def _place(rng: np.random.Generator, n_frames: int, lengths: list[int], taken: list[tuple[int, int]],
           margin: int) -> list[tuple[int, int]]:
    """Non-overlapping intervals of the given lengths, at least ``margin`` frames from each other
    and from the ends; an interval that does not fit is skipped."""
    out = []
    for L in lengths:
        for _ in range(100):
            s = int(rng.integers(margin, max(margin + 1, n_frames - L - margin)))
            e = s + L - 1
            if e >= n_frames - margin // 2:
                continue
            if all(e + margin < a or s > b + margin for a, b in taken + out):
                out.append((s, e))
                break
    return out


def plan_video(name: str, kind: str | None, rng: np.random.Generator, fps: int = 16, size: int = 64,
               seconds: tuple[float, float] = (10, 16), event_seconds: tuple[float, float] = (2.0, 4.0),
               benign_rate: float = 0.6) -> VideoSpec:
    """A video of ``seconds`` duration: calm scene, ``kind`` anomaly (None = normal video; one
    event, or two when the video is long enough), and Poisson(``benign_rate``) benign events."""
    n = int(rng.integers(int(seconds[0] * fps), int(seconds[1] * fps) + 1))
    events: list[Event] = []
    if kind is not None:
        if kind not in ANOMALY_KINDS:
            raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {list(ANOMALY_KINDS)}")
        n_ev = 2 if (n >= 12 * fps and rng.random() < 0.3) else 1
        margin = min(fps, n // 6)
        longest = max(fps // 2, (n - 2 * margin) // (2 * n_ev))         # short videos get shorter events
        lengths = [min(longest, int(rng.uniform(*event_seconds) * fps)) for _ in range(n_ev)]
        for s, e in _place(rng, n, lengths, [], margin=margin):
            events.append(Event(kind, s, e))
        if not events:
            raise ValueError(f"{name}: {n} frames is too short for a {lengths[0]}-frame anomaly")
    n_benign = int(rng.poisson(benign_rate))
    lengths = [int(rng.uniform(1.5, 4.0) * fps) for _ in range(n_benign)]
    for s, e in _place(rng, n, lengths, [(ev.start, ev.end) for ev in events], margin=fps // 2):
        events.append(Event(str(rng.choice(BENIGN_KINDS)), s, e))
    return VideoSpec(name=name, n_frames=n, fps=fps, size=size, seed=int(rng.integers(2**31)),
                     events=sorted(events, key=lambda ev: ev.start))


# ----------------------------------------------------------------------------- data roots

def annotation_line(spec: VideoSpec, cls: str) -> str:
    """One line of the official temporal annotation: ``Name_x264.mp4  Class  s1  e1  s2  e2  ``."""
    ivs = spec.anomalies
    if len(ivs) > 2:
        raise ValueError(f"{spec.name}: the official format holds at most two intervals, got {len(ivs)}")
    nums = [x for iv in ivs for x in iv] + [-1] * (4 - 2 * len(ivs))
    return "  ".join([f"{spec.name}.mp4", cls] + [str(x) for x in nums]) + "  "


def write_ucf_dataset(root: str | Path, n_train_normal: int, n_train_abnormal: int, n_test_normal: int,
                      n_test_abnormal: int, seed: int = 0, fps: int = 16, size: int = 64,
                      seconds: tuple[float, float] = (10, 16), progress: bool = True,
                      kinds: list[str] | None = None) -> dict:
    """Write a UCF-Crime-style data root of raw videos with planted anomalies (see module doc).

    Abnormal videos cycle through ``kinds`` (default: all anomaly kinds). Returns the plan (also saved as
    ``synthvideo.json``): per video its name, split, class, label, frames, fps, events and path.
    """
    from pipeline.common.cli import progress as progress_of

    root = Path(root)
    rng = np.random.default_rng(seed)
    kinds = list(kinds or ANOMALY_KINDS)
    plan = []
    counters = {c: 0 for c in ANOMALY_KINDS.values()}
    n_normal = 0
    for split, n_norm, n_abn in (("train", n_train_normal, n_train_abnormal),
                                 ("test", n_test_normal, n_test_abnormal)):
        for i in range(n_abn):
            kind = kinds[i % len(kinds)]
            cls = ANOMALY_KINDS[kind]
            counters[cls] += 1
            spec = plan_video(f"{cls}{counters[cls]:03d}_x264", kind, rng, fps, size, seconds)
            plan.append((split, cls, spec))
        for i in range(n_norm):
            n_normal += 1
            # official naming: Normal_Videos001_x264 (train) / Normal_Videos_001_x264 (test)
            name = f"Normal_Videos{n_normal:03d}_x264" if split == "train" else f"Normal_Videos_{n_normal:03d}_x264"
            plan.append((split, "Normal", plan_video(name, None, rng, fps, size, seconds)))

    folder = {("train", "Normal"): "Training_Normal_Videos_Anomaly",
              ("test", "Normal"): "Testing_Normal_Videos_Anomaly"}
    codec = pick_codec()
    rows = []
    for split, cls, spec in progress_of(plan, not progress, desc="writing videos", unit="video"):
        sub = folder.get((split, cls), cls)
        rel = f"{sub}/{spec.name}.mp4"
        write_video(spec, root / "videos" / rel, codec)
        rows.append(dict(split=split, cls=cls, rel=rel, path=str(root / "videos" / rel), **asdict(spec),
                         label=spec.label, anomalies=spec.anomalies))
    for split, fname in (("train", "Anomaly_Train.txt"), ("test", "Anomaly_Test.txt")):
        lines = [r["rel"] for r in rows if r["split"] == split]
        atomic_write_text(root / fname, "\n".join(lines) + "\n")
    ann = [annotation_line(spec, cls) for split, cls, spec in plan if split == "test"]
    atomic_write_text(root / ANNOTATION_FILE, "\n".join(ann) + "\n")
    atomic_write_json(root / "synthvideo.json", {"seed": seed, "fps": fps, "size": size, "codec": codec,
                                                 "videos": rows})
    return {"videos": rows, "codec": codec}


def load_plan(root: str | Path) -> dict:
    """The plan saved by :func:`write_ucf_dataset` (``synthvideo.json``)."""
    return json.loads((Path(root) / "synthvideo.json").read_text())
