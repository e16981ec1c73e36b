"""Debouncing per-window probabilities into gesture start/end events: pure logic.

A gesture ``L`` starts when ``P(L)`` stays at or above ``threshold`` for ``min_duration_s`` (the
start event is emitted then, and dated from the first window above the threshold). It ends when
``P(L)`` stays below ``threshold - hysteresis`` for ``release_s``, when another gesture starts, or
when the stream stops. Background labels and windows without an answer (no person, policy
``none``) count as probability 0. Times are the capture times of each window's last frame, so the
result does not depend on how late the worker ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence


@dataclass(frozen=True)
class GestureEvent:
    """One debounced transition: ``kind`` is 'start' or 'end'."""

    kind: str
    label: str
    t_start: float  # capture time of the first window of the gesture (s)
    window_start: int  # first window of the gesture
    t: float  # capture time of the window that triggered this event (s)
    window: int  # window that triggered this event
    confidence: float  # peak probability of the label during the gesture so far
    reason: str = ""  # end events: 'released', 'replaced' or 'stopped'

    @property
    def duration_s(self) -> float:
        return self.t - self.t_start


class Debouncer:
    """Turns a stream of ``{label: probability}`` per window into start/end events."""

    def __init__(
        self,
        threshold: float = 0.6,
        hysteresis: float = 0.15,
        min_duration_s: float = 0.3,
        release_s: float = 0.0,
        background: Sequence[str] = (),
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        if not 0.0 <= hysteresis < threshold:
            raise ValueError(f"hysteresis must lie in [0, threshold), got {hysteresis}")
        if min_duration_s < 0 or release_s < 0:
            raise ValueError("min_duration_s and release_s cannot be negative")
        self.on, self.off = threshold, threshold - hysteresis
        self.min_duration_s, self.release_s = min_duration_s, release_s
        self.background = frozenset(background)
        self.active: Optional[str] = None  # label of the gesture in progress
        self._active_t0 = 0.0
        self._active_w0 = 0
        self._peak = 0.0
        self._below_since: Optional[float] = None  # when the active label fell below the lower threshold
        self._cand: Optional[str] = None  # label above threshold, not yet confirmed
        self._cand_t0 = 0.0
        self._cand_w0 = 0
        self._cand_peak = 0.0

    def update(self, t: float, window: int, probs: Optional[Mapping[str, float]]) -> List[GestureEvent]:
        """Feed one window (capture time ``t`` of its last frame); returns the events it triggers.

        ``probs`` maps labels to probabilities (any subset, e.g. the top-k); ``None`` means the
        window has no answer.
        """
        p: Dict[str, float] = {k: float(v) for k, v in (probs or {}).items() if k not in self.background}
        events: List[GestureEvent] = []
        # 1. the gesture in progress: release with hysteresis
        if self.active is not None:
            pa = p.get(self.active, 0.0)
            self._peak = max(self._peak, pa)
            if pa < self.off:
                if self._below_since is None:
                    self._below_since = t
                if t - self._below_since >= self.release_s:
                    events.append(self._end(t, window, "released"))
            else:
                self._below_since = None
        # 2. a candidate: the best label at or above the threshold, other than the active one
        best = max(p, key=p.__getitem__) if p else None
        if best is None or best == self.active or p[best] < self.on:
            self._cand = None
            return events
        if self._cand != best:
            self._cand, self._cand_t0, self._cand_w0, self._cand_peak = best, t, window, p[best]
        self._cand_peak = max(self._cand_peak, p[best])
        if t - self._cand_t0 >= self.min_duration_s:
            if self.active is not None:
                events.append(self._end(t, window, "replaced"))
            self.active, self._active_t0, self._active_w0 = best, self._cand_t0, self._cand_w0
            self._peak, self._below_since, self._cand = self._cand_peak, None, None
            events.append(GestureEvent("start", best, self._active_t0, self._active_w0, t, window, self._peak))
        return events

    def flush(self, t: float, window: int) -> List[GestureEvent]:
        """End the gesture in progress (the stream stops); returns at most one event."""
        return [self._end(t, window, "stopped")] if self.active is not None else []

    def _end(self, t: float, window: int, reason: str) -> GestureEvent:
        assert self.active is not None
        ev = GestureEvent("end", self.active, self._active_t0, self._active_w0, t, window, self._peak, reason)
        self.active, self._below_since = None, None
        return ev
