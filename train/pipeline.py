"""The per-sample pipeline pieces, pure NumPy (no PyTorch): background mining, augmentations that
move pixels and keypoints together, and the frames a clip's sampling can reach.

``mine_background`` places "no gesture" windows in the unlabelled spans of a video (used by
``clipmg.train.index.build_index``); ``augment_window`` and ``colour_jitter_images`` are one random
draw of an ``AugmentConfig`` applied to a whole window (used by
``clipmg.train.dataset.MicroGestureDataset``); ``rgb_candidates`` is what its frame cache keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from clipmg.model.config import ModelConfig
from clipmg.model.layouts import layout_indices
from clipmg.model.sampling import clip_samples, rgb_positions


# ------------------------------------------------------------------------------ background mining
def mine_background(
    num_frames: int,
    intervals: Sequence[Tuple[int, int]],
    lengths: Sequence[int],
    rng: np.random.Generator,
    margin: int = 2,
) -> List[Tuple[int, int]]:
    """Windows ``(start, end)`` inside ``[0, num_frames)`` that overlap no labelled interval (each
    widened by ``margin``), placed left to right without overlap with random offsets; each window's
    length is drawn from those of ``lengths`` (the labelled clips') that still fit in its span."""
    pool = np.sort(np.asarray(lengths, np.int64))
    if num_frames <= 0 or not len(pool):
        return []
    busy = np.zeros(num_frames + 1, bool)
    busy[num_frames] = True  # sentinel that closes the last span
    for s, e in intervals:
        busy[max(0, s - margin) : min(num_frames, e + margin + 1)] = True
    out: List[Tuple[int, int]] = []
    t = 0
    while t < num_frames:
        if busy[t]:
            t += 1
            continue
        end = t + int(np.argmax(busy[t:]))  # first busy frame after the span
        pos = t
        while True:
            fit = int(np.searchsorted(pool, end - pos, side="right"))  # lengths that fit what is left
            if fit == 0:
                break
            n = int(pool[int(rng.integers(fit))])
            pos += int(rng.integers(0, min(n, end - pos - n) + 1))
            out.append((pos, pos + n - 1))
            pos += n
        t = end
    return out


# ------------------------------------------------------------------------------------ augmenting
_BODY_MIRROR = {2: 5, 3: 6, 4: 7, 9: 12, 10: 13, 11: 14, 15: 16, 17: 18, 19: 22, 20: 23, 21: 24}
_FACE_MIRROR = (
    {i: 16 - i for i in range(17)}
    | {17 + i: 26 - i for i in range(5)}
    | {31: 35, 32: 34}
    | {36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46}
    | {48: 54, 49: 53, 50: 52, 55: 59, 56: 58}
    | {60: 64, 61: 63, 65: 67}
    | {68: 69}
)


def mirror_137() -> np.ndarray:
    """Index of each OpenPose-137 joint's left/right partner ``(137,)`` (itself on the midline)."""
    m = np.arange(137)
    for a, b in _BODY_MIRROR.items():
        m[a], m[b] = b, a
    for a, b in _FACE_MIRROR.items():
        m[25 + a], m[25 + b] = 25 + b, 25 + a
    m[95:116], m[116:137] = np.arange(116, 137), np.arange(95, 116)
    return m


def flip_permutation(layout: str) -> np.ndarray:
    """``perm`` ``(J,)`` such that ``kp[perm]`` swaps the left/right joints of a layout."""
    idx = layout_indices(layout)
    pos = {int(j): k for k, j in enumerate(idx)}
    mirror = mirror_137()
    try:
        return np.array([pos[int(mirror[j])] for j in idx], np.int64)
    except KeyError:
        raise ValueError(f"layout {layout!r} is not left/right symmetric; flipping is not possible") from None


def hflip(frames: np.ndarray, keypoints: np.ndarray, perm: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror frames ``(T_r, H, W, 3)`` and keypoints ``(T_p, J, 3)`` (x -> W-1-x, left <-> right joints)."""
    w = frames.shape[2]
    kp = keypoints[:, perm].copy()
    seen = kp[..., 2] > 0
    kp[..., 0] = np.where(seen, (w - 1) - kp[..., 0], 0.0)
    return np.ascontiguousarray(frames[:, :, ::-1]), kp


def affine_jitter(
    frames: np.ndarray, keypoints: np.ndarray, scale: float, dx: float, dy: float, angle: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """Roll frames ``(T_r, H, W, 3)`` by ``angle`` degrees (counter-clockwise on screen, as
    ``cv2.getRotationMatrix2D``) and zoom them by ``scale``, both about the frame centre, then shift by
    ``(dx, dy)`` pixels; keypoints ``(T_p, J, 3)`` move with the pixels. Without the roll this is the
    same as jittering the crop box; with it, a camera turned about its optical axis."""
    h, w = frames.shape[1:3]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.asarray(cv2.getRotationMatrix2D((cx, cy), angle, scale), np.float64)
    m[:, 2] += (dx, dy)
    out = np.stack(
        [cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) for f in frames]
    )
    kp = keypoints.copy()
    seen = kp[..., 2:] > 0
    kp[..., :2] = np.where(seen, keypoints[..., :2] @ m[:, :2].T + m[:, 2], 0.0)
    return out, kp


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations; each keeps RGB and keypoints consistent."""

    flip: float = 0.5  # probability of a horizontal flip (left/right joints swapped)
    scale: Tuple[float, float] = (0.9, 1.1)  # zoom range about the frame centre
    shift: float = 0.05  # largest shift, as a fraction of the frame's short side
    # colour jitter strength: brightness, contrast and saturation each scaled by a factor drawn from
    # [1 - c, 1 + c] (one draw per window; hue is left alone, colour can be what tells a class)
    colour: float = 0.0
    # largest camera roll in degrees: each window turned by an angle drawn from [-roll, roll] about the
    # frame centre, pixels and keypoints together (0: no roll, and no random draw for it)
    roll: float = 0.0


def augment_window(
    frames: np.ndarray, keypoints: np.ndarray, perm: np.ndarray, aug: AugmentConfig, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """One random draw of ``aug`` applied to a whole window (same transform for every frame)."""
    if rng.random() < aug.flip:
        frames, keypoints = hflip(frames, keypoints, perm)
    s = float(rng.uniform(*aug.scale))
    short = min(frames.shape[1:3])
    dx, dy = rng.uniform(-aug.shift, aug.shift, 2) * short
    angle = float(rng.uniform(-aug.roll, aug.roll)) if aug.roll > 0 else 0.0
    if s != 1.0 or dx or dy or angle:
        frames, keypoints = affine_jitter(frames, keypoints, s, float(dx), float(dy), angle)
    return frames, keypoints


def colour_jitter(rgb: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Float ``(..., 3)`` RGB in [0, 255] with brightness, contrast (about the mean grey) and
    saturation (about each pixel's grey) scaled, clipped to [0, 255]."""
    f = np.asarray(rgb, np.float32) * brightness
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    mean = grey.mean()
    f = (f - mean) * contrast + mean
    grey = (grey - mean) * contrast + mean
    return np.clip(grey[..., None] + (f - grey[..., None]) * saturation, 0, 255)


def colour_jitter_images(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], aug: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """``colour_jitter`` on model-ready images ``(T, 3, S, S)`` (normalised by ``mean``/``std``): one
    draw of the three factors for the whole window, applied after the crop and resize (cheap)."""
    m = np.asarray(mean, np.float32)[:, None, None]
    sd = np.asarray(std, np.float32)[:, None, None]
    rgb = ((images * sd + m) * 255.0).transpose(0, 2, 3, 1)  # (T, S, S, 3) in [0, 255]
    rgb = colour_jitter(rgb, *rng.uniform(1 - aug.colour, 1 + aug.colour, 3))
    return ((rgb.transpose(0, 3, 1, 2) / 255.0 - m) / sd).astype(np.float32)


# ------------------------------------------------------------------------------------- sampling
def rgb_candidates(start: int, end: int, cfg: ModelConfig, train: bool) -> np.ndarray:
    """Every frame that ``clip_samples`` can pick as an RGB frame of clip ``[start, end]``: the
    centre samples at eval, the whole segments at the RGB positions in training (what to cache)."""
    c = cfg.clip
    if not train:
        return np.unique(clip_samples(start, end, c.pose_frames, c.rgb_frames, c.rgb_offset, "center")[1])
    length = end - start + 1
    edges = np.linspace(0.0, length, c.pose_frames + 1)  # the segments of sampling.segment_indices
    out = [
        np.arange(max(0, int(np.floor(edges[k]))), min(length - 1, int(np.ceil(edges[k + 1])) - 1) + 1)
        for k in rgb_positions(c.pose_frames, c.rgb_frames, c.rgb_offset)
    ]
    return start + np.unique(np.concatenate(out))
