"""Crop policies applied identically to pixels and keypoints (spec section 2).

A crop is a square box ``(x0, y0, side)`` in source-image pixels; it maps to the model input of
``size x size`` pixels by one affine transform, used both for the image (``cv2.warpAffine``) and for
the keypoints, so the two can never disagree. Boxes may extend past the image: the outside is
black and keypoints keep their (possibly out-of-canvas) coordinates.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from .config import CLIP_MEAN, CLIP_STD

Box = Tuple[float, float, float]  # x0, y0, side (source pixels)


def center_box(width: int, height: int) -> Box:
    """CLIP's standard crop: resize the short side to the input size, keep the centre square."""
    side = float(min(width, height))
    return ((width - side) / 2.0, (height - side) / 2.0, side)


def person_box(
    keypoints: np.ndarray, width: int, height: int, scale: float = 1.25, min_confidence: float = 0.05
) -> Box | None:
    """Square box around the confident keypoints ``(J, 3)`` (or ``(T, J, 3)``), enlarged by ``scale``.

    Returns ``None`` when no keypoint is confident (the caller falls back to another box).
    """
    k = np.asarray(keypoints, dtype=np.float32).reshape(-1, 3)
    k = k[k[:, 2] >= min_confidence]
    if len(k) == 0:
        return None
    x_min, y_min = k[:, 0].min(), k[:, 1].min()
    x_max, y_max = k[:, 0].max(), k[:, 1].max()
    side = max(x_max - x_min, y_max - y_min) * scale
    side = float(np.clip(side, 0.1 * min(width, height), 2.0 * max(width, height)))
    cx, cy = (x_min + x_max) / 2.0, (y_min + y_max) / 2.0
    return (float(cx - side / 2.0), float(cy - side / 2.0), side)


def smooth_box(prev: Box | None, new: Box | None, smoothing: float) -> Box | None:
    """Causal exponential smoothing of boxes: ``smoothing`` is the weight of the previous box."""
    if prev is None:
        return new
    if new is None:
        return prev
    return tuple(smoothing * p + (1.0 - smoothing) * n for p, n in zip(prev, new))  # type: ignore[return-value]


class PersonCropTracker:
    """Stateful causal person crop for a stream of frames (one per RGB sample).

    The box of a frame is fixed when that frame is first seen, so cached encodings stay valid.
    """

    def __init__(self, width: int, height: int, scale: float = 1.25, smoothing: float = 0.6) -> None:
        self.width, self.height, self.scale, self.smoothing = width, height, scale, smoothing
        self.box: Box | None = None

    def update(self, keypoints: np.ndarray) -> Box:
        new = person_box(keypoints, self.width, self.height, self.scale)
        self.box = smooth_box(self.box, new, self.smoothing)
        return self.box if self.box is not None else center_box(self.width, self.height)


def crop_matrix(box: Box, size: int) -> np.ndarray:
    """The 2x3 affine matrix taking source pixels to model-input pixels for ``box``."""
    x0, y0, side = box
    s = size / side
    return np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)


def crop_image(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Crop and resize an ``(H, W, 3)`` uint8 image to ``(size, size, 3)``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    m = crop_matrix(box, size)
    interp = cv2.INTER_AREA if box[2] > size else cv2.INTER_LINEAR
    return cv2.warpAffine(
        image,
        m,
        (size, size),
        flags=interp,
        borderMode=cv2.BORDER_CONSTANT,  # type: ignore[call-overload]
        borderValue=0,
    )  # (OpenCV's stubs want a float dtype for M's and the image's union)


def crop_keypoints(keypoints: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Map keypoints ``(..., J, 3)`` into the crop's ``size``-pixel frame (confidence unchanged)."""
    k = np.array(keypoints, dtype=np.float32, copy=True)
    m = crop_matrix(box, size)
    k[..., 0] = k[..., 0] * m[0, 0] + m[0, 2]
    k[..., 1] = k[..., 1] * m[1, 1] + m[1, 2]
    return k


def normalize_image(image: np.ndarray, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """``(..., H, W, 3)`` uint8 RGB -> ``(..., 3, H, W)`` float32, CLIP-normalised."""
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))
