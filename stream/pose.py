"""Pose backends behind one interface: a :class:`Frame` in, the target person's keypoints out.

Every backend returns a :class:`PoseResult` whose ``keypoints`` are ``(137, 3)`` float32 in the
OpenPose layout (body 0-24, face 25-94, left hand 95-115, right hand 116-136; see
:mod:`clipmg.model.layouts`) as ``(x, y, confidence)`` in pixels of ``frame.image``; confidence 0
marks a missing point (x = y = 0 then, as OpenPose writes them).

=============  ==================================================================================
``openpose``   the OpenPose Python API (``pyopenpose``), GPU; :mod:`.pose_openpose`
``mediapipe``  MediaPipe Holistic (legacy ``mp.solutions``), CPU; :mod:`.pose_mediapipe`
``replay``     keypoints read from files (an OpenPose JSON folder or a ``(T, 137, 3)`` ``.npy``),
               aligned to ``frame.seq``
``synthetic``  the keypoints the synthetic source carries in ``frame.keypoints``
=============  ==================================================================================

Several people: :class:`TargetTracker` keeps one target (largest and most central at first, then
the candidate nearest the previous target). No person: ``person=False`` and zero keypoints.
:func:`create_pose_backend` wraps every backend in :class:`SafePose`, which turns an exception or
a malformed result on one frame into "no person" (counted) instead of a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from clipmg.model.keypoint_files import (
    DataError,
    list_openpose_frames,
    parse_openpose_people,
    read_light_hand_csv,
    read_openpose_xlsx,
)
from clipmg.model.layouts import NUM_OPENPOSE

from .config import POSE_BACKENDS
from .pose_base import (  # noqa: F401
    PeopleBackend,
    PoseBackend,
    PoseBackendError,
    PoseResult,
    SafePose,
    TargetTracker,
    empty_people,
    no_person,
)
from .ringbuffer import Frame

__all__ = [
    "PoseResult",
    "PoseBackend",
    "PoseBackendError",
    "TargetTracker",
    "SafePose",
    "PeopleBackend",
    "SyntheticPose",
    "ReplayPose",
    "create_pose_backend",
    "list_pose_backends",
    "people_from_openpose_json",
    "no_person",
    "empty_people",
]


# --------------------------------------------------------------------------- synthetic
class SyntheticPose(PeopleBackend):
    """The keypoints the synthetic source put in the ring with the frame (``frame.keypoints``)."""

    name = "synthetic"

    def detect(self, frame: Frame) -> np.ndarray:
        kp = frame.keypoints
        if kp is None or not (np.asarray(kp)[:, 2] > 0).any():
            return empty_people()
        return np.asarray(kp, np.float32)[None]


# --------------------------------------------------------------------------- replay
def people_from_openpose_json(doc: Dict[str, Any], where: str = "OpenPose JSON") -> np.ndarray:
    """An OpenPose ``--write_json`` document -> ``(N, 137, 3)`` float32: the reader's own parser
    (``clipmg.model.keypoint_files.parse_openpose_people``, with its type and NaN checks)."""
    return parse_openpose_people(doc, where)


class ReplayPose(PeopleBackend):
    """Keypoints from files, frame ``seq + offset`` for each frame.

    ``path``: a folder of raw OpenPose JSON files (``<vid>_<12-digit>_keypoints.json``, frame
    numbers from the names; every person in a file is a candidate for the tracker), a MiGA 2023
    ``*_light_hand.csv``, a MiGA 2024/25 ``*_openpose.xlsx`` or a ``.npy`` array ``(T, 137, 3)``
    (one person per frame; files read by :mod:`clipmg.model.keypoint_files`). ``source_size``:
    ``(width, height)`` the keypoints were computed on; when given they are scaled to the frame's
    size (the capture may have resized frames to fit the ring). ``loop``: wrap the frame number
    (a looping file source). A frame without data is "no person".
    """

    name = "replay"

    def __init__(
        self,
        path: str | Path,
        offset: int = 0,
        loop: bool = False,
        source_size: Optional[Tuple[int, int]] = None,
        tracker: Optional[TargetTracker] = None,
    ) -> None:
        super().__init__(tracker)
        path = Path(path)
        self.offset, self.loop, self.source_size = int(offset), bool(loop), source_size
        self._array: Optional[np.ndarray] = None
        self._files: Dict[int, Path] = {}
        try:
            if path.is_dir():
                self._files = list_openpose_frames(path)
                self.length = max(self._files) + 1
            elif path.is_file() and path.suffix.lower() in (".npy", ".csv", ".xlsx"):
                if path.suffix.lower() == ".npy":
                    try:  # allow_pickle=False: an object array (a pickle inside the .npy) is refused, never run
                        arr = np.load(path, allow_pickle=False)
                    except (ValueError, OSError, EOFError) as e:
                        raise PoseBackendError(
                            f"replay: cannot read {path} as a keypoint array (T, 137, 3): {' '.join(str(e).split())}"
                        ) from None
                elif path.suffix.lower() == ".csv":
                    arr = read_light_hand_csv(path)
                else:
                    arr = read_openpose_xlsx(path)
                if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[1:] != (NUM_OPENPOSE, 3):
                    raise PoseBackendError(
                        f"{path}: expected an array (T, 137, 3), got {getattr(arr, 'shape', type(arr).__name__)}"
                    )
                self._array = arr.astype(np.float32)
                self.length = len(arr)
            else:
                raise PoseBackendError(
                    f"replay needs a folder of OpenPose JSON files, a MiGA "
                    f"_light_hand.csv / _openpose.xlsx or a .npy file; {path} "
                    f"is none of these"
                )
        except DataError as e:
            raise PoseBackendError(f"replay: {e}") from e

    def _index(self, seq: int) -> int:
        i = seq + self.offset
        return i % self.length if self.loop else i

    def detect(self, frame: Frame) -> np.ndarray:
        i = self._index(frame.seq)
        if self._array is not None:
            if not 0 <= i < self.length:
                return empty_people()
            people = self._array[i][None]
            if not (people[0, :, 2] > 0).any():
                people = people[:0]
        else:
            f = self._files.get(i)
            if f is None:
                return empty_people()
            people = people_from_openpose_json(json.loads(f.read_text()), str(f))
        if self.source_size is not None and len(people):
            sw, sh = self.source_size
            h, w = frame.image.shape[:2]
            people = people.copy()
            people[..., 0] *= w / sw
            people[..., 1] *= h / sh
        return people


# --------------------------------------------------------------------------- factory
def _make_openpose(**opts: Any) -> PoseBackend:
    from .pose_openpose import OpenPoseBackend

    return OpenPoseBackend(**opts)


def _make_mediapipe(**opts: Any) -> PoseBackend:
    from .pose_mediapipe import MediaPipeBackend

    return MediaPipeBackend(**opts)


_BACKENDS: Dict[str, Callable[..., PoseBackend]] = {
    "synthetic": lambda **o: SyntheticPose(**o),
    "mediapipe": _make_mediapipe,
    "openpose": _make_openpose,
    "replay": lambda **o: ReplayPose(**o),
}


if tuple(_BACKENDS) != POSE_BACKENDS:  # the names are declared once, in stream/config.py
    raise ImportError(f"pose backends {tuple(_BACKENDS)} differ from stream.config.POSE_BACKENDS {POSE_BACKENDS}")


def list_pose_backends() -> Tuple[str, ...]:
    return POSE_BACKENDS


def create_pose_backend(name: str, *, safe: bool = True, **opts: Any) -> PoseBackend:
    """Build a pose backend by name (``openpose``, ``mediapipe``, ``replay``, ``synthetic``).

    ``opts`` go to the backend (see each class). ``safe``: wrap it in :class:`SafePose`
    (default). Raises :class:`PoseBackendError` with what to do when it cannot be built.
    """
    if name not in _BACKENDS:
        raise PoseBackendError(f"unknown pose backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    try:
        backend = _BACKENDS[name](**opts)
    except TypeError as e:
        raise PoseBackendError(f"bad options for pose backend {name!r}: {e}") from e
    return SafePose(backend) if safe else backend
