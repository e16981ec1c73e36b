"""MediaPipe Holistic (legacy ``mp.solutions`` API, models inside the mediapipe 0.10.21 wheel,
offline) mapped to the OpenPose 137-point layout: BODY_25 + both hands; the face stays empty.

Mapping (docs/data.md): BODY_25 ``j`` <- MediaPipe Pose landmark ``MP_TO_BODY25[j]``, with Neck =
mid(11, 12) and MidHip = mid(23, 24); normalised landmarks are multiplied by the image size;
``visibility`` is the confidence (hand landmarks carry none: ``hand_confidence`` is used).
MediaPipe's "left" is the person's left, as in OpenPose (checked on real clips: Holistic's
``left_hand_landmarks`` sit at pose landmark 15, the person's left wrist). Points outside the image
are reported missing (confidence 0), as OpenPose never places a point outside the frame.
Holistic follows one person, so ``num_people`` is 0 or 1.

The face is never used, so the backend runs Holistic's own graph (the ``holistic_landmark_cpu``
graph in the wheel) with its face-mesh branch removed: the pose and hand nodes, and so the
landmarks, are exactly Holistic's (tested: equal to the last bit on the real clips), for less CPU a
frame (the figures: docs/benchmarks.md, measured by ``python -m clipmg.bench.pose``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from clipmg.model.layouts import NUM_OPENPOSE, SOURCE_OFFSETS

from .pose_base import PeopleBackend, PoseBackendError, TargetTracker, empty_people
from .ringbuffer import Frame

__all__ = ["MediaPipeBackend", "mediapipe_to_openpose137", "MP_TO_BODY25"]

# BODY_25 index -> MediaPipe Pose index; a pair means the midpoint of the two.
MP_TO_BODY25: tuple = (
    0,
    (11, 12),
    12,
    14,
    16,
    11,
    13,
    15,
    (23, 24),
    24,
    26,
    28,
    23,
    25,
    27,
    5,
    2,
    8,
    7,
    31,
    31,
    29,
    32,
    32,
    30,
)


def mediapipe_to_openpose137(
    pose: Optional[np.ndarray],
    lhand: Optional[np.ndarray],
    rhand: Optional[np.ndarray],
    width: int,
    height: int,
    hand_confidence: float = 1.0,
) -> np.ndarray:
    """MediaPipe landmarks -> OpenPose ``(137, 3)`` float32 in pixels.

    pose: ``(33, 4)`` normalised ``(x, y, z, visibility)`` or ``None``; lhand / rhand: ``(21, 3)``
    normalised ``(x, y, z)`` of the person's left / right hand or ``None``. Face points stay zero.
    """
    out = np.zeros((NUM_OPENPOSE, 3), np.float32)
    size = np.array([width, height], np.float32)
    if pose is not None:
        pose = np.asarray(pose, np.float32)
        for j, src in enumerate(MP_TO_BODY25):
            if isinstance(src, tuple):
                a, b = pose[src[0]], pose[src[1]]
                xy = (a[:2] + b[:2]) / 2
                conf = min(a[3], b[3])
            else:
                xy, conf = pose[src, :2], pose[src, 3]
            out[j, :2] = xy * size
            out[j, 2] = np.clip(conf, 0.0, 1.0)
    for part, hand in (("lhand", lhand), ("rhand", rhand)):
        if hand is None:
            continue
        o = SOURCE_OFFSETS[part]
        out[o : o + 21, :2] = np.asarray(hand, np.float32)[:, :2] * size
        out[o : o + 21, 2] = hand_confidence
    outside = (out[:, 0] < 0) | (out[:, 1] < 0) | (out[:, 0] >= width) | (out[:, 1] >= height)
    out[outside | (out[:, 2] <= 0)] = 0.0
    return out


_POSE_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


def _check_pose_model(mp: Any, model_complexity: int, allow_download: bool) -> None:
    if model_complexity not in _POSE_MODELS:
        raise PoseBackendError(f"mediapipe model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    path = Path(mp.__file__).parent / "modules" / "pose_landmark" / _POSE_MODELS[model_complexity]
    if not path.is_file() and not allow_download:
        raise PoseBackendError(
            f"mediapipe model_complexity={model_complexity} needs {path.name}, which is not in the "
            f"mediapipe wheel (only model_complexity=1 is) and would be downloaded from GitHub at run "
            f"time; use model_complexity=1, put the file at {path}, or pass allow_download=True"
        )


_HOLISTIC_GRAPH = ("modules", "holistic_landmark", "holistic_landmark_cpu.binarypb")
_FACE_NODES = ("SplitNormalizedLandmarkListCalculator", "FaceLandmarksFromPoseCpu")
_OUTPUTS = ["pose_landmarks", "left_hand_landmarks", "right_hand_landmarks"]


def body_and_hands_graph(mp: Any) -> Any:
    """Holistic's CPU graph from the mediapipe wheel without its face branch (a
    ``CalculatorGraphConfig``). Raises PoseBackendError when the wheel's graph is not the one this
    was written against (pinned mediapipe 0.10.21), rather than guessing."""
    from mediapipe.framework import calculator_pb2

    graph = calculator_pb2.CalculatorGraphConfig()
    graph.ParseFromString(Path(mp.__file__).parent.joinpath(*_HOLISTIC_GRAPH).read_bytes())
    names = [n.calculator for n in graph.node]
    if sorted(names) != sorted(("PoseLandmarkCpu", "HandLandmarksLeftAndRightCpu") + _FACE_NODES):
        raise PoseBackendError(
            f"mediapipe's Holistic graph has unexpected nodes {names}; this backend "
            f"is written for mediapipe 0.10.21: pip install 'mediapipe==0.10.21'"
        )
    keep = [n for n in graph.node if n.calculator not in _FACE_NODES]
    del graph.node[:]
    graph.node.extend(keep)
    for field, drop in ((graph.output_stream, "FACE_LANDMARKS:"), (graph.input_side_packet, "REFINE_FACE")):
        kept = [x for x in field if not x.startswith(drop)]
        del field[:]
        field.extend(kept)
    return graph


def _landmarks(lms: Any, with_visibility: bool) -> Optional[np.ndarray]:
    if lms is None:
        return None
    if with_visibility:
        return np.array([(p.x, p.y, p.z, p.visibility) for p in lms.landmark], np.float32)
    return np.array([(p.x, p.y, p.z) for p in lms.landmark], np.float32)


class MediaPipeBackend(PeopleBackend):
    """MediaPipe Holistic on the CPU.

    Options: ``model_complexity`` (0, 1, 2; default 1), ``static_image_mode`` (False: track
    between frames, the fast video mode), ``min_detection_confidence`` / ``min_tracking_confidence``
    (0.5), ``smooth_landmarks`` (True), ``hand_confidence`` (confidence given to detected hand
    points, 1.0).
    """

    name = "mediapipe"

    def __init__(
        self,
        model_complexity: int = 1,
        static_image_mode: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        smooth_landmarks: bool = True,
        hand_confidence: float = 1.0,
        allow_download: bool = False,
        tracker: Optional[TargetTracker] = None,
    ) -> None:
        super().__init__(tracker)
        try:
            import mediapipe as mp
            from mediapipe.python.solution_base import SolutionBase
        except (ImportError, AttributeError) as e:
            raise PoseBackendError(
                "the mediapipe pose backend needs mediapipe 0.10.21 (the last release with the "
                "legacy mp.solutions API and its models in the wheel): pip install "
                f"'mediapipe==0.10.21' ({e})"
            ) from e
        _check_pose_model(mp, model_complexity, allow_download)
        self.hand_confidence = float(hand_confidence)
        # Holistic's own arguments (mp.solutions.holistic.Holistic.__init__), on the face-less graph
        video = not static_image_mode
        self._holistic = SolutionBase(
            graph_config=body_and_hands_graph(mp),
            side_inputs={
                "model_complexity": model_complexity,
                "smooth_landmarks": smooth_landmarks and video,
                "enable_segmentation": False,
                "smooth_segmentation": video,
                "use_prev_landmarks": video,
            },
            calculator_params={
                "poselandmarkcpu__posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": (
                    min_detection_confidence
                ),
                "poselandmarkcpu__poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__"
                "ThresholdingCalculator.threshold": min_tracking_confidence,
            },
            outputs=_OUTPUTS,
        )

    def detect(self, frame: Frame) -> np.ndarray:
        image = np.ascontiguousarray(frame.image)  # RGB, as MediaPipe wants
        h, w = image.shape[:2]
        res = self._holistic.process(image)
        pose = _landmarks(res.pose_landmarks, True)
        lhand = _landmarks(res.left_hand_landmarks, False)
        rhand = _landmarks(res.right_hand_landmarks, False)
        if pose is None and lhand is None and rhand is None:
            return empty_people()
        kp = mediapipe_to_openpose137(pose, lhand, rhand, w, h, self.hand_confidence)
        if not (kp[:, 2] > 0).any():
            return empty_people()
        return kp[None]

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None
