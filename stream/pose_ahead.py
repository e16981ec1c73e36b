"""Pose estimation in a thread of its own, ahead of the engine (the live worker's ``PoseAhead``).

Pose backends and engines spend their time in native code that releases the GIL, so on two cores
pose (this thread) and the frame encoder and head (the worker's main thread) overlap instead of
taking turns (docs/benchmarks.md measures both). With several estimate callables (each with a pose
backend of its own: ``--pose-workers``) several threads estimate consecutive samples side by side,
for a backend such as MediaPipe whose one instance works through a frame in turn and cannot keep
up alone although the CPU has room.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Sequence, Set

_PENDING = object()  # PoseAhead.poll: the sample is not estimated yet


class PoseAhead:
    """Pose estimation in a thread of its own, ahead of the engine.

    ``estimate(k)`` reads sample ``k``'s frame and runs the pose backend (``None``: the frame is
    gone); given a sequence of them, one thread runs each. The threads claim samples in order from
    the position the main thread last asked for (``want``), never past the newest sample whose frame
    is in the ring (``newest()``), and keep at most ``limit`` results waiting or in progress, so they
    cannot run away from a slow engine. Each thread's samples increase, so a tracking backend sees
    time move forward. The main thread ``take``s the samples it needs (blocking) or ``poll``s (not
    blocking); each result is handed out once. Each estimate callable is called by its own thread
    only, so backends need not be thread-safe. An exception in a thread is re-raised in the main
    thread by the next ``take``/``poll``.
    """

    def __init__(
        self,
        estimate: Callable[[int], Any] | Sequence[Callable[[int], Any]],
        newest: Callable[[], int],
        limit: int = 32,
        poll_s: float = 0.002,
    ) -> None:
        estimates = [estimate] if callable(estimate) else list(estimate)
        if not estimates:
            raise ValueError("PoseAhead needs at least one estimate callable")
        self._newest, self._limit, self._poll_s = newest, limit, poll_s
        self._cv = threading.Condition()
        self._done: Dict[int, Any] = {}
        self._start = 0  # results below this are no longer wanted
        self._next: Optional[int] = None  # the next sample to estimate; None until the first want()
        self._busy: Set[int] = set()  # the samples being estimated now (one a thread at most)
        self._error: Optional[BaseException] = None
        self._closed = False
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(est,),
                daemon=True,
                name="clipmg-pose" if len(estimates) == 1 else f"clipmg-pose-{i}",
            )
            for i, est in enumerate(estimates)
        ]
        for t in self._threads:
            t.start()

    def want(self, start: int) -> None:
        """Samples below ``start`` are not needed any more; estimate from ``start`` on (never back)."""
        with self._cv:
            if start > self._start:
                self._start = start
                for k in [k for k in self._done if k < start]:
                    del self._done[k]
            if self._next is None or self._next < start:
                self._next = start
            self._cv.notify_all()

    def take(self, k: int) -> Any:
        """Sample ``k``'s result, waiting for the thread if needed; ``None`` if its frame was gone or
        ``k`` was passed over (below ``want``'s start)."""
        with self._cv:
            while True:
                self._raise()
                if k in self._done:
                    return self._done.pop(k)
                if self._passed(k):
                    return None
                self._cv.wait(0.1)

    def poll(self, k: int) -> Any:
        """Like ``take`` without waiting: ``_PENDING`` while sample ``k`` is not estimated yet."""
        with self._cv:
            self._raise()
            if k in self._done:
                return self._done.pop(k)
            return None if self._passed(k) else _PENDING

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=10)

    def _passed(self, k: int) -> bool:
        """Sample ``k`` will never be (or was already) handed out: below the start, or behind the
        thread and not in progress (called with the lock held)."""
        return k < self._start or (self._next is not None and k < self._next and k not in self._busy)

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"pose thread failed: {type(self._error).__name__}: {self._error}") from self._error
        if not self._closed and not all(t.is_alive() for t in self._threads):
            raise RuntimeError("pose thread ended unexpectedly")

    def _run(self, estimate: Callable[[int], Any]) -> None:
        claimed: Optional[int] = None  # the sample this thread is estimating (None: none)
        try:
            while True:
                with self._cv:
                    while not self._closed and (
                        self._next is None
                        or len(self._done) + len(self._busy) >= self._limit
                        or self._next > self._newest()
                    ):
                        self._cv.wait(self._poll_s)  # new frames in the ring are not signalled: look again
                    if self._closed or self._next is None:
                        return
                    claimed = self._next
                    self._busy.add(claimed)
                    self._next = claimed + 1
                # outside the lock: the main thread (and the other pose threads) run meanwhile
                result = estimate(claimed)
                with self._cv:
                    self._busy.discard(claimed)
                    if claimed >= self._start:
                        self._done[claimed] = result
                    claimed = None
                    self._cv.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which crashes the worker
            with self._cv:
                self._error = e
                if claimed is not None:
                    self._busy.discard(claimed)
                self._cv.notify_all()
