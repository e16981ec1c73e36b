"""Named keypoint layouts and extraction from the layouts iMiGUE is distributed in.

A layout is an ordered tuple of ``(source, index)`` pairs. Sources are the OpenPose parts:
``body`` (BODY_25, 25 points), ``face`` (70), ``lhand`` and ``rhand`` (21 each). Every array of
keypoints in this project is ``(..., J, 3)`` with ``(x, y, confidence)`` in pixels, and missing
points carry confidence 0.

The canonical full array is ``openpose137``: body 0-24, face 25-94, left hand 95-115, right hand
116-136 (the MiGA 2024/25 xlsx column order).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

BODY25_NAMES: Tuple[str, ...] = (
    "Nose",
    "Neck",
    "RShoulder",
    "RElbow",
    "RWrist",
    "LShoulder",
    "LElbow",
    "LWrist",
    "MidHip",
    "RHip",
    "RKnee",
    "RAnkle",
    "LHip",
    "LKnee",
    "LAnkle",
    "REye",
    "LEye",
    "REar",
    "LEar",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
)
HAND_FINGERTIPS: Tuple[int, ...] = (4, 8, 12, 16, 20)  # thumb, index, middle, ring, pinky tips

# Offsets of each source inside the 137-point array.
SOURCE_OFFSETS: Dict[str, int] = {"body": 0, "face": 25, "lhand": 95, "rhand": 116}
SOURCE_SIZES: Dict[str, int] = {"body": 25, "face": 70, "lhand": 21, "rhand": 21}
NUM_OPENPOSE = 137

Layout = Tuple[Tuple[str, int], ...]


def _src(source: str, indices: Sequence[int]) -> Layout:
    return tuple((source, int(i)) for i in indices)


LAYOUTS: Dict[str, Layout] = {
    # MiGA 2023 baseline's 22 joints: head/arms of BODY_25, then right then left fingertips.
    "upper22": _src("body", [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18])
    + _src("rhand", HAND_FINGERTIPS)
    + _src("lhand", HAND_FINGERTIPS),
    "body25": _src("body", range(25)),
    "body25_hands": _src("body", range(25)) + _src("lhand", range(21)) + _src("rhand", range(21)),
    "openpose137": _src("body", range(25))
    + _src("face", range(70))
    + _src("lhand", range(21))
    + _src("rhand", range(21)),
}


def list_layouts() -> Tuple[str, ...]:
    return tuple(LAYOUTS)


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def layout_indices(name: str) -> np.ndarray:
    """Indices of a layout's joints inside the 137-point OpenPose array, shape ``(J,)``."""
    return np.array([SOURCE_OFFSETS[s] + i for s, i in get_layout(name)], dtype=np.int64)


def joint_names(name: str) -> Tuple[str, ...]:
    out = []
    for s, i in get_layout(name):
        if s == "body":
            out.append(BODY25_NAMES[i])
        elif s == "face":
            out.append(f"Face{i}")
        else:
            out.append(f"{'L' if s == 'lhand' else 'R'}Hand{i}")
    return tuple(out)


def extract_layout(kp137: np.ndarray, name: str) -> np.ndarray:
    """Select a named layout from OpenPose 137-point arrays ``(..., 137, 3)`` -> ``(..., J, 3)``."""
    kp137 = np.asarray(kp137)
    if kp137.ndim < 2 or kp137.shape[-2:] != (NUM_OPENPOSE, 3):
        raise ValueError(f"expected OpenPose keypoints of shape (..., {NUM_OPENPOSE}, 3), got {tuple(kp137.shape)}")
    return kp137[..., layout_indices(name), :]


def assemble_openpose137(
    body: np.ndarray,
    face: np.ndarray | None = None,
    lhand: np.ndarray | None = None,
    rhand: np.ndarray | None = None,
) -> np.ndarray:
    """Stack OpenPose parts ``(..., 25, 3)``, ``(..., 70, 3)``, ``(..., 21, 3)`` x2 into ``(..., 137, 3)``.

    Missing parts (``None``) are filled with zeros (confidence 0 = not detected).
    """
    body = np.asarray(body, dtype=np.float32)
    lead = body.shape[:-2]
    parts = []
    for name, arr in (("body", body), ("face", face), ("lhand", lhand), ("rhand", rhand)):
        n = SOURCE_SIZES[name]
        if arr is None:
            arr = np.zeros(lead + (n, 3), np.float32)
        arr = np.asarray(arr, dtype=np.float32)
        if arr.shape != lead + (n, 3):
            raise ValueError(f"expected {name} keypoints of shape {lead + (n, 3)}, got {arr.shape}")
        parts.append(arr)
    return np.concatenate(parts, axis=-2)


def from_body25_hands(kp67: np.ndarray) -> np.ndarray:
    """``body25_hands`` arrays ``(..., 67, 3)`` (BODY_25, left hand, right hand) -> ``(..., 137, 3)``."""
    kp67 = np.asarray(kp67, dtype=np.float32)
    if kp67.ndim < 2 or kp67.shape[-2:] != (67, 3):
        raise ValueError(f"expected BODY_25 + hands keypoints of shape (..., 67, 3), got {kp67.shape}")
    return assemble_openpose137(kp67[..., :25, :], None, kp67[..., 25:46, :], kp67[..., 46:, :])


def from_light_hand(kp35: np.ndarray) -> np.ndarray:
    """MiGA 2023 ``_light_hand.csv`` joints ``(..., 35, 3)`` -> ``(..., 137, 3)``.

    The 35 joints are BODY_25, then the 5 right fingertips, then the 5 left fingertips; the other
    hand points are absent (confidence 0).
    """
    kp35 = np.asarray(kp35, dtype=np.float32)
    if kp35.ndim < 2 or kp35.shape[-2:] != (35, 3):
        raise ValueError(f"expected light_hand keypoints of shape (..., 35, 3), got {kp35.shape}")
    lead = kp35.shape[:-2]
    rhand = np.zeros(lead + (21, 3), np.float32)
    lhand = np.zeros(lead + (21, 3), np.float32)
    rhand[..., list(HAND_FINGERTIPS), :] = kp35[..., 25:30, :]
    lhand[..., list(HAND_FINGERTIPS), :] = kp35[..., 30:35, :]
    return assemble_openpose137(kp35[..., :25, :], None, lhand, rhand)


def validate_keypoints(
    kps: np.ndarray, num_joints: int | None = None, num_frames: int | None = None, what: str = "keypoints"
) -> np.ndarray:
    """Check a keypoint array ``(T, J, 3)`` (or ``(B, T, J, 3)``) and return it as float32.

    Raises ``ValueError`` naming what was expected for a wrong shape, NaN/inf values or negative
    confidences.
    """
    a = np.asarray(kps)
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected an array (T, J, 3) or (B, T, J, 3) of x, y, confidence; got shape {tuple(a.shape)}"
        )
    if num_frames is not None and a.shape[-3] != num_frames:
        raise ValueError(f"{what}: expected {num_frames} frames, got {a.shape[-3]}")
    if num_joints is not None and a.shape[-2] != num_joints:
        raise ValueError(f"{what}: expected {num_joints} joints, got {a.shape[-2]}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or infinite values; mark missing joints with confidence 0")
    if (a[..., 2] < 0).any():
        raise ValueError(f"{what}: negative confidence values; confidences must lie in [0, 1]")
    return a
