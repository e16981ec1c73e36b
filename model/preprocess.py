"""Turning decoded frames and raw keypoints into model inputs; one code path for training and live.

A window is ``T_r`` RGB frames and ``T_p`` pose samples (already in the model's keypoint layout,
source-image pixels). Each RGB frame ``t`` gets one crop box; the same box maps the pose samples of
window ``t`` (``G*t .. G*t+G-1``), so pixels and keypoints stay consistent (spec section 2).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .config import ModelConfig
from .crop import Box, PersonCropTracker, center_box, crop_image, crop_keypoints, normalize_image
from .layouts import validate_keypoints


def window_boxes(
    rgb_keypoints: np.ndarray, width: int, height: int, cfg: ModelConfig, tracker: PersonCropTracker | None = None
) -> List[Box]:
    """One crop box per RGB frame from the keypoints of that frame ``(T_r, J, 3)``.

    With the ``person`` policy a ``PersonCropTracker`` smooths boxes causally; pass the same
    tracker across consecutive frames in a stream (a fresh one is made otherwise).
    """
    pre = cfg.preprocess
    if pre.crop == "center":
        return [center_box(width, height)] * len(rgb_keypoints)
    tracker = tracker or PersonCropTracker(width, height, pre.person_scale, pre.person_smoothing)
    return [tracker.update(k) for k in rgb_keypoints]


def prepare_frame(frame: np.ndarray, box: Box, cfg: ModelConfig) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 RGB frame -> ``(3, S, S)`` float32 model input."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got shape {frame.shape} dtype {frame.dtype}")
    s = cfg.vision.image_size
    return normalize_image(crop_image(frame, box, s), cfg.preprocess.mean, cfg.preprocess.std)


def prepare_keypoints(keypoints: np.ndarray, boxes: Sequence[Box], cfg: ModelConfig) -> np.ndarray:
    """Pose samples ``(T_p, J, 3)`` in source pixels -> model-input pixels, each group with its box."""
    c = cfg.clip
    k = validate_keypoints(keypoints, cfg.pose.num_joints, c.pose_frames, "pose samples")
    if len(boxes) != c.rgb_frames:
        raise ValueError(f"expected {c.rgb_frames} crop boxes, got {len(boxes)}")
    out = np.empty_like(k)
    g = c.group
    for t, box in enumerate(boxes):
        out[g * t : g * (t + 1)] = crop_keypoints(k[g * t : g * (t + 1)], box, cfg.vision.image_size)
    return out


def prepare_window(
    frames: np.ndarray, keypoints: np.ndarray, cfg: ModelConfig, tracker: PersonCropTracker | None = None
) -> Tuple[np.ndarray, np.ndarray, List[Box]]:
    """RGB frames ``(T_r, H, W, 3)`` uint8 and pose samples ``(T_p, J, 3)`` (source pixels) ->
    images ``(T_r, 3, S, S)``, keypoints ``(T_p, J, 3)`` in model-input pixels, and the boxes used."""
    c = cfg.clip
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] != c.rgb_frames or frames.shape[3] != 3:
        raise ValueError(f"expected {c.rgb_frames} RGB frames of shape (H, W, 3), got array {frames.shape}")
    k = validate_keypoints(keypoints, cfg.pose.num_joints, c.pose_frames, "pose samples")
    h, w = frames.shape[1:3]
    rgb_kp = k[np.arange(c.rgb_frames) * c.group + c.rgb_offset]
    boxes = window_boxes(rgb_kp, w, h, cfg, tracker)
    images = np.stack([prepare_frame(f, b, cfg) for f, b in zip(frames, boxes)])
    return images, prepare_keypoints(k, boxes, cfg), boxes
