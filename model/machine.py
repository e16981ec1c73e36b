"""The machine a published figure was measured on, in one line (no PyTorch).

The benchmarks (``clipmg.bench``) and the real-data report (``train/real_data.py``) print it beside
their figures, since the vector extensions (AVX-512, VNNI) change the engines' times.
"""

from __future__ import annotations

import os


def cpu_line() -> str:
    """The CPU model and the vector extensions that move these figures (AVX-512, VNNI, AVX2)."""
    model, flags = "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    ext = [f for f in ("avx512f", "avx512_vnni", "avx_vnni", "avx2", "fma") if f in flags]
    return f"{model} ({os.cpu_count()} CPUs; {' '.join(ext) or 'no AVX2'})"
