"""What a speed figure needs beside it on a shared machine: the machine's own dense peak, measured
in the same run, and the load.

    python bench/machine.py [--threads 2]         # prints one JSON line: peak fp32 / bf16 GFLOP/s, load

A time measured on a machine other jobs share is not stable; achieved GFLOP/s over the dense
matmul peak measured a moment before is much more so (both slow down together). ``peak_gflops``
times two dense kernels a few times each and keeps the best rate: a square matmul (2048^3, 17.2 GFLOP;
MKL for fp32, oneDNN for bf16) and a 1x1 convolution (1024 -> 1024 channels on 64 x 64, channels_last,
8.6 GFLOP; oneDNN's JIT kernels, faster than MKL's sgemm on AMD CPUs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any, Dict


def _best_rate(fn, flop: float, reps: int) -> float:
    fn()                                                # warm up (kernels chosen, memory touched)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flop / best / 1e9


def peak_gflops(dtype: str = "fp32", reps: int = 4) -> float:
    """Dense peak in ``dtype`` (fp32 or bf16) on torch's current threads, GFLOP/s: the best of a
    2048^3 matmul and a 1024 -> 1024 1x1 convolution on 64 x 64 (channels_last)."""
    import torch
    import torch.nn.functional as F

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    n = 2048
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    x = torch.randn(1, 1024, 64, 64).to(dt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1).to(dt).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        mm = _best_rate(lambda: torch.mm(a, b), 2.0 * n ** 3, reps)
        conv = _best_rate(lambda: F.conv2d(x, w), 2.0 * 1024 * 1024 * 64 * 64, reps)
    return max(mm, conv)


def has_bf16() -> bool:
    """True when the CPU has native bf16 dot products (avx512_bf16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def machine(bf16: bool = True) -> Dict[str, Any]:
    """The context of a figure: CPU, cores, torch threads, load average, peak GFLOP/s (fp32, bf16)."""
    import torch

    m: Dict[str, Any] = dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                             threads=torch.get_num_threads(),
                             load_avg=[round(x, 2) for x in os.getloadavg()],
                             peak_fp32_gflops=round(peak_gflops("fp32"), 1))
    if bf16 and has_bf16():
        m["peak_bf16_gflops"] = round(peak_gflops("bf16"), 1)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    print(json.dumps(machine()))


if __name__ == "__main__":
    main()
