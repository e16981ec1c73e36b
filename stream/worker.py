"""The worker process: newest frames -> pose -> cached frame encodings -> window head -> ZeroMQ.

``worker_main`` is a process entry point (Pupil-launchable style). It attaches to the frame ring
the supervisor created, loads the engine and the pose backend, and then loops:

1. ``k_now``: the newest pose sample whose frame is in the ring (``ring.latest_seq() // Δp``);
2. if a window has closed (``Schedule.plan``), it runs the newest closed one, skipping (and
   counting) the older ones it is too late for; missing samples of that window are computed
   first. A frame already overwritten in the ring makes its windows unrunnable: skipped too;
3. otherwise it works ahead: pose (and, for RGB samples, the frame encoder) on the next sample of
   the upcoming window, so that a closing window needs only its last samples and the head.

Pose runs in its own thread (``PoseAhead``, on by default): it estimates the samples of the upcoming
window in order as their frames arrive, while the main thread runs the frame encoder and the head.
Pose backends and engines spend their time in native code that releases the GIL, so on two cores the
two halves overlap instead of taking turns (docs/benchmarks.md measures both).

Each window is published as ``mg.window.<stream>``; debounced gesture starts/ends as
``mg.event.<stream>``. Lifecycle and counters go to the supervisor through ``status_queue`` as
dicts ``{"event": "worker_state" | "worker_stats" | "worker_done", ...}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import msgspec.structs
import numpy as np

from clipmg.engines import load_engine
from clipmg.engines.artifacts import detect_artifact
from clipmg.engines.base import Engine
from clipmg.model.errors import ClipmgError
from clipmg.model.layouts import extract_layout
from clipmg.model.logs import WORKER_STYLE, setup_logging

from .config import StreamConfig
from .display import Annotator, Overlay, rate
from .events import Debouncer, GestureEvent
from .messages import encode, event_message, topic, window_message
from .pose import PoseBackendError, create_pose_backend
from .pose_ahead import _PENDING, PoseAhead  # noqa: F401 - PoseAhead: importable from here as before
from .pose_base import PoseBackend, PoseResult
from .publisher import Link, Publisher, PublisherError, Sender
from .quiet import native_stderr_off
from .redact import redact_text, url_secrets
from .ringbuffer import Frame, FrameRing
from .webhub import FrameSink
from .window import Decision, Sample, Schedule, StreamingWindows, WindowResult, clip_window

log = logging.getLogger(__name__)

EXIT_FATAL = 3  # the worker cannot run with this configuration: the supervisor must not restart it


class FatalWorkerError(ClipmgError, RuntimeError):
    """A configuration problem (engine, pose backend, schedule): restarting cannot help."""


class StatusQueue(Protocol):
    """Where the worker's status events go (a ``multiprocessing.Queue`` of the supervisor)."""

    def put_nowait(self, item: Dict[str, Any]) -> None: ...


class Flag(Protocol):
    """A flag another process sets (a ``multiprocessing.Event``)."""

    def is_set(self) -> bool: ...


class _Report:
    """Non-blocking status events to the supervisor (dropped if the queue is full or gone)."""

    def __init__(self, status_queue: Optional[StatusQueue]) -> None:
        self.queue = status_queue

    def __call__(self, event: str, **fields: Any) -> None:
        if self.queue is None:
            return
        try:
            self.queue.put_nowait({"event": event, "pid": os.getpid(), "t_wall": time.time(), **fields})
        except Exception:  # noqa: BLE001 - a full or closed queue must not stop the worker
            pass


def load_worker_engine(cfg: StreamConfig) -> Engine:
    """The engine ``cfg.engine`` names, warmed up; ``FatalWorkerError`` with one sentence otherwise."""
    if not cfg.engine:
        raise FatalWorkerError("no engine given: pass --engine PATH (a checkpoint or an exported engine directory)")
    try:
        kind, _ = detect_artifact(Path(cfg.engine))
        opts: Dict[str, Any] = {}
        if kind == "onnx":
            opts["threads"] = cfg.engine_threads
            opts["precision"] = cfg.precision
        elif cfg.precision != "auto":
            raise FatalWorkerError(
                f"--precision {cfg.precision} applies to exported ONNX engines; a {kind} engine "
                f"keeps the precision it was built with"
            )
        if kind != "onnx" and cfg.device != "cpu":
            opts["device"] = cfg.device
        return load_engine(cfg.engine, **opts)
    except FatalWorkerError:
        raise
    except ClipmgError as e:  # a bad artifact or option (EngineError, ...): restarting cannot help
        raise FatalWorkerError(str(e)) from None
    except OSError as e:  # the file the user named cannot be read (permissions, a vanished file)
        if e.filename is None:
            raise
        raise FatalWorkerError(f"cannot read {e.filename}: {e.strerror}") from None


