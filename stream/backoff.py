"""Exponential, capped back-off: the one rule the capture (reopening a source) and the supervisor
(restarting a crashed process) both follow."""

from __future__ import annotations


class Backoff:
    """Delays ``initial``, ``2·initial``, ``4·initial``, ... capped at ``maximum``; ``reset`` starts over."""

    def __init__(self, initial: float, maximum: float) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"back-off needs 0 < initial <= maximum, got {initial} and {maximum}")
        self.initial, self.maximum = float(initial), float(maximum)
        self.delay = self.initial  # the delay the next ``take`` returns

    def take(self) -> float:
        """The delay to wait now; the next one is twice as long (capped)."""
        d = self.delay
        self.delay = min(d * 2.0, self.maximum)
        return d

    def reset(self) -> None:
        self.delay = self.initial
