"""FLOP counts of the two halves, and the machine's matmul ceiling to compare achieved rates with."""

from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np


def count_flops(model: Any) -> Dict[str, float]:
    """FLOPs (multiply and add counted separately) of the frame encoder per frame and of the
    window head per window, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Attention runs through SDPA's math kernel while counting so its matmuls are seen (the fused
    CPU kernel is not in the counter's table); element-wise ops (GELU, LayerNorm, softmax) are not
    counted, as usual.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from .export import example_inputs, mha_fastpath_disabled

    cfg = model.cfg
    images, kp = example_inputs(cfg, 1)
    with torch.no_grad(), mha_fastpath_disabled(), sdpa_kernel(SDPBackend.MATH):
        counter = FlopCounterMode(display=False)
        with counter:
            x, c = model.eval().encode_frames(torch.from_numpy(images[0, :1]))
        per_frame = counter.get_total_flops()
        t = cfg.clip.rgb_frames
        tokens, emb = x.expand(t, -1, -1).unsqueeze(0), c.expand(t, -1).unsqueeze(0)
        counter = FlopCounterMode(display=False)
        with counter:
            model.head(tokens, emb, torch.from_numpy(kp))
        per_window = counter.get_total_flops()
    return {"frame_encoder_per_frame": float(per_frame), "window_head_per_window": float(per_window)}


def matmul_ceiling(n: int = 2048, repeats: int = 5) -> Dict[str, float]:
    """Best and median GFLOP/s of an ``n x n`` float32 matmul in PyTorch (2 n^3 FLOPs) with the
    current thread setting: the practical compute ceiling of this CPU."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"best_gflops": flops / min(times) / 1e9, "median_gflops": flops / float(np.median(times)) / 1e9}
