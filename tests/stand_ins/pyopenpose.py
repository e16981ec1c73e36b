"""Stand-in for OpenPose's ``pyopenpose`` extension, for tests only.

OpenPose's C++/CUDA build cannot exist on the test machines, so this module follows the
documented Python API of OpenPose 1.7 (``python/openpose/openpose_python.cpp`` and
``examples/tutorial_api_python``) closely enough to test the backend against it:

- ``WrapperPython()``; ``configure(params)`` with params named like the command-line flags
  (an unknown flag is an error, as gflags makes it); ``start()``; ``stop()``;
  ``emplaceAndPop(VectorDatum([datum]))`` -> bool;
- ``Datum()`` with ``cvInputData`` (a BGR ``uint8`` image) and the outputs ``poseKeypoints``
  ``(people, 25, 3)``, ``handKeypoints`` ``[left, right]`` each ``(people, 21, 3)``,
  ``faceKeypoints`` ``(people, 70, 3)``;
- an empty ``op::Array`` reaches Python as ``None`` (the binding's type caster returns
  ``Py_BuildValue("")`` for an empty array): no people -> ``poseKeypoints is None``; hand or face
  detection disabled -> ``None`` for those.

What OpenPose would detect is scripted by the test: append to ``SCRIPT`` one dict per frame with
``pose`` ``(N, 25, 3)`` and optionally ``hands`` ``(left (N, 21, 3), right (N, 21, 3))`` and
``face`` ``(N, 70, 3)``; an empty ``SCRIPT`` means nobody in the frame. ``RECEIVED`` keeps the
images handed in.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

import numpy as np

__version__ = "1.7.0-stand-in"

SCRIPT: List[Dict[str, Any]] = []
RECEIVED: List[np.ndarray] = []
CONFIGURED: List[Dict[str, Any]] = []
STOPPED: List[bool] = []

KNOWN_FLAGS = {
    "model_folder",
    "model_pose",
    "net_resolution",
    "hand",
    "face",
    "number_people_max",
    "num_gpu",
    "num_gpu_start",
    "keypoint_scale",
    "render_pose",
    "display",
    "disable_blending",
    "hand_net_resolution",
    "face_net_resolution",
    "hand_detector",
    "face_detector",
    "scale_number",
    "scale_gap",
    "render_threshold",
    "alpha_pose",
    "logging_level",
    "maximize_positives",
    "tracking",
    "disable_multi_thread",
    "part_to_show",
}


class Datum:
    def __init__(self) -> None:
        self.cvInputData = None
        self.cvOutputData = None
        self.poseKeypoints = None
        self.handKeypoints = [None, None]
        self.faceKeypoints = None
        self.poseScores = None


class VectorDatum(list):
    """pybind11 ``bind_vector<std::vector<std::shared_ptr<Datum>>>``."""


class WrapperPython:
    def __init__(self, mode: Any = None) -> None:
        self._params: Dict[str, Any] | None = None
        self._started = False

    def configure(self, params: Dict[str, Any]) -> None:
        unknown = set(params) - KNOWN_FLAGS
        if unknown:
            raise RuntimeError(f"ERROR: unknown command line flag '{sorted(unknown)[0]}'")
        folder = str(params.get("model_folder", "models/"))
        if not os.path.isdir(folder):
            raise RuntimeError(f"Error: model folder {folder} does not exist")
        self._params = dict(params)
        CONFIGURED.append(dict(params))

    def start(self) -> None:
        if self._params is None:
            raise RuntimeError("configure() must be called before start()")
        self._started = True

    def stop(self) -> None:
        self._started = False
        STOPPED.append(True)

    def emplaceAndPop(self, datums: Any) -> bool:
        if not self._started:
            raise RuntimeError("the wrapper is not running (call start())")
        for datum in datums:
            img = datum.cvInputData
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise RuntimeError("cvInputData must be a BGR uint8 image (H, W, 3)")
            RECEIVED.append(img.copy())
            self._fill(datum)
        return True

    def _fill(self, datum: Datum) -> None:
        step = SCRIPT.pop(0) if SCRIPT else {}
        pose = step.get("pose")
        hand_on = _flag(self._params.get("hand", False))
        face_on = _flag(self._params.get("face", False))
        if pose is None or len(pose) == 0:
            datum.poseKeypoints, datum.handKeypoints, datum.faceKeypoints = None, [None, None], None
            return
        n = len(pose)
        datum.poseKeypoints = np.asarray(pose, np.float32)
        if hand_on:
            hands = step.get("hands") or (np.zeros((n, 21, 3)), np.zeros((n, 21, 3)))
            datum.handKeypoints = [np.asarray(hands[0], np.float32), np.asarray(hands[1], np.float32)]
        else:
            datum.handKeypoints = [None, None]
        if face_on:
            face = step.get("face")
            datum.faceKeypoints = np.asarray(face if face is not None else np.zeros((n, 70, 3)), np.float32)
        else:
            datum.faceKeypoints = None


def _flag(value: Any) -> bool:
    return str(value).lower() in ("true", "1")
