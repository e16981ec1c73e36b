"""A shared-memory ring of RGB frames: one writer process, any number of reader processes.

Layout of the segment (all little-endian, every block 64-byte aligned)::

    header  int64[8]   magic, version, slots, max_height, max_width, latest_seq, frames_written,
                       slot_stride
    slot i  int64[8]   slot_seq, height, width, has_keypoints, t_mono (f64), t_wall (f64), -, -
            float32[137, 3]                 keypoints (padded to 64 bytes)
            uint8[max_height, max_width, 3] image (RGB; only the top-left height x width is valid)

Frame ``seq`` lives in slot ``seq % slots``; the writer never blocks and simply overwrites the
oldest slot (drop-oldest). Sequence numbers must strictly increase (gaps are allowed).

Torn-read detection (a seqlock): the writer sets ``slot_seq`` to ``WRITING`` before it copies
and to ``seq`` after; a reader checks ``slot_seq == seq`` before and after its copy and discards
the copy if the slot changed in between (:attr:`FrameRing.torn_reads` counts those). The check
relies on stores becoming visible in program order, which x86-64 guarantees; on weakly ordered
CPUs (ARM) it is best-effort.

Lifetime: :meth:`FrameRing.create` owns the segment and unlinks it on :meth:`close`, on leaving a
``with`` block (exception or not), and at interpreter exit (also in ``multiprocessing`` children,
which skip :mod:`atexit`). A process killed with SIGKILL cannot clean up: the supervisor calls
:func:`cleanup_segments` with the names it handed out. :meth:`FrameRing.attach` never registers
the segment with the resource tracker, so a reader or the capture writer exiting can never unlink
a segment it does not own (Python < 3.13 would otherwise do exactly that).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory, util
from typing import Iterable, List, Optional

import numpy as np

__all__ = ["Frame", "FrameRing", "cleanup_segments", "list_segments", "NUM_KEYPOINTS", "SEGMENT_PREFIX"]

NUM_KEYPOINTS = 137
SEGMENT_PREFIX = "clipmg_"
_MAGIC = 0x434C49504D475242  # "CLIPMGRB"
_VERSION = 1
_HEADER_BYTES = 64
_META_BYTES = 64
_KP_BYTES = 1664  # 137 * 3 * 4 = 1644, padded to a multiple of 64
_EMPTY = -1
_WRITING = -2
# header fields (int64 indices)
_H_MAGIC, _H_VERSION, _H_SLOTS, _H_MAXH, _H_MAXW, _H_LATEST, _H_WRITTEN, _H_STRIDE = range(8)
# slot meta fields (int64 indices; 4 and 5 are float64 through a second view)
_M_SEQ, _M_H, _M_W, _M_HASKP, _M_TMONO, _M_TWALL = range(6)

_attach_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured frame, as read back from the ring (every array is a private copy).

    image: ``(H, W, 3)`` uint8 RGB. seq: capture frame number. t_mono: ``time.monotonic()`` at
    capture (comparable across processes on one machine). t_wall: ``time.time()`` at capture.
    keypoints: ``(137, 3)`` float32 OpenPose-layout keypoints in image pixels when the source knows
    them (the synthetic source), else ``None``.
    """

    image: np.ndarray
    seq: int
    t_mono: float
    t_wall: float
    keypoints: Optional[np.ndarray] = None


def _slot_stride(max_height: int, max_width: int) -> int:
    raw = _META_BYTES + _KP_BYTES + max_height * max_width * 3
    return (raw + 63) // 64 * 64


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Open an existing segment without registering it with the resource tracker."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    # Python < 3.13 registers every attached segment and unlinks it when the attaching process
    # exits. Unregistering afterwards would also drop the owner's registration when the tracker
    # process is shared (spawned children share their parent's), so skip the registration.
    with _attach_lock:
        original = resource_tracker.register
        resource_tracker.register = lambda *a, **k: None  # type: ignore[assignment]
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = original  # type: ignore[assignment]


