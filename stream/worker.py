"""The worker process: newest frames -> pose -> cached frame encodings -> window head -> ZeroMQ.

``worker_main`` is a process entry point (Pupil-launchable style). It loads the engine once and
serves one stream or many (``StreamJob``: a stream's settings and the frame ring the supervisor
created for it). Each stream has a ``StreamRunner``: its pose backends, ring, sender and ``Worker``,
whose loop runs in a thread of its own:

1. ``k_now``: the newest pose sample whose frame is in the ring (``ring.latest_seq() // Δp``);
2. if a window has closed (``Schedule.plan``), it runs the newest closed one, skipping (and
   counting) the older ones it is too late for; missing samples of that window are computed
   first. A frame already overwritten in the ring makes its windows unrunnable: skipped too;
3. otherwise it works ahead: pose (and, for RGB samples, the frame encoder) on the next sample of
   the upcoming window, so that a closing window needs only its last samples and the head.

Pose runs in its own thread (``PoseAhead``, on by default): it estimates the samples of the upcoming
window in order as their frames arrive, while the stream's thread runs the frame encoder and the
head. Pose backends and engines spend their time in native code that releases the GIL, so on two
cores the two halves overlap instead of taking turns (docs/benchmarks.md measures both). With
several streams, their engine calls go through one ``EngineBatcher`` (``batcher.py``: calls of
streams that are due together become one batched call) and their pose estimations share a pool of
``--pose-pool`` slots (``PoseSlots``); a stream that fails is reopened alone, with back-off, while
the others go on (docs/streams.md). The process's main thread watches the streams, shows the
display and reports their counters.

Each window is published as ``mg.window.<stream>``; debounced gesture starts/ends as
``mg.event.<stream>``. Lifecycle and counters go to the supervisor through ``status_queue`` as
dicts ``{"event": "worker_state" | "worker_stats" | "stream_state" | "stream_done" | "worker_done",
...}``; a stream's events carry its id (``"stream"``).
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
from dataclasses import dataclass
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

from .backoff import Backoff
from .batcher import EngineBatcher
from .config import StreamConfig, check_precision
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
# How often an idle stream thread and its pose thread look at the ring for a new frame (the capture does
# not signal one). Alone, every 2 ms; with several streams, every 8 ms: their threads share one GIL,
# and 2 threads a stream waking 500 times a second hold back the threads with work (docs/streams.md).
POLL_S, POLL_MANY_S = 0.002, 0.008


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

    def __init__(self, status_queue: Optional[StatusQueue], **tags: Any) -> None:
        self.queue, self.tags = status_queue, tags  # tags: e.g. stream=<id> on every event of one stream

    def __call__(self, event: str, **fields: Any) -> None:
        if self.queue is None:
            return
        try:
            self.queue.put_nowait({"event": event, "pid": os.getpid(), "t_wall": time.time(), **self.tags, **fields})
        except Exception:  # noqa: BLE001 - a full or closed queue must not stop the worker
            pass


def load_worker_engine(cfg: StreamConfig) -> Engine:
    """The engine ``cfg.engine`` names, warmed up; ``FatalWorkerError`` with one sentence otherwise."""
    if not cfg.engine:
        raise FatalWorkerError("no engine given: pass --engine PATH (a checkpoint or an exported engine directory)")
    try:
        kind, _ = detect_artifact(Path(cfg.engine))
        opts: Dict[str, Any] = {}
        check_precision(kind, cfg)  # ConfigError: one sentence
        if kind == "onnx":
            opts["threads"] = cfg.engine_threads
            opts["precision"] = cfg.precision
        elif cfg.precision != "auto":  # a checkpoint on the CUDA engine: its autocast type
            opts["precision"] = cfg.precision
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
        poll_s: float = 0.002,
    ) -> None:
        mc = engine.config
        self.poll_s = poll_s  # how often an idle loop looks for new frames (the ring does not signal them)
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
        self._lock = threading.Lock()  # the counters the pose thread updates
        self._wanted = -1  # the window start last passed to the pose thread
        self._annot_lock = threading.Lock()  # pose threads hand annotated frames over in sample order
        self._annot_pending: Dict[int, Optional[Tuple[Frame, PoseResult]]] = {}
        self._annot_next: Optional[int] = None
        estimates = [functools.partial(self._pose, backend=b) for b in self.poses]
        self.ahead = (
            PoseAhead(
                estimates,
                lambda: self.schedule.newest_sample(self.ring.latest_seq()),
                limit=self.schedule.pose_frames,
                poll_s=poll_s,
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

    def done(self) -> bool:
        return self.max_windows is not None and self.windows >= self.max_windows


# ---------------------------------------------------------------------------------- the streams of one worker
@dataclass(frozen=True)
class StreamJob:
    """One stream a worker process serves: its settings and its frame ring (what the supervisor hands
    over; it pickles across ``spawn``). ``from_oldest``: a file played from its start begins at the
    oldest frame in the ring (a live source at the newest); ``source_ended``: set by the supervisor
    when the file has ended; ``max_windows``: this stream stops after publishing that many."""

    cfg: StreamConfig
    ring_name: str
    from_oldest: bool = False
    source_ended: Optional[Flag] = None
    max_windows: Optional[int] = None


class PoseSlots:
    """The pose pool of a worker: at most ``size`` pose estimations run at once, whichever streams they
    serve (each stream keeps pose backends of its own: a tracking backend such as MediaPipe carries
    one video's state from frame to frame, and a replay backend reads one stream's file)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._sem = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.running = self.peak = 0  # estimations running now, and the most ever at once

    def wrap(self, backend: PoseBackend) -> "PooledPose":
        return PooledPose(backend, self)

    def __enter__(self) -> None:
        self._sem.acquire()
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1
        self._sem.release()


