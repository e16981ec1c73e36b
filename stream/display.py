"""Annotated frames for ``--display``, ``--record`` and ``--web``: frame, skeleton, top-3, fps,
latency and the gesture in progress.

``annotate`` is a pure drawing function. ``Annotator`` runs it in a thread beside the worker's
loop, latest-frame-only (a busy annotator drops frames rather than slowing the worker), writes the
video, keeps the newest picture for ``show`` (OpenCV windows belong on the calling thread) and hands
frames to the web view's ``FrameSink`` at its capped rate.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

log = logging.getLogger(__name__)

# BODY_25 upper-body bones and the five finger chains of each hand (openpose137 indices)
BODY_BONES: Tuple[Tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (1, 5),
    (5, 6),
    (6, 7),
    (1, 8),
    (0, 15),
    (0, 16),
    (15, 17),
    (16, 18),
)
_FINGERS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))
HAND_BONES: Tuple[Tuple[int, int], ...] = tuple(
    (off + a, off + b) for off in (95, 116) for chain in _FINGERS for a, b in zip(chain, chain[1:])
)


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """What is written over a frame."""

    top: Sequence[Tuple[str, float]] = ()  # (label, probability), best first
    label: Optional[str] = None  # the decided label
    fps_in: float = 0.0  # pose samples per second reaching the worker
    fps_out: float = 0.0  # windows per second
    latency_ms: float = 0.0  # capture -> publish of the last window
    person: bool = True
    banner: str = ""  # e.g. "synthetic demo model"
    window: int = -1
    extra: List[str] = field(default_factory=list)
    live: bool = True  # draw the live rates and latency (False: a recorded clip's answers, clipmg-predict)
    event: str = ""  # the debounced gesture in progress (drawn as a banner at the bottom)


def annotate(
    image: np.ndarray, keypoints: Optional[np.ndarray], ov: Overlay, min_width: int = 480, min_confidence: float = 0.1
) -> np.ndarray:
    """RGB frame ``(H, W, 3)`` uint8 + keypoints ``(137, 3)`` (frame pixels) -> annotated BGR image.

    Small frames are enlarged to at least ``min_width`` pixels wide so the text stays readable.
    """

    h, w = image.shape[:2]
    s = max(1.0, min_width / w)
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if s != 1.0:
        out = cv2.resize(out, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_LINEAR)
    if keypoints is not None and len(keypoints) >= 137:
        k = np.asarray(keypoints, np.float32)
        pts = k[:, :2] * s
        ok = k[:, 2] >= min_confidence
        for bones, colour in ((BODY_BONES, (0, 220, 255)), (HAND_BONES, (255, 180, 0))):
            for a, b in bones:
                if ok[a] and ok[b]:
                    cv2.line(out, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), colour, 2, cv2.LINE_AA)
        for i in np.flatnonzero(ok[:25]):
            cv2.circle(out, tuple(int(v) for v in pts[i]), 3, (0, 0, 255), -1, cv2.LINE_AA)
    lines = [f"{name} {p:.2f}" for name, p in list(ov.top)[:3]]
    head = f"label: {ov.label or '-'}" + ("" if ov.person else "   [no person]")
    stats = f"in {ov.fps_in:.1f}/s  out {ov.fps_out:.2f} win/s  latency {ov.latency_ms:.0f} ms"
    text = [head] + lines + ([stats] if ov.live else []) + list(ov.extra) + ([ov.banner] if ov.banner else [])
    y = 18
    for i, t in enumerate(text):
        colour = (60, 255, 60) if i == 0 else (255, 255, 255)
        cv2.putText(out, t, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, t, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        y += 18
    if ov.event:
        bottom = out.shape[0]
        cv2.rectangle(out, (0, bottom - 26), (out.shape[1], bottom), (40, 40, 200), -1)
        cv2.putText(out, f"gesture: {ov.event}", (8, bottom - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    return out


def can_display() -> bool:
    """Whether an OpenCV window can open here (a display on Linux)."""
    return sys.platform != "linux" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Annotator:
    """Background drawing and recording; ``submit`` never blocks. Use as a context manager."""

    def __init__(
        self,
        record: Optional[str] = None,
        display: bool = False,
        title: str = "clipmg",
        fps: float = 25.0,
        sink: Optional[Any] = None,
    ) -> None:
        """``sink``: the web view's ``FrameSink`` (``webhub.py``), sent at most its own rate of frames."""
        self.record = record
        self.sink = sink
        self.display = display and can_display()
        if display and not self.display:
            log.warning("--display ignored: no display available (DISPLAY is not set)")
        self.title = title
        self.fps = fps
        self.written = 0
        self.dropped = 0
        self._q: "queue.Queue" = queue.Queue(maxsize=1)
        self._latest: Optional[np.ndarray] = None
        self._lock = threading.Lock()
        self._writer: Optional[Any] = None  # cv2.VideoWriter once the first frame fixes the size
        self._size: Optional[Tuple[int, int]] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipmg-annotator", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray, keypoints: Optional[np.ndarray], ov: Overlay) -> None:
        if not (self.record or self.display) and (self.sink is None or not self.sink.due()):
            return  # only the web view wants frames, and not this one: not drawn at all
        try:
            self._q.put_nowait((image, keypoints, ov))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while not self._stop.is_set() or not self._q.empty():
            try:
                image, kp, ov = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                out = annotate(image, kp, ov)
                if self.record:
                    self._write(out)
                if self.display:
                    with self._lock:
                        self._latest = out
                if self.sink is not None and self.sink.due():
                    self.sink.send(out)
            except Exception as e:  # noqa: BLE001 - drawing must never take the worker down
                log.warning("annotation stopped: %s", e)
                self.record, self.display, self.sink = None, False, None

    def _write(self, out: np.ndarray) -> None:

        if self._writer is None:
            path = str(self.record)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fourcc = cv2.VideoWriter.fourcc(*("MJPG" if path.lower().endswith(".avi") else "mp4v"))
            self._size = (out.shape[1], out.shape[0])
            self._writer = cv2.VideoWriter(path, fourcc, float(self.fps), self._size)
            if not self._writer.isOpened():
                log.warning("cannot write video %s (no encoder for this container?); recording disabled", path)
                self._writer, self.record = None, None
                return
        if (out.shape[1], out.shape[0]) != self._size:
            out = cv2.resize(out, self._size)
        self._writer.write(out)
        self.written += 1

    def show(self) -> bool:
        """Show the newest annotated frame (call from the main thread); False when the user closed it."""
        if not self.display:
            return True
        with self._lock:
            img = self._latest
        if img is None:
            return True

        try:
            cv2.imshow(self.title, img)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            log.warning("--display disabled: %s", str(e).strip().splitlines()[-1])
            self.display = False
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self.sink is not None:
            self.sink.close()
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.display:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass

    def __enter__(self) -> "Annotator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rate(times: Sequence[float]) -> float:
    """Events per second over a list of monotonic timestamps (0 with fewer than two)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])
