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
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

from clipmg.model.layouts import NUM_OPENPOSE, SOURCE_SIZES, assemble_openpose137

from .ringbuffer import Frame

__all__ = ["PoseResult", "PoseBackend", "PoseBackendError", "TargetTracker", "SafePose",
           "PeopleBackend", "SyntheticPose", "ReplayPose", "create_pose_backend",
           "list_pose_backends", "people_from_openpose_json",
           "no_person", "empty_people"]

log = logging.getLogger(__name__)

BODY = slice(0, SOURCE_SIZES["body"])


class PoseBackendError(RuntimeError):
    """A pose backend cannot be created (missing package, model files, bad option)."""


@dataclass(frozen=True, eq=False)
class PoseResult:
    """keypoints ``(137, 3)`` float32 of the target person in image pixels (zeros if none);
    person: a target person was found; num_people: people the backend saw in the frame."""

    keypoints: np.ndarray
    person: bool
    num_people: int


def empty_people() -> np.ndarray:
    """No one: ``(0, 137, 3)`` float32."""
    return np.zeros((0, NUM_OPENPOSE, 3), np.float32)


def no_person(num_people: int = 0) -> PoseResult:
    return PoseResult(np.zeros((NUM_OPENPOSE, 3), np.float32), False, int(num_people))


@runtime_checkable
class PoseBackend(Protocol):
    name: str

    def __call__(self, frame: Frame) -> PoseResult: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- target tracking
def _person_box(kp: np.ndarray, min_conf: float = 0.05) -> Optional[Tuple[float, float, float, float]]:
    """``(cx, cy, width, height)`` of one person's confident points ``(137, 3)``; body points
    when there are at least two, else any part. ``None`` for an empty person."""
    for pts in (kp[BODY], kp):
        ok = pts[:, 2] > min_conf
        if ok.sum() >= 2 or (pts is kp and ok.any()):
            xy = pts[ok, :2]
            lo, hi = xy.min(0), xy.max(0)
            return float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2), \
                float(hi[0] - lo[0]), float(hi[1] - lo[1])
    return None


class TargetTracker:
    """Chooses one person per frame and keeps it over time (pure logic, no image).

    First frame (or after the target was lost for ``lost_after`` frames): the person with the
    largest box, weighted toward the image centre (``score = area * (1 - 0.5 * d)``, ``d`` the
    box centre's distance to the image centre over the half-diagonal). Afterwards: the person
    whose box centre is nearest the previous target's, if within ``max_jump`` x image diagonal;
    otherwise nobody (the target is "lost" for this frame, so a passer-by does not take over at
    once).
    """

    def __init__(self, max_jump: float = 0.2, lost_after: int = 10) -> None:
        self.max_jump = max_jump
        self.lost_after = lost_after
        self.center: Optional[Tuple[float, float]] = None
        self.lost = 0

    def reset(self) -> None:
        self.center, self.lost = None, 0

    def select(self, people: np.ndarray, width: int, height: int) -> Optional[int]:
        """Index of the target in ``people`` ``(N, 137, 3)``, or ``None``."""
        boxes = [_person_box(p) for p in people]
        valid = [i for i, b in enumerate(boxes) if b is not None]
        diag = float(np.hypot(width, height)) or 1.0
        if not valid:
            return self._miss()
        if self.center is None or self.lost >= self.lost_after:
            cx0, cy0 = width / 2, height / 2

            def score(i: int) -> float:
                cx, cy, w, h = boxes[i]  # type: ignore[misc]
                d = min(1.0, np.hypot(cx - cx0, cy - cy0) / (diag / 2))
                return max(w * h, 1.0) * (1.0 - 0.5 * d)

            best = max(valid, key=score)
        else:
            px, py = self.center
            best = min(valid, key=lambda i: np.hypot(boxes[i][0] - px, boxes[i][1] - py))  # type: ignore[index]
            if np.hypot(boxes[best][0] - px, boxes[best][1] - py) > self.max_jump * diag:  # type: ignore[index]
                return self._miss()
        self.center = boxes[best][:2]  # type: ignore[index]
        self.lost = 0
        return best

    def _miss(self) -> None:
        self.lost += 1
        return None