class PooledPose:
    """A stream's pose backend, run in one of the pool's slots."""

    def __init__(self, backend: PoseBackend, slots: PoseSlots) -> None:
        self.backend, self.slots = backend, slots
        self.name = backend.name

    def __call__(self, frame: Frame) -> PoseResult:
        with self.slots:
            return self.backend(frame)

    def close(self) -> None:
        self.backend.close()


def pose_pool_size(cfg: StreamConfig) -> int:
    """``--pose-pool``, or the CPU cores (at least the pose threads one stream asks for)."""
    return cfg.pose_pool or max(os.cpu_count() or 2, cfg.pose_workers if cfg.pose_thread else 1)


class StreamRunner:
    """One stream inside the worker process: its pose backends, ring, sender, annotator and ``Worker``,
    its windows run in a thread of its own. A stream that fails (its pose backend raises, its frames
    cannot be read) is reopened with back-off, fresh, on the same ring, while the other streams go on;
    after ``max_restarts`` it is given up (``stream_state`` ``failed``)."""

    def __init__(
        self,
        job: StreamJob,
        engine: Callable[[], Engine],
        slots: PoseSlots,
        status_queue: Optional[StatusQueue],
        link_endpoint: Optional[str],
        frames_endpoint: Optional[str],
        single: bool,
    ) -> None:
        self.job, self.cfg, self._engine, self.slots = job, job.cfg, engine, slots
        self.link_endpoint, self.frames_endpoint, self.single = link_endpoint, frames_endpoint, single
        self.report = _Report(status_queue, stream=job.cfg.stream_id)
        c = job.cfg
        self.backoff = Backoff(c.restart_backoff_s, max(c.restart_backoff_s, c.restart_backoff_max_s))
        self.worker: Optional[Worker] = None
        self.annot: Optional[Annotator] = None
        self.thread: Optional[threading.Thread] = None
        self.stop_flag = threading.Event()
        self.reason = ""  # why the stream's loop ended: done, source ended, display closed, stopped
        self.error = ""  # why it failed (one line), when it did
        self.finished = False  # for good: ended, gave up, or stopped
        self.restarts = 0
        self.restart_at: Optional[float] = None
        self.windows_before = 0  # windows published by the earlier runs of this stream
        self._stack: Optional[contextlib.ExitStack] = None
        self._close_lock = threading.Lock()
        self._client: Any = None
        self._started_at = 0.0

    # ------------------------------------------------------------------ pieces
    def open(self, from_oldest: bool) -> None:
        """Create the stream's pose backends, attach its ring, connect its sender, build its ``Worker``;
        ``FatalWorkerError`` (one sentence) for what no restart can mend."""
        cfg, job = self.cfg, self.job
        stack = contextlib.ExitStack()
        try:
            poses: List[PoseBackend] = []
            try:
                for _ in range(cfg.pose_workers if cfg.pose_thread else 1):  # one backend a pose thread
                    backend = create_pose_backend(cfg.pose_backend, **dict(cfg.pose_options))
                    stack.callback(backend.close)  # what each backend's __exit__ does; the protocol promises close()
                    poses.append(self.slots.wrap(backend))
            except PoseBackendError as e:
                raise FatalWorkerError(self._named(str(e))) from None
            try:
                ring = stack.enter_context(FrameRing.attach(job.ring_name))
            except (FileNotFoundError, ValueError) as e:
                raise FatalWorkerError(self._named(f"cannot attach frame ring {job.ring_name!r}: {e}")) from None
            try:
                sender: Sender = (
                    Link(self.link_endpoint)
                    if self.link_endpoint
                    else Publisher(
                        cfg.endpoint,
                        sndhwm=cfg.sndhwm,
                        allow_remote=cfg.allow_remote,
                        curve_secret_key=cfg.curve_secret_key,
                        curve_allow_dir=cfg.curve_allow_dir,
                    )
                )
            except PublisherError as e:
                raise FatalWorkerError(str(e)) from None
            stack.enter_context(sender)  # type: ignore[arg-type]
            sink = FrameSink(self.frames_endpoint, cfg.stream_id, cfg.web_fps) if self.frames_endpoint else None
            if cfg.record or cfg.display or sink:
                self.annot = Annotator(cfg.record, cfg.display, title=f"clipmg {cfg.stream_id}", sink=sink)
            self._client = self._engine()
            remaining = None if job.max_windows is None else max(1, job.max_windows - self.windows_before)
            self.worker = Worker(
                cfg,
                self._client,
                poses,
                ring,
                sender,
                self.report,
                self.annot,
                remaining,
                from_oldest=from_oldest,
                poll_s=POLL_S if self.single else POLL_MANY_S,
            )
        except BaseException:
            self._stack = stack
            self.close()
            raise
        self._stack = stack

    def _named(self, message: str) -> str:
        return message if self.single else f"stream {self.cfg.stream_id}: {message}"

    def close(self) -> None:
        """Stop the pose threads, then close the annotator, the backends, the ring and the sender (once)."""
        with self._close_lock:
            w, annot, stack, client = self.worker, self.annot, self._stack, self._client
            self.worker = self.annot = self._stack = self._client = None
        try:
            if w is not None:
                w.close()  # the pose threads stop before the pose backends close
        finally:
            if annot is not None:
                annot.close()
            if stack is not None:
                stack.close()
            if client is not None and hasattr(client, "release"):
                client.release()  # the batcher waits for this stream no more

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        self.stop_flag = threading.Event()
        self.reason = self.error = ""
        self._started_at = time.monotonic()
        self.thread = threading.Thread(target=self._serve, name=f"clipmg-stream-{self.cfg.stream_id}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        w = self.worker
        assert w is not None
        try:
            why = _loop(w, self.stop_flag, self.job.source_ended)
            self.reason = self.reason or why  # stop("display closed") said why before the loop saw the flag
            w.finish()
            self.report("worker_stats", **w.stats())
        except Exception as e:  # noqa: BLE001 - this stream fails alone; the main thread decides what next
            self.error = _scrub(f"{type(e).__name__}: {e}", self.cfg.source)
            log.error("stream %s failed:\n%s", self.cfg.stream_id, _scrub(traceback.format_exc(), self.cfg.source))
        finally:
            self.windows_before += w.windows
            self.close()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, reason: str = "stopped") -> None:
        if not self.reason:
            self.reason = reason
        self.stop_flag.set()

    def join(self, timeout: float = 10.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def tick(self, now: float, restart: bool = True) -> None:
        """Called by the main thread: notice a stream that ended or failed; restart a failed one (plan
        it with ``restart``; the worker is stopping without)."""
        if self.finished:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                try:
                    self.open(from_oldest=False)
                except FatalWorkerError as e:
                    self._give_up(str(e))
                    return
                self.start()
            return
        if self.alive() or self.thread is None:
            if self.alive() and now - self._started_at > 30.0:  # it ran fine for a while: back-off starts over
                self.backoff.reset()
            return
        if not self.error:  # its loop ended: max windows, the end of the file, the display closed
            self.finished = True
            if self.reason != "stopped":
                self.report("stream_done", windows=self.windows_before, reason=self.reason)
            return
        if not restart:
            return
        if self.restarts >= self.cfg.max_restarts:
            self._give_up(f"failed {self.restarts + 1} times; the last time: {self.error}")
            return
        self.restarts += 1
        delay = self.backoff.take()
        message = f"stream {self.cfg.stream_id} failed ({self.error}); restarting it in {delay:.1f} s"
        log.warning("%s", message)
        self.report("stream_state", state="restarting", message=message, restarts=self.restarts)
        self.restart_at = now + delay

    def _give_up(self, why: str) -> None:
        self.finished, self.reason = True, "failed"
        self.report("stream_state", state="failed", message=why, restarts=self.restarts)

    def stats(self) -> Optional[Dict[str, Any]]:
        w = self.worker
        return None if w is None else w.stats()


# ---------------------------------------------------------------------------------- entry point
def worker_main(
    jobs: Union[StreamJob, Sequence[StreamJob]],
    status_queue: Optional[StatusQueue],
    stop_event: Optional[Flag],
    *,
    link_endpoint: Optional[str] = None,
    engine_factory: Optional[Callable[[StreamConfig], Engine]] = None,
    frames_endpoint: Optional[str] = None,
) -> None:
    """Serve ``jobs`` (one stream or many) until ``stop_event`` is set, SIGTERM, the parent dies or
    every stream has finished (its ``max_windows`` published, its file ended).

    One engine serves every stream: with several, their frame-encoder calls and window heads are
    gathered into batches (``batcher.py``, at most ``--batch-budget-ms`` of waiting); each stream's
    windows run in a thread of their own, with pose backends of their own whose work shares a pool of
    ``--pose-pool`` slots. ``link_endpoint``: the supervisor's relay (``Relay.link_endpoint``); ``None``
    binds a PUB socket at the stream's endpoint itself (standalone use, one stream).
    ``engine_factory(cfg)``: build the engine another way (e.g. a wrapper); default
    ``load_engine(cfg.engine)``. Exits with status ``EXIT_FATAL`` (3) on a configuration error, after
    reporting it: restarting would not help. A stream whose file ended reports ``stream_done`` with
    reason ``"source ended"`` once its last windows (for a file too short for one window, one
    whole-clip window) are out; when every stream is done the worker reports ``worker_done``.
    ``frames_endpoint``: the web view's frame channel (``web.py``); annotated JPEGs go there, at most
    ``cfg.web_fps`` a second per stream, never blocking.
    """
    jobs = [jobs] if isinstance(jobs, StreamJob) else list(jobs)
    cfg = jobs[0].cfg
    if not cfg.verbose:  # the pose library's native start-up messages; clipmg's own lines still show
        native_stderr_off()
    setup_logging("clipmg-live", style=WORKER_STYLE)  # its own process: warnings and errors, time-stamped
    report = _Report(status_queue)
    stop = {"flag": False}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    parent = os.getppid()
    report("worker_state", state="loading")
    sources = [j.cfg.source for j in jobs]  # what an error message must not quote
    try:
        _run(jobs, report, status_queue, stop_event, stop, parent, link_endpoint, engine_factory, frames_endpoint)
    except FatalWorkerError as e:
        message = _scrub(str(e), *sources)
        report("worker_state", state="failed", fatal=True, message=message)
        if status_queue is None:  # standalone; under a supervisor it prints this line itself, once
            log.error("%s", message)
        sys.exit(EXIT_FATAL)
    except Exception as e:
        report("worker_state", state="failed", fatal=False, message=_scrub(f"{type(e).__name__}: {e}", *sources))
        log.error("worker crashed:\n%s", _scrub(traceback.format_exc(), *sources))
        sys.exit(1)  # not re-raised: multiprocessing would print the traceback again, unscrubbed


def _scrub(text: str, *sources: str) -> str:
    """``text`` with the sources' credentials masked (an error message may quote a URL)."""
    return redact_text(text, [secret for source in sources for secret in url_secrets(source)])


def _run(
    jobs: List[StreamJob],
    report: _Report,
    status_queue: Optional[StatusQueue],
    stop_event: Optional[Flag],
    stop: Dict[str, bool],
    parent: int,
    link_endpoint: Optional[str],
    engine_factory: Optional[Callable[[StreamConfig], Engine]],
    frames_endpoint: Optional[str] = None,
) -> None:
    cfg = jobs[0].cfg  # the engine's settings are the same for every stream (stream/streams.py)
    single = len(jobs) == 1
    if not single and not link_endpoint:
        raise FatalWorkerError("a worker without the supervisor's relay serves one stream")
    _limit_threads(cfg.engine_threads)
    engine = (engine_factory or load_worker_engine)(cfg)
    _limit_threads(cfg.engine_threads)  # again: a PyTorch engine has imported torch only now
    group = engine.config.clip.group
    for job in jobs:
        if job.cfg.stride % group or job.cfg.stride < group:
            name = "" if single else f"stream {job.cfg.stream_id}: "
            raise FatalWorkerError(f"{name}--stride {job.cfg.stride} must be a multiple of {group} for this model")
    batcher = None if single else EngineBatcher(engine, cfg.batch_budget_ms / 1e3, cfg.max_batch)
    slots = PoseSlots(pose_pool_size(cfg))
    runners = [
        StreamRunner(
            job,
            (lambda: engine) if batcher is None else batcher.client,
            slots,
            status_queue,
            link_endpoint,
            frames_endpoint,
            single,
        )
        for job in jobs
    ]
    try:
        for r in runners:
            r.open(r.job.from_oldest)
        first = runners[0].worker
        assert first is not None
        report(
            "worker_state",
            state="ready",
            model=first.identity,
            classes=len(first.names),
            pose_cache=first.sw.pose_cache is not None,
            streams=[r.cfg.stream_id for r in runners],
            pose_pool=slots.size,
        )
        for r in runners:
            r.start()
        why = _supervise(runners, stop_event, stop, parent, report, batcher)
        for r in runners:
            r.stop()
        for r in runners:
            r.join()
            r.tick(time.monotonic(), restart=False)  # a stream that ended just now reports it
        if why != "stopped":  # every stream finished (max windows, files ended, the display closed)
            report("worker_done", windows=sum(r.windows_before for r in runners), reason=why)
    finally:
        for r in runners:
            r.stop()
        for r in runners:
            r.join()
            r.close()
        if batcher is not None:
            batcher.close()
    report("worker_state", state="stopped")


def _supervise(
    runners: List[StreamRunner],
    stop_event: Optional[Flag],
    stop: Dict[str, bool],
    parent: int,
    report: _Report,
    batcher: Optional[EngineBatcher],
) -> str:
    """The worker's main thread: watch the streams (restart a failed one, notice one that ended), show
    the display, report each stream's counters once a second. Returns 'stopped' when asked to stop,
    else why the streams finished ('done': ``max_windows`` reached, 'source ended', 'display closed')."""
    last_stats = time.monotonic()
    while True:
        if stop["flag"] or (stop_event is not None and stop_event.is_set()) or os.getppid() != parent:
            return "stopped"
        now = time.monotonic()
        for r in runners:
            r.tick(now)
            if r.annot is not None and not r.finished and not r.annot.show():  # OpenCV windows: main thread
                r.stop("display closed")
        if all(r.finished for r in runners):
            reasons = {r.reason for r in runners}
            return reasons.pop() if len(reasons) == 1 else "every stream finished"
        if now - last_stats >= 1.0:
            last_stats = now
            for r in runners:
                s = r.stats()
                if s is not None:
                    r.report("worker_stats", **s, **({"batcher": batcher.stats()} if batcher is not None else {}))
        time.sleep(0.02)


def _limit_threads(n: int) -> None:
    """Cap the engine's CPU threads (torch now; ONNX Runtime reads OMP_NUM_THREADS-style settings
    from its session options, which the backend builds)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch = sys.modules.get("torch")  # set only where PyTorch is loaded: the ONNX Runtime path never imports it
    if torch is not None:
        torch.set_num_threads(n)


def _loop(w: Worker, stop: threading.Event, source_ended: Optional[Flag] = None) -> str:
    """One stream's windows, until asked to stop ('stopped'), ``max_windows`` are published ('done')
    or the file has ended and its last window ran ('source ended')."""
    while not stop.is_set():
        if w.done():
            return "done"
        busy = w.step()
        if not busy:
            if source_ended is not None and source_ended.is_set() and w.drained():
                w.end_of_source()
                return "source ended"
            time.sleep(w.poll_s)
    return "stopped"
