"""Temporal sampling: which frames of a clip become the 32 pose samples and the 8 RGB samples.

Spec section 1: a clip ``[start, end]`` (inclusive) is split into ``T_p`` equal segments with one pose
index per segment (segment centre at evaluation, uniformly random inside the segment in training).
Pose window ``t`` is samples ``group*t .. group*t + group - 1``; RGB frame ``t`` is the pose sample
at position ``group*t + offset`` so RGB and pose stay aligned by construction.
"""

from __future__ import annotations

import numpy as np


def segment_indices(
    start: int, end: int, num_segments: int = 32, mode: str = "center", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Frame indices ``(num_segments,)`` sampled from the inclusive range ``[start, end]``.

    Clips shorter than ``num_segments`` frames repeat frames (indices stay sorted).
    """
    if end < start:
        raise ValueError(f"clip end {end} is before its start {start}")
    if mode not in ("center", "random"):
        raise ValueError(f"unknown sampling mode {mode!r}; choose 'center' or 'random'")
    length = end - start + 1
    edges = np.linspace(0.0, length, num_segments + 1)
    if mode == "center":
        pos = (edges[:-1] + edges[1:]) / 2.0
    else:
        rng = rng if rng is not None else np.random.default_rng()
        pos = edges[:-1] + rng.random(num_segments) * (edges[1:] - edges[:-1])
    idx = np.clip(np.floor(pos).astype(np.int64), 0, length - 1)
    return start + idx


def rgb_positions(pose_frames: int = 32, rgb_frames: int = 8, offset: int = 2) -> np.ndarray:
    """Positions inside the pose samples that are also RGB samples, ``(rgb_frames,)``."""
    group = pose_frames // rgb_frames
    if not 0 <= offset < group:
        raise ValueError(f"rgb offset {offset} must lie in [0, {group})")
    return np.arange(rgb_frames) * group + offset


def clip_samples(
    start: int,
    end: int,
    pose_frames: int = 32,
    rgb_frames: int = 8,
    offset: int = 2,
    mode: str = "center",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose frame indices ``(pose_frames,)`` and the aligned RGB frame indices ``(rgb_frames,)``."""
    pose = segment_indices(start, end, pose_frames, mode, rng)
    return pose, pose[rgb_positions(pose_frames, rgb_frames, offset)]
