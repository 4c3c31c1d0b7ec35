"""Training and evaluation cost at UCF-Crime scale, on generated features.

    python bench/bench_train.py train --model full      # seconds/epoch + peak RSS, the paper's model
    python bench/bench_train.py train --model fc        # the floor: FC 2048->512->1, k-max loss only
    python bench/bench_train.py eval                     # scoring 290 full-length test videos
    python bench/bench_train.py all                      # each of the above in its own process

Training: 1610 videos (800 normal, 810 abnormal) already resampled to T=150 segments of 2048-d
float16 features, one crop (the in-memory store of pipeline.train), batch 64 (32 + 32), one
epoch = 26 batches, the default configuration (TrainConfig: FC clustering with the normal subspace
removed, cross-batch way 1, gated BCG).
Evaluation: 290 videos whose clip counts are UCF-Crime's real test lengths (frames/16 from
../shared/data/ucf_crime/Test_Annotation.txt when present, else a fixed-seed lognormal),
1 crop, scored at full length as pipeline.evaluate does (feature loading excluded).
Peak memory is the process's maximum resident set size (ru_maxrss).
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.model.clustering import CrossBatchMemory  # noqa: E402
from pipeline.scoring.checkpoint import score_clips  # noqa: E402
from pipeline.model.network import FCBaseline  # noqa: E402
from pipeline.model.training import (BalancedBatches, FeatureSet, TrainConfig, batch_features,
                                     model_from_config, training_step)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucf_crime"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_train(kind: str, epochs: int, n_normal: int = 800, n_abnormal: int = 810, T: int = 150) -> dict:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    kgen = torch.Generator().manual_seed(1)
    n = n_normal + n_abnormal
    feats = torch.empty(n, T, 1, 2048, dtype=torch.float16)                      # (N, T, 1, 2048)
    for i in range(n):                                                            # no float32 copy of it all
        feats[i] = torch.rand(T, 1, 2048, generator=gen)
    labels = torch.tensor([0] * n_normal + [1] * n_abnormal)
    fs = FeatureSet([f"v{i}" for i in range(n)], labels, feats)
    cfg = TrainConfig(T=T).resolved()
    if kind == "fc":
        model = FCBaseline(2048)
        cfg.bc = cfg.bcg = False
    else:
        model = model_from_config(cfg, 2048)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    memories = {k: CrossBatchMemory(cfg.cross_batch) for k in ("normal", "abnormal")}
    batches = BalancedBatches(labels, list(range(n)), cfg.batch_size, gen)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for normal, abnormal in batches:
            x, y = batch_features(fs, normal, abnormal, gen, torch.device("cpu"))
            loss, _ = training_step(model, x, y, len(normal), memories, cfg, kgen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for m in memories.values():
            m.end_epoch()
        times.append(time.perf_counter() - t0)
    return {"bench": f"train-{kind}", "videos": n, "T": T, "batches_per_epoch": len(batches),
            "seconds_per_epoch": round(float(np.median(times)), 2), "epochs_timed": epochs,
            "peak_rss_mib": round(peak_mib(), 1), "feature_store_mib": round(feats.numel() * 2 / 2**20, 1),
            "threads": torch.get_num_threads()}


def test_lengths() -> np.ndarray:
    path = SHARED / "Test_Annotation.txt"
    if path.exists():
        frames = [int(l.split()[1]) for l in path.read_text().splitlines() if l.strip()]
        return np.array([math.ceil(f / 16) for f in frames])
    return np.clip(np.random.default_rng(0).lognormal(5.5, 1.0, 290).astype(int), 10, 5000)


def bench_eval() -> dict:
    torch.manual_seed(0)
    model = model_from_config(TrainConfig().resolved(), 2048).eval()
    lengths = test_lengths()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for c in lengths:
        score_clips(model, rng.random((int(c), 1, 2048), dtype=np.float32))
    return {"bench": "eval-290", "videos": len(lengths), "clips": int(lengths.sum()),
            "longest_video_clips": int(lengths.max()), "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mib": round(peak_mib(), 1), "lengths_from": "Test_Annotation.txt" if (SHARED / "Test_Annotation.txt").exists() else "lognormal"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("train", "eval", "all"))
    p.add_argument("--model", choices=("full", "fc"), default="full")
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    if a.what == "all":
        for args in (["train", "--model", "full"], ["train", "--model", "fc"], ["eval"]):
            subprocess.run([sys.executable, __file__, *args, "--epochs", str(a.epochs)], check=True)
        return 0
    result = bench_train(a.model, a.epochs) if a.what == "train" else bench_eval()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
