"""The capture process: source -> numbered, timestamped frames in the shared-memory ring.

:func:`capture_main` is a process entry point (Pupil-launchable style): the supervisor creates
the :class:`~clipmg.stream.ringbuffer.FrameRing`, then starts
``ctx.Process(target=capture_main, args=(spec, ring.name, status_queue, stop_event), kwargs=...)``.

What it guarantees (streaming.md "Capture"):

- every frame gets ``seq`` (strictly increasing over the whole life of the ring: a restarted
  capture continues after ``ring.latest_seq()``, a reconnect continues from the last value; the
  outage is recorded in the status events, never hidden by renumbering), ``t_mono``
  (``time.monotonic()``) and ``t_wall`` (``time.time()``) taken when the frame was obtained;
- reading happens in one dedicated loop that consumes frames as fast as the source delivers
  them, so the ring always holds the newest frame (no stale-frame lag from FFmpeg/driver
  buffers); consumers take ``ring.latest_seq()``;
- files are paced at their own fps (``pace=True``) or read as fast as possible (``pace=False``);
- a live source that fails is released and reopened with exponential, capped back-off, forever
  (until ``stop_event``); a file that ends reports ``ended`` and the process returns (``loop=True``
  restarts it); a file that cannot be opened reports ``failed``;
- frames larger than the ring's slots are resized to fit (keypoints scaled with them); a size or
  channel change mid-stream is reported once (``source_format`` event) and converted;
- status events on ``status_queue`` (never blocking; dropped if the queue is full)::

      {"event": "source_state", "state": "opening" | "streaming" | "stalled" | "reconnecting" |
       "ended" | "failed" | "stopped", "source": <redacted spec>, "seq": <last seq written>,
       "t_wall": ..., "t_mono": ..., "detail": str, ...}

  extra keys: ``attempt``/``backoff_s`` (reconnecting), ``outage_s`` (streaming after an outage),
  ``fps``/``size`` (streaming). Optional periodic ``{"event": "capture_stats", ...}``.
- credentials in the spec never reach a log line, an event or an exception message.
"""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import signal
import threading
import time
import traceback
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from .backoff import Backoff
from .redact import redact_text, redact_url, url_secrets
from .ringbuffer import FrameRing
from .sources import SourceOpenError, open_source, spec_is_live

__all__ = ["capture_main", "CaptureError", "fit_frame", "STATES"]

log = logging.getLogger(__name__)

STATES = ("opening", "streaming", "stalled", "reconnecting", "ended", "failed", "stopped")


class CaptureError(RuntimeError):
    """The capture process could not go on; the message is redacted."""


# --------------------------------------------------------------------------- pure helpers
def fit_frame(
    frame: np.ndarray, keypoints: Optional[np.ndarray], max_height: int, max_width: int
) -> Tuple[np.ndarray, Optional[np.ndarray], bool]:
    """Shrink ``frame`` ``(H, W, 3)`` to fit ``max_height x max_width`` keeping its aspect ratio.

    Returns ``(frame, keypoints, resized)``; keypoints ``(137, 3)`` get their x, y scaled by the
    same factors (confidence unchanged, missing points stay zero).
    """
    h, w = frame.shape[:2]
    if h <= max_height and w <= max_width:
        return frame, keypoints, False
    scale = min(max_height / h, max_width / w)
    nw, nh = max(1, min(max_width, int(w * scale))), max(1, min(max_height, int(h * scale)))
    out = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    if keypoints is not None:
        keypoints = np.array(keypoints, dtype=np.float32, copy=True)
        keypoints[:, 0] *= nw / w
        keypoints[:, 1] *= nh / h
    return out, keypoints, True