# --------------------------------------------------------------------------- base + guard
class PeopleBackend:
    """Base of the backends: ``detect`` gives everyone ``(N, 137, 3)``, the tracker picks one."""

    name = "?"

    def __init__(self, tracker: Optional[TargetTracker] = None) -> None:
        self.tracker = tracker or TargetTracker()

    def detect(self, frame: Frame) -> np.ndarray:
        """All people in ``frame``: ``(N, 137, 3)`` float32 in image pixels (``N`` may be 0)."""
        raise NotImplementedError

    def __call__(self, frame: Frame) -> PoseResult:
        people = np.asarray(self.detect(frame), dtype=np.float32)
        if people.ndim != 3 or people.shape[1:] != (NUM_OPENPOSE, 3):
            raise ValueError(f"{self.name}: detect returned shape {people.shape}, expected (N, 137, 3)")
        h, w = frame.image.shape[:2]
        idx = self.tracker.select(people, w, h)
        if idx is None:
            return no_person(len(people))
        return PoseResult(people[idx].copy(), True, len(people))

    def close(self) -> None:
        pass

    def __enter__(self) -> "PeopleBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SafePose:
    """Guard around a backend: an exception or a malformed result on a frame gives "no person"
    for that frame and is counted (``errors``, ``invalid``), never a crash.

    Malformed: not a :class:`PoseResult`, keypoints not ``(137, 3)``, NaN/inf, negative
    confidences. Confidences above 1 are clipped. A result with ``person=False`` is returned with
    zero keypoints. The first ``log_first`` failures are logged with their reason, then every
    ``log_every``-th.
    """

    def __init__(self, backend: PoseBackend, log_first: int = 3, log_every: int = 100) -> None:
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.frames = self.errors = self.invalid = self.no_person = 0
        self._log_first, self._log_every = log_first, log_every

    def __call__(self, frame: Frame) -> PoseResult:
        self.frames += 1
        try:
            res = self.backend(frame)
        except Exception as e:
            self.errors += 1
            self._report(f"raised {type(e).__name__}: {e}", exc=e)
            return self._none()
        reason = self._check(res)
        if reason:
            self.invalid += 1
            self._report(reason)
            return self._none()
        kp = np.asarray(res.keypoints, dtype=np.float32)
        if not res.person:
            return self._none(int(res.num_people))
        if (kp[:, 2] > 1.0).any():
            kp = kp.copy()
            np.minimum(kp[:, 2], 1.0, out=kp[:, 2])
        return PoseResult(kp, True, max(1, int(res.num_people)))

    def _check(self, res: Any) -> str:
        if not isinstance(res, PoseResult):
            return f"returned {type(res).__name__}, not PoseResult"
        kp = res.keypoints
        if not isinstance(kp, np.ndarray) or kp.shape != (NUM_OPENPOSE, 3):
            return f"keypoints of shape {getattr(kp, 'shape', type(kp).__name__)}, expected (137, 3)"
        if not np.isfinite(kp).all():
            return "keypoints contain NaN or inf"
        if (kp[:, 2] < 0).any():
            return "negative confidences"
        return ""

    def _none(self, num_people: int = 0) -> PoseResult:
        self.no_person += 1
        return no_person(num_people)

    def _report(self, reason: str, exc: Optional[BaseException] = None) -> None:
        n = self.errors + self.invalid
        if n <= self._log_first or n % self._log_every == 0:
            log.warning("pose backend %s: frame treated as no person (%s; %d so far)", self.name,
                        reason, n, exc_info=exc if n == 1 else None)

    def stats(self) -> Dict[str, int]:
        return {"frames": self.frames, "errors": self.errors, "invalid": self.invalid,
                "no_person": self.no_person}

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "SafePose":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
def people_from_openpose_json(doc: Dict[str, Any]) -> np.ndarray:
    """An OpenPose ``--write_json`` document -> ``(N, 137, 3)`` float32 (absent parts = zeros)."""
    people = []
    for p in doc.get("people", []) or []:
        parts = {}
        for part, key in (("body", "pose_keypoints_2d"), ("face", "face_keypoints_2d"),
                          ("lhand", "hand_left_keypoints_2d"), ("rhand", "hand_right_keypoints_2d")):
            vals = p.get(key) or []
            n = SOURCE_SIZES[part]
            arr = np.zeros((n, 3), np.float32)
            if len(vals) == n * 3:
                arr[:] = np.asarray(vals, np.float32).reshape(n, 3)
            elif vals:
                raise ValueError(f"{key} has {len(vals)} values, expected {n * 3}")
            parts[part] = arr
        people.append(assemble_openpose137(parts["body"], parts["face"], parts["lhand"], parts["rhand"]))
    if not people:
        return empty_people()
    return np.stack(people).astype(np.float32)


