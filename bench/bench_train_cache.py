"""Time loading the resampled training set with and without the cache (pipeline.model.training.load_training_set).

    python -m pipeline.synth --preset ucf-scale --out /tmp/ucfscale
    python bench/bench_train_cache.py /tmp/ucfscale [--T 150]

Prints: the cold load (read + resample every video), the first cached load (same, plus writing the
cache) and a warm load (the cache file only). Drop the page cache between runs for cold-disk numbers.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pipeline.model import data as D
from pipeline.model import training as T


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_root", type=Path)
    p.add_argument("--T", type=int, default=150)
    p.add_argument("--dim", type=int, default=2048)
    a = p.parse_args()
    videos = D.load_split(a.data_root, "ucf", "train")
    cache = Path(tempfile.mkdtemp(prefix="train_cache_"))
    try:
        for label, cdir in (("no cache", None), ("cache miss (writes it)", cache), ("cache hit", cache)):
            t = time.perf_counter()
            fs = T.load_training_set(videos, a.T, a.dim, quiet=True, cache_dir=cdir)
            print(f"{label:24s} {time.perf_counter() - t:7.1f} s   {len(fs.names)} videos, "
                  f"{fs.feats.numel() * 2 / 2**30:.2f} GiB float16", flush=True)
    finally:
        shutil.rmtree(cache)


if __name__ == "__main__":
    main()
