"""FrameRing: wrap-around, drop-oldest, torn reads, other processes, and no leaked segments."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipmg.stream.ringbuffer import FrameRing, cleanup_segments, list_segments

CTX = mp.get_context("spawn")
SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs POSIX shared memory in /dev/shm")


def _img(value: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.full((h, w, 3), value % 251, np.uint8)


def _kp(value: int) -> np.ndarray:
    return np.full((137, 3), float(value), np.float32)


# ----------------------------------------------------------------------------- in-process
def test_wrap_around_and_drop_oldest():
    with FrameRing.create(slots=4, max_height=24, max_width=32) as ring:
        assert ring.latest_seq() == -1 and ring.read(0) is None
        for s in range(10):
            ring.write(_img(s), s, t_mono=100.0 + s, t_wall=1e9 + s, keypoints=_kp(s) if s % 2 else None)
        assert ring.latest_seq() == 9 and ring.frames_written == 10
        assert [ring.read(s) for s in range(6)] == [None] * 6  # overwritten: the oldest went first
        for s in range(6, 10):
            f = ring.read(s)
            assert f.seq == s and f.t_mono == 100.0 + s and f.t_wall == 1e9 + s
            assert f.image.shape == (24, 32, 3) and (f.image == s).all()
            assert (f.keypoints is None) == (s % 2 == 0)
            if f.keypoints is not None:
                assert f.keypoints.dtype == np.float32 and (f.keypoints == s).all()
        assert ring.read(10) is None  # not written yet
        assert ring.missed_reads == 8 and ring.torn_reads == 0  # read(0) before writing, 0-5, 10
        assert ring.read_latest().seq == 9


def test_frames_of_any_size_up_to_the_maximum_and_copies():
    with FrameRing.create(3, 48, 64) as ring:
        ring.write(np.arange(48 * 64 * 3, dtype=np.uint32).astype(np.uint8).reshape(48, 64, 3), 0, 0, 0)
        ring.write(_img(7, 10, 5), 1, 0, 0)
        big = ring.read(0).image
        assert big.shape == (48, 64, 3) and big[0, 1, 0] == 3
        small = ring.read(1)
        assert small.image.shape == (10, 5, 3) and (small.image == 7).all()
        small.image[:] = 0  # a private copy: the ring is untouched
        assert (ring.read(1).image == 7).all()


def test_write_rejects_bad_input_with_clear_errors():
    with FrameRing.create(2, 8, 8) as ring:
        with pytest.raises(ValueError, match="uint8 RGB"):
            ring.write(np.zeros((8, 8, 3), np.float32), 0, 0, 0)
        with pytest.raises(ValueError, match="does not fit"):
            ring.write(np.zeros((9, 8, 3), np.uint8), 0, 0, 0)
        with pytest.raises(ValueError, match=r"\(137, 3\)"):
            ring.write(_img(0, 8, 8), 0, 0, 0, keypoints=np.zeros((25, 3)))
        ring.write(_img(0, 8, 8), 5, 0, 0)
        with pytest.raises(ValueError, match="must increase"):
            ring.write(_img(0, 8, 8), 5, 0, 0)


@settings(max_examples=40, deadline=None)
@given(slots=st.integers(1, 6), gaps=st.lists(st.integers(1, 4), min_size=1, max_size=25))
def test_property_only_the_newest_frame_of_each_slot_survives(slots, gaps):
    seqs = list(np.cumsum(gaps) - 1)
    with FrameRing.create(slots, 4, 4) as ring:
        for s in seqs:
            ring.write(_img(int(s), 4, 4), int(s), float(s), float(s))
        newest_per_slot = {}
        for s in seqs:
            newest_per_slot[s % slots] = s
        for s in range(seqs[-1] + 2):
            f = ring.read(s)
            if s in newest_per_slot.values():
                assert f is not None and f.seq == s and f.t_mono == s and (f.image == s % 251).all()
            else:
                assert f is None


def test_attach_errors_are_clear():
    with pytest.raises(FileNotFoundError):
        FrameRing.attach("clipmg_does_not_exist")
    from multiprocessing import shared_memory

    other = shared_memory.SharedMemory(create=True, size=4096, name="clipmg_test_notaring")
    try:
        with pytest.raises(ValueError, match="not a clipmg FrameRing"):
            FrameRing.attach(other.name)
    finally:
        other.close()
        other.unlink()


# ----------------------------------------------------------------------------- lifetime
def test_no_segment_left_after_close_or_exception():
    ring = FrameRing.create(2, 8, 8)
    name = ring.name
    assert (SHM / name).exists()
    ring.close()
    ring.close()  # idempotent
    assert not (SHM / name).exists()
    with pytest.raises(RuntimeError, match="boom"):
        with FrameRing.create(2, 8, 8) as ring:
            name = ring.name
            raise RuntimeError("boom")
    assert not (SHM / name).exists()


def _child_reader(name: str, seqs: list, out) -> None:
    ring = FrameRing.attach(name)
    got = []
    for s in seqs:
        f = ring.read(s)
        got.append(None if f is None else (f.seq, int(f.image[0, 0, 0]), float(f.keypoints[0, 0])))
    ring.close()
    out.put(got)


def _child_writer(name: str, start: int, n: int) -> None:
    ring = FrameRing.attach(name)
    for s in range(start, start + n):
        ring.write(_img(s), s, float(s), float(s), _kp(s))
    ring.close()


_UNRELATED_READER = """
from clipmg.stream.ringbuffer import FrameRing
ring = FrameRing.attach({name!r})
print(ring.read(ring.latest_seq()).seq)
ring.close()
"""


def test_attach_from_other_processes_read_and_write_without_unlinking():
    with FrameRing.create(8, 24, 32) as ring:
        for s in range(5):
            ring.write(_img(s), s, float(s), 0.0, _kp(s))
        out = CTX.Queue()
        p = CTX.Process(target=_child_reader, args=(ring.name, [0, 4, 5], out))
        p.start()
        got = out.get(timeout=60)
        p.join(30)
        assert p.exitcode == 0
        assert got == [(0, 0, 0.0), (4, 4, 4.0), None]
        # A writer in another process (the capture process attaches, it does not own).
        w = CTX.Process(target=_child_writer, args=(ring.name, 5, 6))
        w.start()
        w.join(60)
        assert w.exitcode == 0
        assert ring.latest_seq() == 10 and ring.read(10).keypoints[0, 0] == 10
        # An unrelated process (its own resource tracker, e.g. a viewer attaching by name): on
        # Python < 3.13 a plain SharedMemory attach would have its tracker unlink the segment.
        r = subprocess.run(
            [sys.executable, "-c", _UNRELATED_READER.format(name=ring.name)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and r.stdout.strip() == "10", r.stderr
        assert "leaked" not in r.stderr
        time.sleep(0.3)
        assert (SHM / ring.name).exists(), "an attaching process unlinked a segment it does not own"
        FrameRing.attach(ring.name).close()
    assert not (SHM / ring.name).exists()


def _hammer(name: str, stop, started) -> None:
    ring = FrameRing.attach(name)
    images = [np.full((240, 320, 3), v, np.uint8) for v in range(251)]
    s = ring.latest_seq() + 1
    started.set()
    while not stop.is_set():
        ring.write(images[s % 251], s, float(s), float(s), _kp(s))
        s += 1
    ring.close()


def test_torn_reads_are_detected_never_returned():
    """A writer process overwrites the 2 slots as fast as it can while this process reads the
    slot about to be overwritten: torn copies must be counted and discarded, and every frame
    returned must be internally consistent (image, keypoints and time all from one write)."""
    with FrameRing.create(2, 240, 320) as ring:
        stop, started = CTX.Event(), CTX.Event()
        p = CTX.Process(target=_hammer, args=(ring.name, stop, started))
        p.start()
        try:
            assert started.wait(60)
            good = 0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (ring.torn_reads < 5 or good < 50):
                seq = ring.latest_seq() - 1  # the older slot: the next one the writer takes
                f = ring.read(seq)
                if f is None:
                    continue
                good += 1
                assert f.seq == seq and f.t_mono == seq
                assert f.image.min() == f.image.max() == seq % 251, "torn frame returned"
                assert (f.keypoints == seq).all()
        finally:
            stop.set()
            p.join(30)
        assert p.exitcode == 0
        assert ring.torn_reads >= 5, f"no torn read detected ({ring.torn_reads}, {good} good)"
        assert good >= 50


def _create_and_return(q) -> None:
    ring = FrameRing.create(2, 8, 8)  # never closed: the exit path must unlink it
    q.put(ring.name)


def _create_and_hang(q) -> None:
    ring = FrameRing.create(2, 8, 8)
    q.put(ring.name)
    time.sleep(600)


def test_owner_process_exit_unlinks_and_sigkill_is_cleaned_by_supervisor():
    q = CTX.Queue()
    p = CTX.Process(target=_create_and_return, args=(q,))
    p.start()
    name = q.get(timeout=60)
    p.join(30)
    assert p.exitcode == 0
    assert not (SHM / name).exists(), "owner exited without unlinking its segment"

    p = CTX.Process(target=_create_and_hang, args=(q,))
    p.start()
    name = q.get(timeout=60)
    assert (SHM / name).exists()
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert (SHM / name).exists()  # nothing could run in the killed child
    assert name in list_segments()
    assert cleanup_segments([name, "clipmg_never_existed"]) == [name]
    assert not (SHM / name).exists()
    assert cleanup_segments([name]) == []