class ReplayPose(PeopleBackend):
    """Keypoints from files, frame ``seq + offset`` for each frame.

    ``path``: a folder of raw OpenPose JSON files (``<vid>_<12-digit>_keypoints.json``, frame
    numbers from the names; every person in a file is a candidate for the tracker), a MiGA 2023
    ``*_light_hand.csv``, a MiGA 2024/25 ``*_openpose.xlsx`` or a ``.npy`` array ``(T, 137, 3)``
    (one person per frame; files read by :mod:`clipmg.train.readers`). ``source_size``:
    ``(width, height)`` the keypoints were computed on; when given they are scaled to the frame's
    size (the capture may have resized frames to fit the ring). ``loop``: wrap the frame number
    (a looping file source). A frame without data is "no person".
    """

    name = "replay"

    def __init__(self, path: str | Path, offset: int = 0, loop: bool = False,
                 source_size: Optional[Tuple[int, int]] = None,
                 tracker: Optional[TargetTracker] = None) -> None:
        super().__init__(tracker)
        from clipmg.train import readers

        path = Path(path)
        self.offset, self.loop, self.source_size = int(offset), bool(loop), source_size
        self._array: Optional[np.ndarray] = None
        self._files: Dict[int, Path] = {}
        try:
            if path.is_dir():
                self._files = readers.list_openpose_frames(path)
                self.length = max(self._files) + 1
            elif path.is_file() and path.suffix.lower() in (".npy", ".csv", ".xlsx"):
                if path.suffix.lower() == ".npy":
                    try:  # allow_pickle=False: an object array (a pickle inside the .npy) is refused, never run
                        arr = np.load(path, allow_pickle=False)
                    except (ValueError, OSError, EOFError) as e:
                        raise PoseBackendError(f"replay: cannot read {path} as a keypoint array (T, 137, 3): "
                                               f"{' '.join(str(e).split())}") from None
                elif path.suffix.lower() == ".csv":
                    arr = readers.read_light_hand_csv(path)
                else:
                    arr = readers.read_openpose_xlsx(path)
                if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[1:] != (NUM_OPENPOSE, 3):
                    raise PoseBackendError(f"{path}: expected an array (T, 137, 3), got "
                                           f"{getattr(arr, 'shape', type(arr).__name__)}")
                self._array = arr.astype(np.float32)
                self.length = len(arr)
            else:
                raise PoseBackendError(f"replay needs a folder of OpenPose JSON files, a MiGA "
                                       f"_light_hand.csv / _openpose.xlsx or a .npy file; {path} "
                                       f"is none of these")
        except readers.DataError as e:
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
            people = people_from_openpose_json(json.loads(f.read_text()))
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
    "openpose": _make_openpose,
    "mediapipe": _make_mediapipe,
    "replay": lambda **o: ReplayPose(**o),
    "synthetic": lambda **o: SyntheticPose(**o),
}


def list_pose_backends() -> Tuple[str, ...]:
    return tuple(_BACKENDS)


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
