"""OpenPose through its official Python API (``pyopenpose``, built with ``BUILD_PYTHON=ON``).

The documented use (OpenPose 1.7 ``examples/tutorial_api_python``)::

    opWrapper = op.WrapperPython(); opWrapper.configure(params); opWrapper.start()
    datum = op.Datum(); datum.cvInputData = bgr_image
    opWrapper.emplaceAndPop(op.VectorDatum([datum]))
    datum.poseKeypoints   # (people, 25, 3) float32, or None when nobody was found
    datum.handKeypoints   # [left, right], each (people, 21, 3) or None (hand disabled / nobody)
    datum.faceKeypoints   # (people, 70, 3) or None

``params`` mirror the command-line flags (``model_folder``, ``net_resolution``, ``hand``, ``face``,
``number_people_max``, ...). An empty ``op::Array`` reaches Python as ``None``, never as an empty
array: every output is checked for that. Keypoints are in input-image pixels (OpenPose's default
``keypoint_scale`` 0), confidence 0 = missing.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Optional

import numpy as np

from clipmg.model.layouts import NUM_OPENPOSE, SOURCE_SIZES, assemble_openpose137

from .pose_base import PeopleBackend, PoseBackendError, TargetTracker, empty_people
from .ringbuffer import Frame

__all__ = ["OpenPoseBackend", "import_pyopenpose", "openpose_people"]


def import_pyopenpose(python_path: Optional[str] = None) -> Any:
    """Import ``pyopenpose``: ``from openpose import pyopenpose`` (``make install`` layout) or a
    bare ``import pyopenpose`` (``build/python/openpose`` on ``sys.path``). ``python_path`` (or
    ``$OPENPOSE_PYTHON``) is put on ``sys.path`` first."""
    path = python_path or os.environ.get("OPENPOSE_PYTHON")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    errors = []
    for mod in ("openpose.pyopenpose", "pyopenpose"):
        try:
            return importlib.import_module(mod)
        except ImportError as e:
            errors.append(f"{mod}: {e}")
    raise PoseBackendError(
        "the openpose pose backend needs OpenPose's Python API (pyopenpose), built with "
        "-DBUILD_PYTHON=ON; point python_path= (or $OPENPOSE_PYTHON) at its build/python folder, "
        "or use the 'mediapipe' backend on a CPU (" + "; ".join(errors) + ")"
    )


def _part(arr: Any, n_people: int, n_points: int, what: str) -> Optional[np.ndarray]:
    """One OpenPose output as ``(people, n_points, 3)`` float32, or ``None`` if absent."""
    if arr is None:
        return None
    a = np.asarray(arr, dtype=np.float32)
    if a.size == 0:
        return None
    if a.shape != (n_people, n_points, 3):
        raise ValueError(f"OpenPose {what} has shape {a.shape}, expected ({n_people}, {n_points}, 3)")
    return a


def openpose_people(pose: Any, hands: Any, face: Any) -> np.ndarray:
    """OpenPose datum outputs -> ``(N, 137, 3)`` float32 (see the module docstring for inputs)."""
    if pose is None:
        return empty_people()
    pose = np.asarray(pose, dtype=np.float32)
    if pose.size == 0:
        return empty_people()
    if pose.ndim != 3 or pose.shape[1:] != (SOURCE_SIZES["body"], 3):
        raise ValueError(f"OpenPose poseKeypoints has shape {pose.shape}, expected (people, 25, 3)")
    n = pose.shape[0]
    left = right = None
    if hands is not None:
        hands = list(hands)
        if len(hands) != 2:
            raise ValueError(f"OpenPose handKeypoints must be [left, right], got {len(hands)} items")
        left = _part(hands[0], n, SOURCE_SIZES["lhand"], "left handKeypoints")
        right = _part(hands[1], n, SOURCE_SIZES["rhand"], "right handKeypoints")
    face = _part(face, n, SOURCE_SIZES["face"], "faceKeypoints")
    out = assemble_openpose137(pose, face, left, right)
    assert out.shape == (n, NUM_OPENPOSE, 3)
    return out


class OpenPoseBackend(PeopleBackend):
    """OpenPose BODY_25 (+ hands, + face when asked) on the GPU through ``pyopenpose``.

    ``model_folder`` (or ``$OPENPOSE_MODELS``): OpenPose's ``models/`` folder. ``hand`` (True) and
    ``face`` (False: turn it on when the model's keypoint layout uses face points). Any other
    OpenPose flag may be passed as a keyword (``net_resolution="-1x368"``, ``number_people_max``,
    ``num_gpu_start``, ...). ``python_path``: where ``pyopenpose`` lives.
    """

    name = "openpose"

    def __init__(
        self,
        model_folder: Optional[str] = None,
        *,
        hand: bool = True,
        face: bool = False,
        net_resolution: str = "-1x368",
        python_path: Optional[str] = None,
        tracker: Optional[TargetTracker] = None,
        **flags: Any,
    ) -> None:
        super().__init__(tracker)
        model_folder = model_folder or os.environ.get("OPENPOSE_MODELS")
        if not model_folder:
            raise PoseBackendError(
                "the openpose backend needs model_folder= (OpenPose's 'models/' folder) or $OPENPOSE_MODELS"
            )
        if not os.path.isdir(model_folder):
            raise PoseBackendError(f"OpenPose model_folder {model_folder!r} is not a folder")
        self.op = import_pyopenpose(python_path)
        self.params = {
            "model_folder": os.path.join(model_folder, ""),
            "model_pose": "BODY_25",
            "net_resolution": net_resolution,
            "hand": bool(hand),
            "face": bool(face),
            **flags,
        }
        self._wrapper = self.op.WrapperPython()
        self._wrapper.configure(self.params)
        self._wrapper.start()
        self._vector = getattr(self.op, "VectorDatum", None)  # OpenPose >= 1.7; older: a list

    def detect(self, frame: Frame) -> np.ndarray:
        datum = self.op.Datum()
        datum.cvInputData = np.ascontiguousarray(frame.image[:, :, ::-1])  # RGB -> BGR
        batch = self._vector([datum]) if self._vector is not None else [datum]
        ok = self._wrapper.emplaceAndPop(batch)
        if ok is False:
            raise RuntimeError("OpenPose emplaceAndPop returned False (wrapper stopped?)")
        return openpose_people(datum.poseKeypoints, datum.handKeypoints, datum.faceKeypoints)

    def close(self) -> None:
        if self._wrapper is not None:
            stop = getattr(self._wrapper, "stop", None)
            if stop is not None:
                stop()
            self._wrapper = None
