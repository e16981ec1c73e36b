"""What every pose backend is: the result type, the protocol, target tracking, the common base class
and the guard that turns a failure on one frame into "no person". The backends (``pose.py``'s
registry, ``pose_mediapipe.py``, ``pose_openpose.py``) import these; this module imports none of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

from clipmg.model.errors import ClipmgError
from clipmg.model.layouts import NUM_OPENPOSE, SOURCE_SIZES

from .ringbuffer import Frame

__all__ = [
    "PoseResult",
    "PoseBackend",
    "PoseBackendError",
    "TargetTracker",
    "SafePose",
    "PeopleBackend",
    "no_person",
    "empty_people",
]

log = logging.getLogger("clipmg.stream.pose")

BODY = slice(0, SOURCE_SIZES["body"])


class PoseBackendError(ClipmgError, RuntimeError):
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
            return float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2), float(hi[0] - lo[0]), float(hi[1] - lo[1])
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
            self._miss()
            return None
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
                self._miss()
                return None
        self.center = boxes[best][:2]  # type: ignore[index]
        self.lost = 0
        return best

    def _miss(self) -> None:
        self.lost += 1


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
            log.warning(
                "pose backend %s: frame treated as no person (%s; %d so far)",
                self.name,
                reason,
                n,
                exc_info=exc if n == 1 else None,
            )

    def stats(self) -> Dict[str, int]:
        return {"frames": self.frames, "errors": self.errors, "invalid": self.invalid, "no_person": self.no_person}

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "SafePose":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