class Worker:
    """The worker's loop over one ring, one engine, one pose backend and one sender."""

    def __init__(
        self,
        cfg: StreamConfig,
        engine: Engine,
        pose: Union[PoseBackend, Sequence[PoseBackend]],
        ring: FrameRing,
        sender: Sender,
        report: _Report,
        annotator: Optional[Annotator] = None,
        max_windows: Optional[int] = None,
        from_oldest: bool = False,
    ) -> None:
        mc = engine.config
        # one pose backend, or one a pose thread (--pose-workers); the first also serves end-of-file windows
        self.poses: List[PoseBackend] = list(pose) if isinstance(pose, (list, tuple)) else [pose]  # type: ignore[list-item]
        self.cfg, self.engine, self.pose, self.ring, self.sender = cfg, engine, self.poses[0], ring, sender
        self.report, self.annotator, self.max_windows = report, annotator, max_windows
        self.schedule = Schedule.from_config(mc.clip, cfg.stride, cfg.pose_every)
        self.sw = StreamingWindows(engine, mc, self.schedule, pose_cache=cfg.pose_cache)
        self.names = list(engine.class_names)
        self.decision = Decision(tuple(self.names), cfg.top_k, cfg.threshold, tuple(cfg.background), cfg.no_person)
        # A file is played from its first frame (the capture waits for this worker to be ready), so
        # the first window starts at the oldest frame still in the ring; a camera is joined at its
        # newest frame.
        self.from_oldest = from_oldest
        self.identity = {k: str(v) for k, v in engine.identity.items()}
        self.debouncer = Debouncer(
            cfg.event_threshold,
            cfg.event_hysteresis,
            cfg.event_min_duration_s,
            cfg.event_release_s,
            background=cfg.background,
        )
        self.next_window: Optional[int] = None
        self.k_next = 0  # next sample to compute when working ahead
        self.lost: set = set()  # samples whose frame was gone from the ring
        self.windows = self.skipped = self.dropped_frames = self.pose_samples = 0
        self._acc: Dict[str, float] = {"pose": 0.0, "encode": 0.0, "pose_samples": 0, "rgb_encoded": 0}
        self._sample_times: Deque[float] = deque(maxlen=64)
        self._window_times: Deque[float] = deque(maxlen=16)
        self.last: Dict[str, Any] = {}
        self._overlay = Overlay(banner="synthetic demo model" if cfg.demo else "")
        self._stats_t = time.monotonic()
        self._lock = threading.Lock()  # the counters the pose thread updates
        self._wanted = -1  # the window start last passed to the pose thread
        self._annot_lock = threading.Lock()  # pose threads hand annotated frames over in sample order
        self._annot_pending: Dict[int, Optional[Tuple[Frame, PoseResult]]] = {}
        self._annot_next: Optional[int] = None
        estimates = [functools.partial(self._pose, backend=b) for b in self.poses]
        self.ahead = (
            PoseAhead(
                estimates, lambda: self.schedule.newest_sample(self.ring.latest_seq()), limit=self.schedule.pose_frames
            )
            if cfg.pose_thread
            else None
        )

    def close(self) -> None:
        """Stop the pose threads (before the pose backends are closed); record what they left."""
        if self.ahead is not None:
            self.ahead.close()
        self._flush_annotations()

    # ------------------------------------------------------------------ loop
    def step(self) -> bool:
        """One unit of work; False when there was nothing to do (the caller may sleep)."""
        k_now = self.schedule.newest_sample(self.ring.latest_seq())
        if k_now < 0:
            return False
        s = self.schedule
        if self.next_window is None:
            self.next_window = self._start(k_now)
            with self._annot_lock:
                self._annot_next = self.k_next  # the first sample the pose threads will estimate
        nw = self.next_window
        target, skipped = s.plan(k_now, nw)
        if self.ahead is not None:
            start = s.window_start(nw if target is None else target)
            if start != self._wanted:  # only when it moves: each call wakes the pose thread
                self._wanted = start
                self.ahead.want(start)
        if target is not None:
            self.skipped += skipped
            if skipped:  # frames kept for skipped windows are never encoded
                self.sw.drop_pending(s.window_start(target))
            self.next_window = target + 1
            self.k_next = max(self.k_next, s.window_start(target))
            if self._fill(target):
                self._run_window(target)
            else:
                self.skipped += 1
            self.k_next = max(self.k_next, s.window_end(target) + 1)
            self.lost = {k for k in self.lost if k >= s.window_start(self.next_window)}
            return True
        self.k_next = max(self.k_next, s.window_start(nw))
        if self.k_next <= k_now:
            if self.ahead is not None:
                smp = self.ahead.poll(self.k_next)
                if smp is _PENDING:
                    return False  # the pose thread is on it: nothing for this thread to do yet
            else:
                smp = self._pose(self.k_next)
            if smp is None:
                self.lost.add(self.k_next)
            else:
                batch = self.cfg.rgb_batch == "window"
                self._add([smp], defer_rgb=batch)
                if batch and self.k_next >= s.window_rgb_samples(nw)[-1]:
                    self._encode_pending()  # the window's new frames, one call (the head needs them next)
            self.k_next += 1
            return True
        return False

    def _start(self, k_now: int) -> int:
        """Where this worker's first window is (returned): at the oldest frame still in the ring (a
        file played from its start) or the next window boundary (a live source joined now). Frames
        of a file that precede the first window are counted as dropped (none when the capture waited
        for us)."""
        s = self.schedule
        if self.from_oldest:
            first_seq, oldest, _ = self._ring_span()
            first = s.first_window_from(-(-oldest // s.pose_every))
            lost = s.sample_seq(s.window_start(first)) - first_seq
            if lost > 0:
                with self._lock:
                    self.dropped_frames += lost
        else:
            first = s.first_window_from(k_now)
        self.k_next = s.window_start(first)
        return first

    def _ring_span(self) -> Tuple[int, int, int]:
        """Frame numbers: the first this ring ever held, the oldest still in it, the newest (-1: none)."""
        latest = self.ring.latest_seq()
        first = max(0, latest - self.ring.frames_written + 1)
        return first, max(first, latest - self.ring.slots + 1), latest

    def drained(self) -> bool:
        """No window can close any more from the frames in the ring (the end of a file)."""
        if self.next_window is None:
            return True
        k_now = self.schedule.newest_sample(self.ring.latest_seq())
        return self.schedule.last_closed_window(k_now) < self.next_window

    def _fill(self, w: int) -> bool:
        """Compute window ``w``'s missing samples (their RGB frames in one batch); False if a frame is gone."""
        s = self.schedule
        if any(s.window_start(w) <= k <= s.window_end(w) for k in self.lost):
            return False
        pose_missing, rgb_missing = self.sw.missing(w)
        samples = []
        for k in sorted(set(pose_missing) | set(rgb_missing)):
            smp = self.ahead.take(k) if self.ahead is not None else self._pose(k)
            if smp is None:
                self.lost.add(k)
                return False
            samples.append(smp)
        self._add(samples)
        return True

    def _pose(self, k: int, backend: Optional[PoseBackend] = None) -> Optional[Sample]:
        """Read sample ``k``'s frame and run a pose backend on it (``None``: the frame is gone).
        Runs in a pose thread when there is one, with that thread's ``backend``."""
        seq = self.schedule.sample_seq(k)
        frame = self.ring.read(seq)
        if frame is None:
            with self._lock:
                self.dropped_frames += 1
            if self.annotator is not None:
                self._annotate_in_order(k, None)
            return None
        res = self._timed_pose(frame, backend)
        with self._lock:
            self._sample_times.append(frame.t_mono)
        if self.annotator is not None:
            self._annotate_in_order(k, (frame, res))
        kp = extract_layout(res.keypoints, self.engine.config.pose.layout)  # (J, 3) source pixels
        return Sample(k, frame.image, kp, seq, frame.t_mono, frame.t_wall, bool(res.person))

    def _add(self, samples: List[Sample], defer_rgb: bool = False) -> None:
        t0 = time.perf_counter()
        n = self.sw.add_samples(samples, defer_rgb=defer_rgb)
        if n:
            self._count_encode(n, time.perf_counter() - t0)

    def _encode_pending(self) -> None:
        t0 = time.perf_counter()
        n = self.sw.encode_pending()
        if n:
            self._count_encode(n, time.perf_counter() - t0)

    def _count_encode(self, n: int, seconds: float) -> None:
        with self._lock:
            self._acc["encode"] += seconds
            self._acc["rgb_encoded"] += n

    # ------------------------------------------------------------------ windows
    def _run_window(self, w: int) -> None:
        """Window ``w`` through the one window implementation (``StreamingWindows.run``), then the
        debouncer and the publisher."""
        self._encode_pending()  # frames kept for one call with the window's last new frame
        cache = self.sw.pose_cache
        before = sum(cache.computed) if cache is not None else 0
        t0 = time.perf_counter()
        res = self.sw.run(w, self.decision)
        # the skeleton-stage inputs this window computed (the rest came from the pose-branch cache)
        stages = None if cache is None else sum(cache.computed) - before
        self._finish_window(res, t0, pose_stage_inputs=stages)

    def _finish_window(
        self, res: WindowResult, t0: float, sampling: Optional[str] = None, pose_stage_inputs: Optional[int] = None
    ) -> None:
        t1 = time.perf_counter()
        events = self.debouncer.update(float(res.inputs.t_wall[-1]), res.inputs.window, res.answer.probs)
        self._publish_window(res, t0, t1, sampling, pose_stage_inputs)
        for ev in events:
            self._publish_event(ev)

    def _publish_window(
        self, res: WindowResult, t0: float, t1: float, sampling: Optional[str], pose_stage_inputs: Optional[int]
    ) -> None:
        cfg, inputs, ans = self.cfg, res.inputs, res.answer
        with self._lock:  # this window's share of the work; the pose thread may already be on the next
            acc, self._acc = self._acc, {"pose": 0.0, "encode": 0.0, "pose_samples": 0, "rgb_encoded": 0}
        latency = {
            "pose": acc["pose"] * 1e3,
            "encode": acc["encode"] * 1e3,
            "head": (t1 - t0) * 1e3,
            "publish": 0.0,
            "capture_to_publish": 0.0,
        }
        msg = window_message(
            stream=cfg.stream_id,
            window=inputs.window,
            pose_seqs=inputs.pose_seqs,
            rgb_seqs=inputs.rgb_seqs,
            t_wall=inputs.t_wall,
            stride=cfg.stride,
            pose_every=cfg.pose_every,
            t_publish=time.time(),
            latency_ms=latency,
            computed={
                "pose_samples": int(acc["pose_samples"]),
                "rgb_encoded": int(acc["rgb_encoded"]),
                **({} if pose_stage_inputs is None else {"pose_stage_inputs": pose_stage_inputs}),
            },
            person=res.person,
            person_fraction=res.person_fraction,
            topk=ans.top,
            label=ans.label,
            p=ans.p,
            model=self.identity,
            skipped=self.skipped,
            answered=res.answered,
            logits=None if (ans.logits is None or not cfg.include_logits) else ans.logits.tolist(),
            sampling=sampling or "stream",
        )
        now = time.monotonic()
        msg.latency_ms.publish = round((time.perf_counter() - t1) * 1e3, 3)
        msg.latency_ms.capture_to_publish = round((now - float(inputs.t_mono[-1])) * 1e3, 3)
        self.sender.send(topic("window", cfg.stream_id), encode(msg, cfg.fmt))
        self.windows += 1
        self._window_times.append(now)
        top = ans.top
        self.last = {
            "window": inputs.window,
            "label": ans.label,
            "p": ans.p,
            "top": [[n, q] for _, n, q in top],
            "person": res.person,
            "latency_ms": msgspec.structs.asdict(msg.latency_ms),  # the status queue carries plain maps
        }
        self._overlay = Overlay(
            top=[(n, q) for _, n, q in top],
            label=ans.label,
            person=res.person,
            latency_ms=msg.latency_ms.capture_to_publish,
            window=inputs.window,
            banner=self._overlay.banner,
            event=self._overlay.event,
        )

    def end_of_source(self) -> None:
        """The file ended and every window that could close has run. A file too short for one window
        (fewer than ``T_p * Δp`` frames) still gets an answer: one window over the whole clip with the
        evaluation sampling (``clip_samples``), as ``clipmg-predict --whole-clip`` computes it."""
        if self.windows > 0:
            return
        _, first, latest = self._ring_span()
        if latest < 0:
            return
        if self.ahead is not None:  # pose backends are not thread-safe: the pose thread stops first
            self.ahead.close()
            self.ahead = None
        frames: Dict[int, Frame] = {}
        for seq in range(first, latest + 1):
            f = self.ring.read(seq)
            if f is not None:
                frames[seq] = f
        if not frames:
            return
        t0 = time.perf_counter()
        res = clip_window(
            self.engine,
            self.engine.config,
            sorted(frames),
            self._clip_sample,
            frames.__getitem__,
            self.decision,
            self.next_window or 0,
        )
        self._finish_window(res, t0, sampling="whole_clip")

    def _clip_sample(self, frame: Frame) -> Tuple[np.ndarray, bool]:
        """Pose on one frame of a whole-clip window: ``(keypoints (J, 3) source pixels, person)``."""
        res = self._timed_pose(frame)
        return extract_layout(res.keypoints, self.engine.config.pose.layout), bool(res.person)

    def _timed_pose(self, frame: Frame, backend: Optional[PoseBackend] = None) -> PoseResult:
        """A pose backend (the first by default) on one frame, its time and count added to this
        window's share."""
        t0 = time.perf_counter()
        res = (backend or self.pose)(frame)
        with self._lock:
            self._acc["pose"] += time.perf_counter() - t0
            self._acc["pose_samples"] += 1
            self.pose_samples += 1
        return res

    def _publish_event(self, ev: GestureEvent) -> None:
        cfg = self.cfg
        msg = event_message(
            stream=cfg.stream_id,
            kind=ev.kind,
            label=ev.label,
            window=ev.window,
            window_start=ev.window_start,
            t=ev.t,
            t_start=ev.t_start,
            confidence=ev.confidence,
            t_publish=time.time(),
            reason=ev.reason,
        )
        self.sender.send(topic("event", cfg.stream_id), encode(msg, cfg.fmt))
        self._overlay = dataclasses.replace(self._overlay, event=ev.label if ev.kind == "start" else "")

    def finish(self) -> None:
        """End a gesture in progress (the stream stops)."""
        for ev in self.debouncer.flush(time.time(), self.next_window or 0):
            self._publish_event(ev)
        self._flush_annotations()

    def _flush_annotations(self) -> None:
        """Record the frames still waiting for an earlier one that will never come (the run ends)."""
        if self.annotator is None:
            return
        with self._annot_lock:
            pending, self._annot_pending = self._annot_pending, {}
            for k in sorted(pending):
                item = pending[k]
                if item is not None:
                    self._annotate(*item)
            if pending:
                self._annot_next = max(pending) + 1

    # ------------------------------------------------------------------ side outputs
    def _annotate_in_order(self, k: int, item: Optional[Tuple[Frame, PoseResult]]) -> None:
        """Annotate sample ``k`` (``None``: its frame was gone) once every earlier sample has been:
        several pose threads finish out of order, the recording must not. Samples the pose threads
        passed over (a worker that fell behind) are not waited for once 4 later ones are ready."""
        with self._annot_lock:
            if self._annot_next is None:
                self._annot_next = k
            if k < self._annot_next:
                return  # too late: later frames are already in the video
            self._annot_pending[k] = item
            while self._annot_pending:
                if self._annot_next not in self._annot_pending:
                    if len(self._annot_pending) < 4:
                        break
                    self._annot_next = min(self._annot_pending)
                ready = self._annot_pending.pop(self._annot_next)
                self._annot_next += 1
                if ready is not None:
                    self._annotate(*ready)

    def _annotate(self, frame: Frame, res: PoseResult) -> None:
        if len(self._sample_times) < 8:  # the video's frame rate is measured on the first samples
            return
        fps = rate(list(self._sample_times))
        self.annotator.fps = self.annotator.fps if self.annotator.written else max(1.0, fps)  # type: ignore[union-attr]
        ov = dataclasses.replace(self._overlay, fps_in=fps, fps_out=rate(list(self._window_times)))
        self.annotator.submit(frame.image, res.keypoints, ov)  # type: ignore[union-attr]

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            sample_times, dropped, posed = list(self._sample_times), self.dropped_frames, self.pose_samples
        return {
            "windows": self.windows,
            "skipped": self.skipped,
            "dropped_frames": dropped,
            "dropped_messages": int(self.sender.dropped),
            "pose_samples": posed,
            "encoded": self.sw.encoded,
            "heads": self.sw.heads,
            "fps_pose": rate(sample_times),
            "fps_out": rate(list(self._window_times)),
            "last_window": self.last,
            "torn_reads": int(getattr(self.ring, "torn_reads", 0)),
            "model": self.identity,
            # frames the annotator (--display/--record/--web) dropped because it was busy: never the worker's
            "annotation_dropped": int(self.annotator.dropped) if self.annotator is not None else 0,
        }

    def maybe_report(self, every_s: float) -> None:
        now = time.monotonic()
        if now - self._stats_t >= every_s:
            self._stats_t = now
            self.report("worker_stats", **self.stats())

    def done(self) -> bool:
        return self.max_windows is not None and self.windows >= self.max_windows


# ---------------------------------------------------------------------------------- entry point
def worker_main(
    cfg: StreamConfig,
    ring_name: str,
    status_queue: Optional[StatusQueue],
    stop_event: Optional[Flag],
    *,
    link_endpoint: Optional[str] = None,
    max_windows: Optional[int] = None,
    engine_factory: Optional[Callable[[StreamConfig], Engine]] = None,
    from_oldest: bool = False,
    source_ended: Optional[Flag] = None,
    frames_endpoint: Optional[str] = None,
) -> None:
    """Run the worker until ``stop_event`` is set, SIGTERM, the parent dies or ``max_windows`` are published.

    ``link_endpoint``: the supervisor's relay (``Relay.link_endpoint``); ``None`` binds a PUB socket at
    ``cfg.endpoint`` itself (standalone use). ``engine_factory(cfg)``: build the engine another way
    (e.g. a wrapper); default ``load_engine(cfg.engine)``. Exits with status ``EXIT_FATAL`` (3) on a
    configuration error, after reporting it: restarting would not help.
    ``from_oldest``: start at the oldest frame in the ring (a file played from its start) instead of
    the newest. ``source_ended`` (an Event): set by the supervisor when a file has ended; the worker
    then runs every window that can still close (and, for a file too short for one window, one
    whole-clip window), reports ``worker_done`` with reason ``"source ended"`` and exits.
    ``frames_endpoint``: the web view's frame channel (``web.py``); annotated JPEGs go there, at most
    ``cfg.web_fps`` a second, never blocking.
    """
    if not cfg.verbose:  # the pose library's native start-up messages; clipmg's own lines still show
        native_stderr_off()
    setup_logging("clipmg-live", style=WORKER_STYLE)  # its own process: warnings and errors, time-stamped
    report = _Report(status_queue)
    stop = {"flag": False}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    parent = os.getppid()
    report("worker_state", state="loading")
    try:
        _run(
            cfg,
            ring_name,
            report,
            stop_event,
            stop,
            parent,
            link_endpoint,
            max_windows,
            engine_factory,
            from_oldest,
            source_ended,
            frames_endpoint,
        )
    except FatalWorkerError as e:
        message = _scrub(str(e), cfg.source)
        report("worker_state", state="failed", fatal=True, message=message)
        if status_queue is None:  # standalone; under a supervisor it prints this line itself, once
            log.error("%s", message)
        sys.exit(EXIT_FATAL)
    except Exception as e:
        report("worker_state", state="failed", fatal=False, message=_scrub(f"{type(e).__name__}: {e}", cfg.source))
        log.error("worker crashed:\n%s", _scrub(traceback.format_exc(), cfg.source))
        sys.exit(1)  # not re-raised: multiprocessing would print the traceback again, unscrubbed


def _scrub(text: str, source: str) -> str:
    """``text`` with the source's credentials masked (an error message may quote the URL)."""
    return redact_text(text, url_secrets(source))


def _run(
    cfg: StreamConfig,
    ring_name: str,
    report: _Report,
    stop_event: Optional[Flag],
    stop: Dict[str, bool],
    parent: int,
    link_endpoint: Optional[str],
    max_windows: Optional[int],
    engine_factory: Optional[Callable[[StreamConfig], Engine]],
    from_oldest: bool = False,
    source_ended: Optional[Flag] = None,
    frames_endpoint: Optional[str] = None,
) -> None:
    _limit_threads(cfg.engine_threads)
    engine = (engine_factory or load_worker_engine)(cfg)
    _limit_threads(cfg.engine_threads)  # again: a PyTorch engine has imported torch only now
    group = engine.config.clip.group
    if cfg.stride % group or cfg.stride < group:
        raise FatalWorkerError(f"--stride {cfg.stride} must be a multiple of {group} for this model")
    poses: List[PoseBackend] = []
    try:
        for _ in range(cfg.pose_workers if cfg.pose_thread else 1):  # one backend a pose thread
            poses.append(create_pose_backend(cfg.pose_backend, **dict(cfg.pose_options)))
    except PoseBackendError as e:
        for p in poses:
            p.close()
        raise FatalWorkerError(str(e)) from None
    try:
        ring = FrameRing.attach(ring_name)
    except (FileNotFoundError, ValueError) as e:
        for p in poses:
            p.close()
        raise FatalWorkerError(f"cannot attach frame ring {ring_name!r}: {e}") from None
    try:
        sender = (
            Link(link_endpoint)
            if link_endpoint
            else Publisher(
                cfg.endpoint,
                sndhwm=cfg.sndhwm,
                allow_remote=cfg.allow_remote,
                curve_secret_key=cfg.curve_secret_key,
                curve_allow_dir=cfg.curve_allow_dir,
            )
        )
    except PublisherError as e:
        ring.close()
        for p in poses:
            p.close()
        raise FatalWorkerError(str(e)) from None
    sink = FrameSink(frames_endpoint, cfg.stream_id, cfg.web_fps) if frames_endpoint else None
    annot = (
        Annotator(cfg.record, cfg.display, title=f"clipmg {cfg.stream_id}", sink=sink)
        if (cfg.record or cfg.display or sink)
        else None
    )
    with contextlib.ExitStack() as backends, ring, sender:
        for p in poses:
            backends.callback(p.close)  # what each backend's __exit__ does; the protocol promises close()
        w: Optional[Worker] = None
        try:
            w = Worker(cfg, engine, poses, ring, sender, report, annot, max_windows, from_oldest=from_oldest)
            report(
                "worker_state",
                state="ready",
                model=w.identity,
                classes=len(w.names),
                pose_cache=w.sw.pose_cache is not None,
            )
            why = _loop(w, stop_event, stop, parent, annot, source_ended)
            w.finish()
            report("worker_stats", **w.stats())
            if why != "stopped":  # max_windows reached or the display window closed: the run is over
                report("worker_done", windows=w.windows, reason=why)
        finally:
            if w is not None:
                w.close()  # the pose thread stops before the pose backend closes
            if annot is not None:
                annot.close()
    report("worker_state", state="stopped")


def _limit_threads(n: int) -> None:
    """Cap the engine's CPU threads (torch now; ONNX Runtime reads OMP_NUM_THREADS-style settings
    from its session options, which the backend builds)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch = sys.modules.get("torch")  # set only where PyTorch is loaded: the ONNX Runtime path never imports it
    if torch is not None:
        torch.set_num_threads(n)


def _loop(
    w: Worker,
    stop_event: Optional[Flag],
    stop: Dict[str, bool],
    parent: int,
    annot: Optional[Annotator],
    source_ended: Optional[Flag] = None,
) -> str:
    """Run until asked to stop ('stopped'), ``max_windows`` are published ('done'), the user
    closes the display window ('display closed') or the file has ended and its last window ran
    ('source ended')."""
    last_check = 0.0
    while not stop["flag"]:
        if w.done():
            return "done"
        busy = w.step()
        if not busy and source_ended is not None and source_ended.is_set() and w.drained():
            w.end_of_source()
            return "source ended"
        now = time.monotonic()
        if now - last_check > 0.05:  # cheap checks, at most 20 times a second
            last_check = now
            if (stop_event is not None and stop_event.is_set()) or os.getppid() != parent:
                break
            w.maybe_report(1.0)
            if annot is not None and not annot.show():
                return "display closed"
        if not busy:
            time.sleep(0.002)
    return "stopped"
