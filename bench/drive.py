"""The shipped worker, driven in this process one frame at a time: what benchmarks and tests time.

:class:`DrivenWorker` puts frames into a real :class:`~clipmg.stream.ringbuffer.FrameRing` the way the
capture process does, and after each frame runs ``Worker.step`` until the worker has nothing left to
do, exactly as ``worker_main``'s loop would between two frames of a source that it keeps up with. The
pose backend is the ``synthetic`` one (the keypoints travel with the frame, so pose costs nothing and
is not what is measured); everything after it (the frame cache, the pose-branch cache, the window
head, the decision, the message) is the worker's own code. Published messages are kept, decoded.

    with DrivenWorker(engine, StreamConfig(stride=8, include_logits=True), 240, 320) as d:
        for seq, (image, kp137) in enumerate(frames):
            d.feed(image, kp137)          # -> the windows this frame closed (decoded messages)
"""

from __future__ import annotations

import time
from typing import Any, List, Optional

import numpy as np

from clipmg.stream.config import StreamConfig
from clipmg.stream.messages import WindowMessage, decode
from clipmg.stream.pose import create_pose_backend
from clipmg.stream.ringbuffer import FrameRing
from clipmg.stream.worker import Worker, _Report


class _Collect:
    """A sender that keeps every message (the publisher's ``send(topic, payload)``)."""

    def __init__(self) -> None:
        self.messages: List[tuple] = []  # (topic bytes, payload bytes)
        self.dropped = 0

    def send(self, topic: bytes, payload: bytes) -> bool:
        self.messages.append((topic, payload))
        return True


class DrivenWorker:
    """A real ``Worker`` over a real ring; ``feed`` one frame, get the windows it closed.

    ``cfg.pose_thread`` is forced off: pose (free here) and the engine run in this thread, so the
    time ``feed`` takes is the worker's compute for that frame and nothing else.
    """

    def __init__(self, engine: Any, cfg: StreamConfig, height: int, width: int, slots: int = 64) -> None:
        self.cfg = cfg.replace(pose="synthetic", pose_thread=False)
        self.ring = FrameRing.create(slots, height, width)
        self.pose = create_pose_backend("synthetic")
        self.sender = _Collect()
        self.worker = Worker(self.cfg, engine, self.pose, self.ring, self.sender, _Report(None))
        self.seq = -1

    def feed(
        self, image: np.ndarray, keypoints: Optional[np.ndarray], t_wall: Optional[float] = None
    ) -> List[WindowMessage]:
        """Write the next frame (``(H, W, 3)`` uint8, keypoints ``(137, 3)`` source pixels) and let the
        worker do all it can; returns the window messages published meanwhile (decoded)."""
        self.seq += 1
        now = time.monotonic()
        self.ring.write(image, self.seq, now, time.time() if t_wall is None else t_wall, keypoints)
        before = len(self.sender.messages)
        while self.worker.step():
            pass
        wins = [decode(p) for t, p in self.sender.messages[before:] if t.startswith(b"mg.window")]
        return [m for m in wins if isinstance(m, WindowMessage)]

    def close(self) -> None:
        self.worker.close()
        self.pose.close()
        self.ring.close()

    def __enter__(self) -> "DrivenWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