class _Reporter:
    """Sends status events without ever blocking, with every string scrubbed of credentials."""

    def __init__(self, status_queue: Any, spec: str) -> None:
        self.queue = status_queue
        self.source = redact_url(spec)
        self.secrets = url_secrets(spec)
        self.dropped = 0
        self.state: Optional[str] = None

    def scrub(self, text: str) -> str:
        return redact_text(str(text), self.secrets)

    def emit(self, event: Dict[str, Any]) -> None:
        event = {k: self.scrub(v) if isinstance(v, str) else v for k, v in event.items()}
        if self.queue is None:
            return
        try:
            self.queue.put_nowait(event)
        except (queue_mod.Full, ValueError, OSError, AssertionError):  # full or closed queue
            self.dropped += 1

    def state_change(self, state: str, seq: int, detail: str = "", **extra: Any) -> None:
        assert state in STATES, state
        self.state = state
        event = {
            "event": "source_state",
            "state": state,
            "source": self.source,
            "seq": seq,
            "t_wall": time.time(),
            "t_mono": time.monotonic(),
            "detail": detail,
            **extra,
        }
        # Standalone, a problem is a warning; under a supervisor (a status queue) the event is the
        # report, which the supervisor prints once: the log line stays at INFO, not duplicated.
        level = (
            {"stalled": logging.WARNING, "reconnecting": logging.WARNING, "failed": logging.ERROR}.get(
                state, logging.INFO
            )
            if self.queue is None
            else logging.INFO
        )
        log.log(level, "capture %s: %s%s", self.source, state, f" ({self.scrub(detail)})" if detail else "")
        self.emit(event)