def _unlink_at_exit(shm: shared_memory.SharedMemory, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a plain os.fork() child inherits the registry: not its segment
        return
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


class FrameRing:
    """Fixed-size ring of frames in one ``multiprocessing.shared_memory`` segment.

    Use :meth:`create` (owner) or :meth:`attach` (any other process); never the constructor.
    Reader-side counters: :attr:`torn_reads` (copies discarded because the writer overwrote the
    slot meanwhile) and :attr:`missed_reads` (``read`` of a seq that was not, or no longer, there).
    """

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self._shm = shm
        self.owner = owner
        self.name: str = shm.name.lstrip("/")
        self.torn_reads = 0
        self.missed_reads = 0
        self._closed = False
        self._finalizer: Optional[util.Finalize] = None
        buf = shm.buf
        self._header: np.ndarray = np.ndarray((8,), np.int64, buf, 0)
        if int(self._header[_H_MAGIC]) != _MAGIC or int(self._header[_H_VERSION]) != _VERSION:
            self._header = None  # type: ignore[assignment]
            raise ValueError(
                f"shared memory segment {self.name!r} is not a clipmg FrameRing "
                f"(version {_VERSION}); check the name the supervisor passed"
            )
        self.slots = int(self._header[_H_SLOTS])
        self.max_height = int(self._header[_H_MAXH])
        self.max_width = int(self._header[_H_MAXW])
        stride = int(self._header[_H_STRIDE])
        # (slots, 8) views over each slot's meta block: int64 fields and the two float64 times.
        self._meta: np.ndarray = np.ndarray((self.slots, 8), np.int64, buf, _HEADER_BYTES, (stride, 8))
        self._meta_f: np.ndarray = np.ndarray((self.slots, 8), np.float64, buf, _HEADER_BYTES, (stride, 8))
        self._kp: np.ndarray = np.ndarray(
            (self.slots, NUM_KEYPOINTS, 3), np.float32, buf, _HEADER_BYTES + _META_BYTES, (stride, 12, 4)
        )
        self._img: np.ndarray = np.ndarray(
            (self.slots, self.max_height, self.max_width, 3),
            np.uint8,
            buf,
            _HEADER_BYTES + _META_BYTES + _KP_BYTES,
            (stride, self.max_width * 3, 3, 1),
        )

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, slots: int, max_height: int, max_width: int, name: str | None = None) -> "FrameRing":
        """Create (and own) a ring of ``slots`` frames of at most ``max_height x max_width x 3``.

        ``name`` defaults to a fresh ``clipmg_<hex>`` (short enough for macOS's 31-char limit).
        Raises ``FileExistsError`` if ``name`` is taken.
        """
        if slots < 1 or max_height < 1 or max_width < 1:
            raise ValueError(
                f"FrameRing needs slots >= 1 and a positive frame size, got "
                f"slots={slots}, max_height={max_height}, max_width={max_width}"
            )
        stride = _slot_stride(max_height, max_width)
        size = _HEADER_BYTES + slots * stride
        name = name or f"{SEGMENT_PREFIX}{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        try:
            header: np.ndarray = np.ndarray((8,), np.int64, shm.buf, 0)
            header[:] = (0, _VERSION, slots, max_height, max_width, -1, 0, stride)
            meta: np.ndarray = np.ndarray((slots, 8), np.int64, shm.buf, _HEADER_BYTES, (stride, 8))
            meta[:, _M_SEQ] = _EMPTY
            header[_H_MAGIC] = _MAGIC  # last: an attacher never sees a half-initialised header
            del header, meta
            ring = cls(shm, owner=True)
        except BaseException:
            shm.close()
            shm.unlink()
            raise
        ring._finalizer = util.Finalize(None, _unlink_at_exit, args=(shm, os.getpid()), exitpriority=100)
        return ring

    @classmethod
    def attach(cls, name: str) -> "FrameRing":
        """Attach to an existing ring (reader, or the capture process as writer); never unlinks."""
        shm = _attach_untracked(name)
        try:
            return cls(shm, owner=False)
        except BaseException:
            shm.close()
            raise

    def close(self) -> None:
        """Unmap the segment; the owner also unlinks it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._header = self._meta = self._meta_f = self._kp = self._img = None  # type: ignore
        try:
            self._shm.close()
        finally:
            if self.owner:
                try:
                    self._shm.unlink()
                except FileNotFoundError:
                    pass
                if self._finalizer is not None:
                    self._finalizer.cancel()

    def __enter__(self) -> "FrameRing":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"FrameRing {self.name!r} is closed")

    # ------------------------------------------------------------------ writer
    def write(
        self, frame: np.ndarray, seq: int, t_mono: float, t_wall: float, keypoints: np.ndarray | None = None
    ) -> None:
        """Store ``frame`` ``(H, W, 3)`` uint8 RGB as number ``seq``; never blocks.

        ``seq`` must be larger than every seq written before. ``keypoints``: ``(137, 3)`` float32
        when the source knows them. Overwrites the slot of ``seq - slots`` (drop-oldest).
        """
        self._check_open()
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"FrameRing.write expects an (H, W, 3) uint8 RGB array, got "
                f"{getattr(frame, 'dtype', type(frame).__name__)} "
                f"{getattr(frame, 'shape', '')}"
            )
        h, w = frame.shape[:2]
        if h > self.max_height or w > self.max_width or h < 1 or w < 1:
            raise ValueError(
                f"frame {w}x{h} does not fit the ring's {self.max_width}x{self.max_height} slots; resize it first"
            )
        seq = int(seq)
        latest = int(self._header[_H_LATEST])
        if seq <= latest:
            raise ValueError(f"frame seq must increase: got {seq} after {latest}")
        kp = None
        if keypoints is not None:
            kp = np.asarray(keypoints, dtype=np.float32)
            if kp.shape != (NUM_KEYPOINTS, 3):
                raise ValueError(f"keypoints must be ({NUM_KEYPOINTS}, 3), got {kp.shape}")
        slot = seq % self.slots
        meta = self._meta[slot]
        meta[_M_SEQ] = _WRITING  # readers that copy from now on will see a changed slot_seq
        self._img[slot, :h, :w] = frame
        if kp is not None:
            self._kp[slot] = kp
        meta[_M_H] = h
        meta[_M_W] = w
        meta[_M_HASKP] = 1 if kp is not None else 0
        self._meta_f[slot, _M_TMONO] = t_mono
        self._meta_f[slot, _M_TWALL] = t_wall
        meta[_M_SEQ] = seq  # publish
        self._header[_H_LATEST] = seq
        self._header[_H_WRITTEN] += 1

    # ------------------------------------------------------------------ readers
    def latest_seq(self) -> int:
        """The newest complete frame's seq, ``-1`` when nothing was written yet."""
        self._check_open()
        return int(self._header[_H_LATEST])

    @property
    def frames_written(self) -> int:
        """Frames written since creation (all writers' lifetimes together)."""
        self._check_open()
        return int(self._header[_H_WRITTEN])

    def read(self, seq: int) -> Frame | None:
        """Copy frame ``seq`` out of the ring.

        Returns ``None`` if ``seq`` was not written yet, was already overwritten, or was
        overwritten while being copied (a torn read: counted in :attr:`torn_reads`; the data is
        gone, so the copy is discarded rather than retried; :meth:`read_latest` retries with the
        newest frame instead).
        """
        self._check_open()
        seq = int(seq)
        if seq < 0:
            self.missed_reads += 1
            return None
        slot = seq % self.slots
        meta = self._meta[slot]
        if int(meta[_M_SEQ]) != seq:
            self.missed_reads += 1
            return None
        h, w = int(meta[_M_H]), int(meta[_M_W])
        has_kp = bool(meta[_M_HASKP])
        t_mono = float(self._meta_f[slot, _M_TMONO])
        t_wall = float(self._meta_f[slot, _M_TWALL])
        if not (0 < h <= self.max_height and 0 < w <= self.max_width):
            h = w = 0  # garbage from a concurrent write; the check below discards it
        image = np.array(self._img[slot, :h, :w])  # copy
        kp = np.array(self._kp[slot]) if has_kp else None
        if int(meta[_M_SEQ]) != seq or h == 0:
            self.torn_reads += 1
            return None
        return Frame(image=image, seq=seq, t_mono=t_mono, t_wall=t_wall, keypoints=kp)

    def read_latest(self, retries: int = 3) -> Frame | None:
        """The newest frame (``None`` if the ring is empty); retries on a torn read."""
        for _ in range(retries + 1):
            seq = self.latest_seq()
            if seq < 0:
                return None
            frame = self.read(seq)
            if frame is not None:
                return frame
        return None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"latest={self.latest_seq()}"
        return (
            f"FrameRing({self.name!r}, slots={self.slots}, max={self.max_width}x"
            f"{self.max_height}, {'owner' if self.owner else 'attached'}, {state})"
        )


def cleanup_segments(names: Iterable[str]) -> List[str]:
    """Unlink ring segments by name (e.g. after a child that owned them was SIGKILLed).

    Safe to call from a signal handler's follow-up code or a ``finally``: missing segments are
    ignored. Returns the names that existed and were removed. The attach-then-unlink round trip
    registers and unregisters the name with this process's resource tracker, which also clears a
    registration left by a killed child sharing that tracker (no "leaked shared_memory" warning).
    """
    removed = []
    for name in names:
        name = str(name).lstrip("/")
        try:
            shm = shared_memory.SharedMemory(name=name)
        except FileNotFoundError:
            continue
        try:
            shm.close()
        finally:
            try:
                shm.unlink()
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def list_segments(prefix: str = SEGMENT_PREFIX) -> List[str]:
    """Names of shared-memory segments in ``/dev/shm`` starting with ``prefix`` (Linux only;
    ``[]`` elsewhere). For leak checks and for a supervisor's cleanup of its own names."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except OSError:
        return []
