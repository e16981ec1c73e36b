"""The worker's pose thread (``PoseAhead``): order, hand-off, skipping ahead, back-pressure, errors."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest
from live_harness import wait_for

from clipmg.stream.worker import _PENDING, PoseAhead


class Clock:
    """The newest sample whose frame has arrived, moved by the test; and a log of estimates."""

    def __init__(self, newest: int = -1, delay: float = 0.0) -> None:
        self.newest, self.delay = newest, delay
        self.calls: List[int] = []
        self.threads: set = set()

    def estimate(self, k: int):
        self.calls.append(k)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return None if k % 10 == 7 else f"sample {k}"  # every tenth from 7: the frame was gone


def test_samples_are_estimated_in_order_in_their_own_thread_and_handed_out_once() -> None:
    c = Clock(newest=5)
    a = PoseAhead(c.estimate, lambda: c.newest)
    try:
        assert a.poll(0) is _PENDING  # nothing asked for yet: nothing done
        a.want(0)
        assert [a.take(k) for k in range(6)] == [f"sample {k}" for k in range(6)]
        time.sleep(0.05)
        assert c.calls == list(range(6)), "never past the newest frame"
        assert a.poll(6) is _PENDING
        c.newest = 9
        assert a.take(7) is None and a.take(6) == "sample 6"  # a gone frame is None; any order
        assert a.take(6) is None  # handed out once
        assert c.threads == {"clipmg-pose"}
    finally:
        a.close()


def test_want_skips_ahead_and_drops_what_is_no_longer_needed() -> None:
    c = Clock(newest=3)
    a = PoseAhead(c.estimate, lambda: c.newest)
    try:
        a.want(0)
        wait_for(lambda: c.calls == [0, 1, 2, 3], 5.0, "the pose thread", every=0.002)
        c.newest = 40
        a.want(20)  # the worker skipped windows: samples 4-19 are never estimated
        assert a.take(2) is None and a.take(19) is None
        assert a.take(20) == "sample 20"
        assert not set(c.calls) & set(range(4, 20))
        a.want(10)  # never back
        assert a.take(12) is None
    finally:
        a.close()


def test_at_most_limit_results_wait_for_a_slow_engine() -> None:
    c = Clock(newest=1000)
    a = PoseAhead(c.estimate, lambda: c.newest, limit=8)
    try:
        a.want(0)
        wait_for(lambda: len(c.calls) >= 8, 5.0, "the pose thread", every=0.002)
        time.sleep(0.05)
        assert len(c.calls) == 8
        assert a.take(0) == "sample 0"
        wait_for(lambda: len(c.calls) == 9, 5.0, "the pose thread", every=0.002)
    finally:
        a.close()


def test_an_error_in_the_thread_reaches_the_worker() -> None:
    def broken(k: int):
        raise ValueError("backend exploded")

    a = PoseAhead(broken, lambda: 100)
    try:
        a.want(0)
        with pytest.raises(RuntimeError, match="pose thread failed: ValueError: backend exploded"):
            a.take(0)
        with pytest.raises(RuntimeError, match="backend exploded"):
            a.poll(1)
    finally:
        a.close()


def test_close_stops_the_thread_even_while_it_waits() -> None:
    c = Clock(newest=-1)
    a = PoseAhead(c.estimate, lambda: c.newest)
    a.want(0)
    a.close()
    assert not any(t.is_alive() for t in a._threads)


class Backend:
    """One pose backend instance: logs the samples it saw and refuses to be used by two threads."""

    def __init__(self, delay: float) -> None:
        self.delay, self.seen, self.busy = delay, [], threading.Lock()
        self.threads: set = set()

    def __call__(self, k: int):
        assert self.busy.acquire(blocking=False), "one backend used by two threads at once"
        try:
            self.seen.append(k)
            self.threads.add(threading.current_thread().name)
            time.sleep(self.delay)
            return f"sample {k}"
        finally:
            self.busy.release()


def test_several_pose_workers_share_the_samples_each_with_its_own_backend() -> None:
    """--pose-workers 2: two threads, one backend each, every sample estimated once, each backend's
    samples in increasing order (a tracker sees time move forward), results handed out by sample,
    and the two really overlap (the wall time of 40 samples of 20 ms is well under 40 x 20 ms)."""
    backends = [Backend(0.02), Backend(0.02)]
    newest = [39]
    a = PoseAhead(backends, lambda: newest[0], limit=8)
    try:
        t0 = time.monotonic()
        a.want(0)
        got = [a.take(k) for k in range(40)]
        wall = time.monotonic() - t0
    finally:
        a.close()
    assert got == [f"sample {k}" for k in range(40)]
    assert sorted(backends[0].seen + backends[1].seen) == list(range(40))
    for b in backends:
        assert b.seen == sorted(b.seen) and len(b.seen) >= 10
        assert len(b.threads) == 1
    assert {n for b in backends for n in b.threads} == {"clipmg-pose-0", "clipmg-pose-1"}
    assert wall < 0.7 * 40 * 0.02


def test_several_pose_workers_respect_the_limit_and_the_skip() -> None:
    backends = [Backend(0.0), Backend(0.0)]
    newest = [1000]
    a = PoseAhead(backends, lambda: newest[0], limit=6)
    try:
        a.want(0)
        wait_for(lambda: len(backends[0].seen) + len(backends[1].seen) >= 6, 5.0, "the pose thread", every=0.002)
        time.sleep(0.05)
        assert len(backends[0].seen) + len(backends[1].seen) == 6  # results waiting + in progress <= limit
        a.want(100)  # skipped ahead: 6-99 never estimated
        assert a.take(100) == "sample 100"
        seen = set(backends[0].seen + backends[1].seen)
        assert not seen & set(range(6, 100))
    finally:
        a.close()