class _Stop:
    """``stop_event`` or a SIGTERM/SIGINT received by this process."""

    def __init__(self, stop_event: Any) -> None:
        self.event = stop_event
        self.signalled = False

    def is_set(self) -> bool:
        return self.signalled or (self.event is not None and self.event.is_set())

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on stop; returns whether stop was requested.

        Polls instead of ``stop_event.wait()``: a process SIGKILLed inside ``multiprocessing.Event.wait``
        stays counted as a sleeper, and the next ``set()`` (the supervisor stopping the run) then
        waits forever for it to wake up."""
        end = time.monotonic() + max(0.0, seconds)
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.02))
        return True


# --------------------------------------------------------------------------- entry point
def capture_main(
    source_spec: str,
    ring_name: str,
    status_queue: Any,
    stop_event: Any,
    *,
    pace: bool = True,
    open_timeout_s: float = 5.0,
    read_timeout_s: float = 5.0,
    max_backoff_s: float = 8.0,
    initial_backoff_s: float = 0.25,
    max_frames: Optional[int] = None,
    stats_interval_s: Optional[float] = None,
    frozen_timeout_s: Optional[float] = None,
    start_event: Any = None,
    **source_opts: Any,
) -> None:
    """Run the capture loop until ``stop_event`` is set, the source ends, or it cannot go on.

    ``source_spec``: see :func:`~clipmg.stream.sources.open_source`. ``ring_name``: an existing
    :class:`FrameRing` (created by the supervisor). ``status_queue``: anything with
    ``put_nowait`` (a ``multiprocessing.Queue``) or ``None``. ``stop_event``: a
    ``multiprocessing.Event`` (or ``None``: run until the source ends or a signal).
    ``max_frames``: stop after writing this many frames (benchmarks, tests).
    ``stats_interval_s``: emit ``capture_stats`` events this often (``None``: never).
    ``frozen_timeout_s``: a live source whose frames stay identical this long is treated as
    stalled and reopened (``None``: off). OpenCV 4.10 keeps returning the last good frame when a
    network stream changes resolution mid-stream; reopening picks up the new size.
    ``start_event``: a file, folder or synthetic source is opened at once (so a bad file fails fast)
    but its first frame is read only when this event is set (the supervisor sets it when the worker
    is ready): a file plays from its first frame, whatever the model's loading time; live sources
    never wait (a camera is joined at its newest frame).
    ``source_opts``: passed to ``open_source`` (``loop``, ``fps``, ``ffmpeg_options``, ...).
    Returns normally on stop/end; raises :class:`CaptureError` (redacted) on a fatal error after
    reporting ``failed``.
    """
    # OpenCV's own warnings ("backend is generally available but can't be used to capture by name"
    # on every failed open) say nothing the status events do not; FFmpeg's errors still show.
    # Set OPENCV_LOG_LEVEL yourself to see them (OpenCV reads it when cv2 is imported; this module
    # imports cv2 at its top, so the level is set through the API instead).
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.setLogLevel(2)  # 2: errors only
    rep = _Reporter(status_queue, source_spec)
    stop = _Stop(stop_event)
    restore = _install_signal_handlers(stop)
    ring: Optional[FrameRing] = None
    seq = -1
    try:
        try:
            ring = FrameRing.attach(ring_name)
        except (FileNotFoundError, ValueError) as e:
            rep.state_change("failed", seq, f"cannot attach frame ring {ring_name!r}: {e}")
            raise CaptureError(f"cannot attach frame ring {ring_name!r}: {e}") from None
        seq = ring.latest_seq()  # a restarted capture continues the numbering
        live = spec_is_live(source_spec)
        loop = _CaptureLoop(
            ring,
            rep,
            stop,
            pace=pace,
            read_timeout_s=read_timeout_s,
            max_frames=max_frames,
            stats_interval_s=stats_interval_s,
            seq=seq,
            frozen_timeout_s=frozen_timeout_s,
        )
        backoff = Backoff(initial_backoff_s, max(initial_backoff_s, max_backoff_s))
        attempt = 0
        outage_since: Optional[float] = None
        while not stop.is_set():
            rep.state_change("opening", loop.seq, attempt=attempt)
            try:
                src = open_source(
                    source_spec, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s, **source_opts
                )
            except SourceOpenError as e:
                if not live:
                    rep.state_change("failed", loop.seq, str(e))
                    return
                attempt += 1
                if outage_since is None:
                    outage_since = time.monotonic()
                delay = backoff.take()
                rep.state_change("reconnecting", loop.seq, str(e), attempt=attempt, backoff_s=round(delay, 3))
                if stop.wait(delay):
                    break
                continue
            if start_event is not None and not live and not start_event.is_set():
                rep.state_change("opening", loop.seq, "waiting for the worker to be ready", attempt=attempt)
                while not start_event.is_set() and not stop.is_set():
                    stop.wait(0.01)
                if stop.is_set():
                    src.close()
                    break
            try:
                extra: Dict[str, Any] = {"fps": src.fps, "size": list(src.size)}
                if outage_since is not None:
                    extra["outage_s"] = round(time.monotonic() - outage_since, 3)
                rep.state_change("streaming", loop.seq, **extra)
                outage_since = None
                outcome, detail = loop.run(src)
            finally:
                src.close()
            if loop.frames_this_open > 0:  # it worked for a while: start backing off afresh
                backoff.reset()
                attempt = 0
            if outcome in ("ended", "failed"):
                rep.state_change(outcome, loop.seq, detail)
                return
            if outcome == "stop":
                break
            # dropped: a live source stalled or failed; files never get here
            outage_since = time.monotonic()
            rep.state_change("stalled", loop.seq, detail)
            attempt += 1
            delay = backoff.take()
            rep.state_change(
                "reconnecting", loop.seq, "releasing and reopening", attempt=attempt, backoff_s=round(delay, 3)
            )
            if stop.wait(delay):
                break
        rep.state_change("stopped", loop.seq, loop.stop_detail or "stop requested")
    except CaptureError:
        raise
    except BaseException as e:
        detail = rep.scrub(f"{type(e).__name__}: {e}")
        if not isinstance(e, (KeyboardInterrupt, SystemExit)):
            log.error("capture %s crashed:\n%s", rep.source, rep.scrub(traceback.format_exc()))
        rep.state_change("failed", seq if ring is None else ring.latest_seq(), detail)
        raise CaptureError(detail) from None
    finally:
        if ring is not None:
            ring.close()
        restore()


class _CaptureLoop:
    """The read -> pace -> fit -> number -> write loop over one opened source."""

    def __init__(
        self,
        ring: FrameRing,
        rep: _Reporter,
        stop: _Stop,
        *,
        pace: bool,
        read_timeout_s: float,
        max_frames: Optional[int],
        stats_interval_s: Optional[float],
        seq: int,
        frozen_timeout_s: Optional[float] = None,
    ) -> None:
        self.ring, self.rep, self.stop = ring, rep, stop
        self.frozen_timeout_s = frozen_timeout_s
        self.pace = pace
        self.read_timeout_s = read_timeout_s
        self.max_frames = max_frames
        self.stats_interval_s = stats_interval_s
        self.seq = seq
        self.frames_total = 0
        self.frames_this_open = 0
        self.resized = 0
        self.format: Optional[Tuple[Any, ...]] = None
        self.stop_detail = ""
        self._stats_t = time.monotonic()
        self._stats_n = 0

    def run(self, src: Any) -> Tuple[str, str]:
        """Stream until stop/end/drop; returns ``(outcome, detail)``, outcome one of ``stop``,
        ``ended``, ``failed``, ``dropped``."""
        self.frames_this_open = 0
        t0: Optional[float] = None
        last_frame_t = time.monotonic()
        paced = self.pace and not src.live
        frozen = _FrozenCheck(self.frozen_timeout_s if src.live else None)
        while not self.stop.is_set():
            frame, kp = src.read()
            now = time.monotonic()
            if frame is None:
                if src.state == "ended":
                    return "ended", src.detail
                if src.state == "failed":
                    return "failed", src.detail
                if src.state == "dropped":
                    return "dropped", src.detail
                if now - last_frame_t > self.read_timeout_s:
                    return "dropped", f"no frame for {now - last_frame_t:.1f} s"
                self.stop.wait(0.005)
                continue
            if paced:
                # Frame n is due n/fps after the first one; a slow decoder is never made to wait.
                if t0 is None or now - (t0 + self.frames_this_open / src.fps) > 1.0:
                    t0 = now - self.frames_this_open / src.fps  # (re)anchor after a long hiccup
                due = t0 + self.frames_this_open / src.fps
                if due > now and self.stop.wait(due - now):
                    break
            t_mono, t_wall = time.monotonic(), time.time()
            last_frame_t = t_mono
            if frozen.still(frame, t_mono):
                return "dropped", (f"frozen picture: identical frames for {self.frozen_timeout_s:g} s")
            self._check_format(src, frame)
            try:
                frame, kp, resized = fit_frame(frame, kp, self.ring.max_height, self.ring.max_width)
            except Exception as e:  # a frame OpenCV cannot resize: report and skip it
                self.rep.emit(
                    {
                        "event": "source_format",
                        "source": self.rep.source,
                        "seq": self.seq,
                        "action": "skipped",
                        "detail": str(e),
                    }
                )
                continue
            self.resized += resized
            self.seq += 1
            self.ring.write(frame, self.seq, t_mono, t_wall, kp)
            self.frames_this_open += 1
            self.frames_total += 1
            if self.max_frames is not None and self.frames_total >= self.max_frames:
                self.stop_detail = f"max_frames={self.max_frames} written"
                self.stop.signalled = True
            self._maybe_stats(t_mono)
        return "stop", ""

    def _check_format(self, src: Any, frame: np.ndarray) -> None:
        fmt = (getattr(src, "input_format", None), frame.shape)
        if fmt == self.format:
            return
        first = self.format is None
        self.format = fmt
        raw = fmt[0] or (frame.shape, str(frame.dtype))
        fits = frame.shape[0] <= self.ring.max_height and frame.shape[1] <= self.ring.max_width
        action = "as is" if fits else (f"resized to fit {self.ring.max_width}x{self.ring.max_height}")
        if not first:
            log.warning(
                "capture %s: frame format changed mid-stream to %s %s (%s)", self.rep.source, raw[0], raw[1], action
            )
        self.rep.emit(
            {
                "event": "source_format",
                "source": self.rep.source,
                "seq": self.seq + 1,
                "shape": list(raw[0]),
                "dtype": raw[1],
                "changed": not first,
                "action": "converted to RGB, " + action,
                "t_wall": time.time(),
            }
        )

    def _maybe_stats(self, now: float) -> None:
        if self.stats_interval_s is None or now - self._stats_t < self.stats_interval_s:
            return
        fps = (self.frames_total - self._stats_n) / max(1e-9, now - self._stats_t)
        self.rep.emit(
            {
                "event": "capture_stats",
                "source": self.rep.source,
                "seq": self.seq,
                "fps": round(fps, 2),
                "frames": self.frames_total,
                "resized": self.resized,
                "status_dropped": self.rep.dropped,
                "t_wall": time.time(),
            }
        )
        self._stats_t, self._stats_n = now, self.frames_total


class _FrozenCheck:
    """Notices a live source repeating one picture (a cheap signature of every 8th pixel)."""

    def __init__(self, timeout_s: Optional[float]) -> None:
        self.timeout_s = timeout_s
        self.sig: Optional[bytes] = None
        self.since = 0.0

    def still(self, frame: np.ndarray, now: float) -> bool:
        if self.timeout_s is None:
            return False
        sig = frame[::8, ::8].tobytes() + bytes(str(frame.shape), "ascii")
        if sig != self.sig:
            self.sig, self.since = sig, now
            return False
        return now - self.since >= self.timeout_s


def _install_signal_handlers(stop: _Stop):
    """SIGTERM/SIGINT -> graceful stop (when running in a main thread); returns a restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        stop.signalled = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover
            pass

    def restore() -> None:
        for sig, h in previous.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError):  # pragma: no cover
                pass

    return restore
