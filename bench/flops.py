"""The machine's matmul ceiling, to compare the achieved rates of ``clipmg-bench`` (``bench/engines.py``)
with (the FLOP counts themselves are ``clipmg.model.profile.split_flops``)."""

from __future__ import annotations

import time
from typing import Dict

import numpy as np
import torch


def matmul_ceiling(n: int = 2048, repeats: int = 5) -> Dict[str, float]:
    """Best and median GFLOP/s of an ``n x n`` float32 matmul in PyTorch (2 n^3 FLOPs) with the
    current thread setting: the practical compute ceiling of this CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    return {"best_gflops": flops / min(times) / 1e9, "median_gflops": flops / float(np.median(times)) / 1e9}
