"""The train/validation split by video: one function, used by the clip index (``clipmg.train.index``)
and by ``clipmg-record``'s summary (which says which recorded rounds training will hold out). NumPy
only, so the PyTorch-free recorder can call it."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def split_by_video(videos: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> Tuple[List[str], List[str]]:
    """Seeded hold-out of ``round(val_fraction * n)`` videos (at least one when ``val_fraction > 0``
    and there are two or more videos). Independent of the input order; returns sorted lists."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    vids = sorted(set(videos))
    n_val = min(len(vids) - 1, max(1, round(val_fraction * len(vids)))) if val_fraction > 0 and len(vids) > 1 else 0
    order = np.random.default_rng(seed).permutation(len(vids))
    val = {vids[i] for i in order[:n_val]}
    return [v for v in vids if v not in val], sorted(val)
