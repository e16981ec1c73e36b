"""``clipmg-live`` / ``python run_live.py``: the live recognizer's supervisor.

It parses the command line into a ``StreamConfig`` (a bad configuration fails fast with one line),
binds the public ZeroMQ socket (through a ``Relay`` that outlives worker restarts), creates the
shared-memory frame ring (and owns it: unlinked on every exit path), starts the capture and worker
processes (``spawn``), and watches them: a crashed worker is restarted with exponential back-off and
a status message says so; SIGINT/SIGTERM, ``--duration`` or ``--max-windows`` stop everything
cleanly (children joined, then terminated, then killed; no orphan, no leaked segment). It publishes a
status heartbeat (``mg.status.<stream>``) and prints a short live summary on stderr.

With no ``--engine`` it runs the built-in demo: synthetic camera, synthetic keypoints, the synthetic
demo model (ONNX Runtime on the CPU when available), a listener printing what subscribers receive,
an annotated video, and it stops by itself after 20 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import queue
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple, Union

from clipmg.engines.artifacts import detect_artifact
from clipmg.model.errors import EXIT_BUG, EXIT_OK, EXIT_USER, run_command
from clipmg.model.logs import set_verbose

from .backoff import Backoff
from .capture import capture_main
from .config import (
    ConfigError,
    StreamConfig,
    build_parser,
    check_precision,
    check_rings_fit,
    check_source,
    config_from_args,
)
from .demo import DEMO_NOTICE, demo_model
from .listen import listen_main
from .messages import SOURCE_STATES, status_message
from .publisher import Link, PublisherError, Relay
from .redact import redact_url
from .ringbuffer import FrameRing, cleanup_segments
from .sources import spec_is_live
from .streams import stream_configs
from .web import WebError, open_web
from .worker import EXIT_FATAL, StreamJob, worker_main

log = logging.getLogger(__name__)  # its INFO lines are the supervisor speaking: "[clipmg-live] ..." (model/logs.py)

STARTUP_TIMEOUT_S = 180.0  # the worker must be ready (engine loaded) within this long
END_OF_SOURCE_TIMEOUT_S = 60.0  # after a file ends, the worker's last windows must be out within this long
# Exit statuses (model/errors.py): 0 stopped normally; 1 the run failed (the source cannot be read, the
# worker keeps crashing: not the configuration, and not a bug either; a bug also exits 1, with its log
# file named); 2 a bad configuration (a ClipmgError: one sentence, "clipmg-live: ...").
EXIT_FAILED, EXIT_CONFIG = EXIT_BUG, EXIT_USER


# ---------------------------------------------------------------------------------- engine
def demo_engine() -> str:
    """The shipped synthetic demo model (``stream/demo.py``): its ONNX export when ONNX Runtime is
    installed, else its checkpoint for the PyTorch backend; says so (``[clipmg-live] DEMO: ...``)."""

    try:
        path = demo_model()
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from e
    log.info(f"DEMO: {DEMO_NOTICE}. Pass --engine PATH for a real model.")
    return str(path)


def resolve_engine(cfg: StreamConfig) -> StreamConfig:
    if cfg.engine:
        if not Path(cfg.engine).exists():
            raise ConfigError(
                f"--engine {cfg.engine}: no such file or directory (give a .safetensors checkpoint or "
                f"a directory written by clipmg-export / clipmg-build)"
            )

        kind, _ = detect_artifact(
            Path(cfg.engine)
        )  # EngineError: not something clipmg runs (exit 2, before any process)
        check_precision(kind, cfg)
        return cfg
    return cfg.replace(engine=demo_engine(), demo=True)


# ---------------------------------------------------------------------------------- children
def die_with_parent() -> None:
    """Linux: ask the kernel to send this process SIGTERM when its parent dies (even by SIGKILL),
    so no child outlives a killed supervisor. Elsewhere a no-op (the worker also polls its parent)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Entry point of every child process: tie it to the supervisor's life, then run ``target``."""
    die_with_parent()
    target(*args, **kwargs)


def _how_it_ended(code: Optional[int]) -> str:
    """A child process's exit code in words."""
    return f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"


# ---------------------------------------------------------------------------------- bookkeeping
class TaggedQueue:
    """A status queue that adds ``tags`` (the stream's id) to every event put on it; it pickles with the
    ``multiprocessing.Queue`` it wraps, so a capture process reports for its own stream unchanged."""

    def __init__(self, queue: Any, **tags: Any) -> None:
        self.queue, self.tags = queue, tags

    def put_nowait(self, item: Dict[str, Any]) -> None:
        self.queue.put_nowait({**item, **self.tags})


@dataclass
class Tally:
    """What the supervisor knows of the worker process, from its events."""

    worker_state: str = "starting"
    worker_pid: int = 0
    model: Dict[str, str] = field(default_factory=dict)
    restarts: int = 0  # worker process restarts
    fatal: str = ""
    worker_done: bool = False
    ready_at: Optional[float] = None
    batcher: Dict[str, Any] = field(default_factory=dict)  # the engine batcher's counters (several streams)


@dataclass
class StreamSlot:
    """One stream as the supervisor keeps it: its settings, frame ring, capture process and counters."""

    cfg: StreamConfig
    frames_go: Any  # an Event: set when the worker is ready (a file's first frame is read then)
    source_ended: Any  # an Event: set when a file has ended (the worker finishes its windows)
    capture_backoff: Backoff
    stop_capture: Any = None
    ring: Any = None
    capture: Any = None
    source_state: str = "unknown"
    source_detail: str = ""
    stats: Dict[str, Any] = field(default_factory=dict)  # the worker's last worker_stats of this stream
    done_windows: int = 0  # windows of worker runs that have ended
    done_skipped: int = 0
    done_dropped: int = 0
    restarts: int = 0  # this stream's capture restarts and restarts inside the worker
    stream_done: bool = False  # the worker finished this stream (max windows, end of the file, ...)
    failed: str = ""  # why this stream was given up
    finished: bool = False  # nothing more will come from this stream
    ended_at: Optional[float] = None
    capture_restart_at: Optional[float] = None
    capture_started: float = 0.0
    fps_in: float = 0.0
    _last_seq: Tuple[float, int] = (0.0, -1)

    @property
    def id(self) -> str:
        return self.cfg.stream_id

    @property
    def windows(self) -> int:
        return self.done_windows + int(self.stats.get("windows", 0))

    @property
    def skipped(self) -> int:
        return self.done_skipped + int(self.stats.get("skipped", 0))

    def retire_worker(self) -> None:
        self.done_windows, self.done_skipped = self.windows, self.skipped
        self.done_dropped += int(self.stats.get("dropped_frames", 0))
        self.stats = {}

    def measure_fps(self, latest_seq: int) -> None:
        now = time.monotonic()
        t0, s0 = self._last_seq
        if s0 >= 0 and now > t0:
            self.fps_in = max(0, latest_seq - s0) / (now - t0)
        self._last_seq = (now, latest_seq)


class Supervisor:
    """Owns the relay, the frame rings and the child processes: one capture process a stream, one
    worker for all streams."""

    def __init__(
        self,
        cfg: Union[StreamConfig, Sequence[StreamConfig]],
        engine_factory: Optional[Callable[[StreamConfig], Any]] = None,
        quiet: bool = False,
    ) -> None:

        cfgs = [cfg] if isinstance(cfg, StreamConfig) else list(cfg)
        self.cfg, self.engine_factory, self.quiet = cfgs[0], engine_factory, quiet  # cfg: the shared settings
        self.ctx = mp.get_context("spawn")
        self.tally = Tally()
        self.status_q = self.ctx.Queue(maxsize=1000 * len(cfgs))
        c = self.cfg
        self.slots = [
            StreamSlot(
                s,
                self.ctx.Event(),
                self.ctx.Event(),
                Backoff(c.restart_backoff_s, max(c.restart_backoff_s, c.restart_backoff_max_s)),
                stop_capture=self.ctx.Event(),
            )
            for s in cfgs
        ]
        self.by_id = {s.id: s for s in self.slots}
        self.single = len(self.slots) == 1
        self.stop_worker = self.ctx.Event()
        self.stop_listener = self.ctx.Event()
        self.worker: Any = None
        self.listener: Any = None
        self.signalled = ""
        self._restart_at: Optional[float] = None
        self._backoff = Backoff(c.restart_backoff_s, max(c.restart_backoff_s, c.restart_backoff_max_s))
        self._worker_started = 0.0
        self.relay: Any = None
        self._state = "starting"
        self.config_error = ""  # why the run ended with EXIT_CONFIG (main reports it as one line)
        self.web: Any = None  # the --web view (stream/web.py)
        self.link: Any = None  # the supervisor's own Link to the relay (status messages), while running

    def _say(self, slot: StreamSlot, text: str) -> str:
        """``text`` about ``slot``, naming the stream when there are several."""
        return text if self.single else f"stream {slot.id}: {text}"

    # ------------------------------------------------------------------ processes
    def start_capture(self, slot: StreamSlot) -> None:

        c = slot.cfg
        # --source-option values override the defaults (e.g. read_timeout_s=2 for a camera that may stall)
        opts = {
            "pace": c.pace,
            "open_timeout_s": c.open_timeout_s,
            "read_timeout_s": c.read_timeout_s,
            "start_event": slot.frames_go,
            **dict(c.source_options),
        }
        slot.stop_capture = self.ctx.Event()  # fresh: a killed process may have left the old one unusable
        reports = TaggedQueue(self.status_q, stream=slot.id)  # its events name its stream
        slot.capture = self.ctx.Process(
            target=_child,
            name="clipmg-capture" if self.single else f"clipmg-capture-{slot.id}",
            daemon=False,
            args=(capture_main, c.source, slot.ring.name, reports, slot.stop_capture),
            kwargs=opts,
        )
        slot.capture.start()
        slot.capture_started = time.monotonic()

    def start_worker(self, link_endpoint: str) -> None:

        t = self.tally
        jobs = []
        for slot in self.slots:
            if slot.finished:
                continue
            c = slot.cfg
            if t.restarts and c.record:  # a restarted worker must not overwrite the first video
                p = Path(c.record)
                c = c.replace(record=str(p.with_name(f"{p.stem}.restart{t.restarts}{p.suffix}")))
            remaining = None if c.max_windows is None else max(1, c.max_windows - slot.windows)
            if self.relay is not None:  # its skip counter starts over; a gap before its first window is the restart's
                self.relay.tally_of(slot.id).new_run()
            jobs.append(
                StreamJob(
                    c,
                    slot.ring.name,
                    from_oldest=t.restarts == 0 and not spec_is_live(c.source),
                    source_ended=slot.source_ended,
                    max_windows=remaining,
                )
            )
        self.stop_worker = self.ctx.Event()
        self.worker = self.ctx.Process(
            target=_child,
            name="clipmg-worker",
            daemon=False,
            args=(worker_main, jobs, self.status_q, self.stop_worker),
            kwargs=dict(
                link_endpoint=link_endpoint,
                engine_factory=self.engine_factory,
                frames_endpoint=self.web.frames_endpoint if self.web is not None else None,
            ),
        )
        self.worker.start()
        self._worker_started = time.monotonic()
        t.worker_pid = self.worker.pid
        t.worker_state = "loading"

    def start_listener(
        self, endpoint: str, server_key: Optional[str], client_keys: Optional[Tuple[bytes, bytes]] = None
    ) -> None:

        self.listener = self.ctx.Process(
            target=_child,
            name="clipmg-listen",
            daemon=False,
            args=(listen_main, endpoint, ["mg"], self.stop_listener),
            kwargs=dict(server_key=server_key, client_keys=client_keys),
        )
        self.listener.start()

    # ------------------------------------------------------------------ events
    def drain(self) -> None:

        while True:
            try:
                ev = self.status_q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            self.on_event(ev)

    def on_event(self, ev: Dict[str, Any]) -> None:
        t = self.tally
        kind = ev.get("event")
        slot = self.by_id.get(str(ev.get("stream")), self.slots[0] if self.single else None)
        if kind == "source_state":
            if slot is None:
                return
            slot.source_state, slot.source_detail = str(ev.get("state")), str(ev.get("detail", ""))
            if slot.source_state in ("reconnecting", "stalled"):  # 'failed'/'ended' end the stream: said once, there
                log.info(
                    self._say(slot, f"source {ev.get('source')}: {slot.source_state}")
                    + (f" ({slot.source_detail})" if slot.source_detail else "")
                )
        elif ev.get("pid") not in (None, t.worker_pid):
            return  # a late event from a worker that was replaced
        elif kind == "worker_state":
            t.worker_state = str(ev.get("state"))
            if t.worker_state == "ready":
                t.model = dict(ev.get("model", {}))
                for s in self.slots:
                    s.frames_go.set()  # a file starts playing now, from its first frame
                if self._state in ("stopping", "stopped", "failed") or all(
                    s.source_state == "failed" for s in self.slots
                ):
                    return  # the run is ending (no source could be opened): nothing to announce
                if t.ready_at is None:
                    t.ready_at = time.monotonic()
                    cache = "frame + pose cache" if ev.get("pose_cache") else "frame cache"
                    stops = (
                        ""
                        if self.cfg.duration_s is None
                        else (f"; stops by itself after {self.cfg.duration_s:g} s (Ctrl-C stops it sooner)")
                    )
                    streams = (
                        ""
                        if self.single
                        else f"; {len(self.slots)} streams ({', '.join(s.id for s in self.slots)}) in one worker, "
                        f"engine calls batched within {self.cfg.batch_budget_ms:g} ms, "
                        f"{ev.get('pose_pool')} pose estimations at once"
                    )
                    log.info(
                        f"model ready: {t.model.get('preset')} ({t.model.get('backend')}, {t.model.get('precision')}, "
                        f"{cache}){streams}; publishing on {self.endpoint}{stops}"
                    )
                else:
                    log.info("worker restarted and ready")
                self._state = "running"
            elif t.worker_state == "failed" and ev.get("fatal"):
                t.fatal = str(ev.get("message", "the worker cannot start"))
        elif kind == "worker_stats":
            if slot is not None:
                slot.stats = {k: v for k, v in ev.items() if k not in ("event", "pid", "t_wall", "stream", "batcher")}
            if "batcher" in ev:
                t.batcher = dict(ev["batcher"])
        elif kind == "stream_state" and slot is not None:  # a stream restarted (or given up) inside the worker
            slot.restarts = max(slot.restarts, int(ev.get("restarts", 0)))
            if ev.get("state") == "failed":
                self._give_up(slot, str(ev.get("message", "it kept failing")))
            else:
                self.status(slot, "restarting", str(ev.get("message", "")))
        elif kind == "stream_done" and slot is not None:
            slot.stream_done = True
            if ev.get("reason") == "done":
                self._finish(slot)  # its --max-windows are out: its capture stops
        elif kind == "worker_done":
            t.worker_done = True
            why = str(ev.get("reason") or "")
            self.signalled = f"--max-windows {self.cfg.max_windows} reached" if why == "done" else why

    # ------------------------------------------------------------------ status
    def status(self, slot: StreamSlot, state: Optional[str] = None, message: str = "") -> None:

        t, s = self.tally, slot.stats
        worker = {
            "pid": t.worker_pid,
            "alive": bool(self.worker is not None and self.worker.is_alive()),
            "state": t.worker_state,
            "annotation_dropped": int(s.get("annotation_dropped", 0)),
        }
        if not self.single:
            worker.update(streams=len(self.slots), batcher=t.batcher)
        windows, skipped = self.counts(slot)
        tally = None if self.relay is None else self.relay.tally_of(slot.id)
        msg = status_message(
            stream=slot.id,
            state=state or ("failed" if slot.failed else self._state),
            t_publish=time.time(),
            source={
                "state": slot.source_state if slot.source_state in SOURCE_STATES else "unknown",
                "spec": redact_url(slot.cfg.source),
            },
            fps_in=slot.fps_in,
            fps_pose=float(s.get("fps_pose", 0.0)),
            fps_out=float(s.get("fps_out", 0.0)),
            windows=windows,
            skipped=skipped,
            dropped_frames=slot.done_dropped + int(s.get("dropped_frames", 0)),
            dropped_messages=int(s.get("dropped_messages", 0)),
            restarts=t.restarts + slot.restarts,
            worker=worker,
            model=t.model,
            last_window=s.get("last_window") or None,
            latency_ms=(s.get("last_window") or {}).get("latency_ms"),
            message=message or slot.failed,
            restart_gap=None if tally is None else tally.restart_gap,
        )
        self.link.publish("status", slot.id, msg, self.cfg.fmt)

    def counts(self, slot: StreamSlot) -> Tuple[int, int]:
        """``(windows, skipped)`` of ``slot`` published so far: counted by the relay from the window
        messages themselves (exact, also for a worker that was killed before it could report);
        ``skipped`` includes the windows lost while a crashed worker restarted."""
        rt = None if self.relay is None else self.relay.tally_of(slot.id)
        if rt is None or not rt.windows:
            return slot.windows, slot.skipped
        return rt.windows, rt.skipped + rt.restart_gap

    def summary_line(self) -> str:
        if self.single:
            slot = self.slots[0]
            s = slot.stats
            windows, skipped = self.counts(slot)
            last = s.get("last_window") or {}
            lat = (last.get("latency_ms") or {}).get("capture_to_publish")
            return (
                f"{self._state}: source {slot.source_state}, in {slot.fps_in:.1f} fps, "
                f"pose {float(s.get('fps_pose', 0)):.1f}/s, out {float(s.get('fps_out', 0)):.2f} win/s, "
                f"windows {windows}, skipped {skipped}, restarts {self.tally.restarts + slot.restarts}"
                + (f", last {last.get('label')!s} ({lat:.0f} ms)" if lat is not None else "")
            )
        parts = []
        total = [0, 0]
        for slot in self.slots:
            windows, skipped = self.counts(slot)
            total[0] += windows
            total[1] += skipped
            lat = ((slot.stats.get("last_window") or {}).get("latency_ms") or {}).get("capture_to_publish")
            parts.append(
                f"{slot.id} {slot.source_state if not slot.failed else 'failed'} {slot.fps_in:.0f} fps {windows} win"
                + (f" {lat:.0f} ms" if lat is not None else "")
            )
        restarts = self.tally.restarts + sum(s.restarts for s in self.slots)
        return (
            f"{self._state}: {len(self.slots)} streams, windows {total[0]}, skipped {total[1]}, restarts {restarts}"
            f" | {'; '.join(parts)}"
        )

    # ------------------------------------------------------------------ watching
    def watch_worker(self, link_endpoint: str) -> Optional[int]:
        """Restart a dead worker with back-off; returns an exit status when the run must end."""
        t, c = self.tally, self.cfg
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self.start_worker(link_endpoint)
            return None
        if self.worker.is_alive():
            if t.ready_at is None and now - self._worker_started > STARTUP_TIMEOUT_S:
                log.info(f"the worker did not become ready within {STARTUP_TIMEOUT_S:.0f} s")
                return EXIT_FAILED
            if now - self._worker_started > 30.0:  # it ran fine for a while: back-off starts over
                self._backoff.reset()
            return None
        self.worker.join(0.1)
        code = self.worker.exitcode
        self.drain()

        if t.fatal or code == EXIT_FATAL:
            return self._refuse(f"cannot run: {t.fatal or 'the worker reported a configuration error'}")
        if t.worker_done and code == 0:
            return self._outcome()
        for slot in self.slots:
            slot.retire_worker()
        if t.restarts >= c.max_restarts:
            log.info(f"the worker crashed {t.restarts + 1} times; giving up")
            return EXIT_FAILED
        delay = self._backoff.take()
        t.restarts += 1
        msg = f"worker (pid {t.worker_pid}) {_how_it_ended(code)}; restarting in {delay:.1f} s (restart {t.restarts})"
        log.info(msg)
        self._state = "restarting"
        t.worker_state = "restarting"
        for slot in self.slots:
            if not slot.finished:
                self.status(slot, "restarting", msg)
        self._restart_at = now + delay
        return None

    def _refuse(self, why: str) -> int:
        """End the run as a bad configuration: ``main`` says ``why`` in one line (exit 2)."""
        self.config_error = why
        return EXIT_CONFIG

    def _outcome(self) -> int:
        """The exit status once every stream has finished: 1 when one of them failed."""
        return EXIT_FAILED if any(s.failed for s in self.slots) else EXIT_OK

    def _give_up(self, slot: StreamSlot, why: str) -> None:
        """``slot`` will publish no more: said once, in its status, and its capture stops."""
        if slot.finished:
            return
        slot.failed = why
        log.info(self._say(slot, why))
        self._finish(slot)
        self.status(slot, "failed", why)

    def _finish(self, slot: StreamSlot) -> None:
        slot.finished = True
        if slot.stop_capture is not None:
            slot.stop_capture.set()

    def watch_capture(self, slot: StreamSlot) -> None:
        """Finish a stream whose source failed or ended (once its last windows are out); restart a
        capture process that died without saying so (killed, e.g. by the OOM killer) with back-off: it
        continues the ring's numbering."""
        if slot.finished:
            return
        c = slot.cfg
        now = time.monotonic()
        if slot.capture_restart_at is not None:
            if now >= slot.capture_restart_at:
                slot.capture_restart_at = None
                self.start_capture(slot)
            return
        if slot.capture.is_alive():
            if now - slot.capture_started > 30.0:  # it ran fine for a while: back-off starts over
                slot.capture_backoff.reset()
            return
        slot.capture.join(0.1)
        self.drain()
        state, detail = slot.source_state, slot.source_detail
        if state == "failed":
            self._give_up(slot, f"cannot read the source: {detail or 'it failed to open'}")
            return
        if state == "ended":
            # The file is over but the worker may still have windows to close (and, for a clip
            # shorter than one window, its whole-clip window): it says stream_done when it has.
            if slot.ended_at is None:
                slot.ended_at = now
                slot.source_ended.set()
                log.info(
                    self._say(slot, "source ended" + (f": {detail}" if detail else "") + "; finishing the last windows")
                )
            if slot.stream_done or self.tally.worker_done or self.worker is None:
                self._finish(slot)
            elif now - slot.ended_at > END_OF_SOURCE_TIMEOUT_S:
                log.info(
                    self._say(
                        slot,
                        f"the worker did not finish within {END_OF_SOURCE_TIMEOUT_S:.0f} s of the end of the source",
                    )
                )
                self._finish(slot)
            return
        if state == "stopped":
            log.info(self._say(slot, f"source {state}" + (f": {detail}" if detail else "")))
            self._finish(slot)
            return
        how = _how_it_ended(slot.capture.exitcode)
        if slot.restarts >= c.max_restarts:
            self._give_up(
                slot, f"the capture process (pid {slot.capture.pid}) {how}; {slot.restarts} restarts so far: giving up"
            )
            return
        delay = slot.capture_backoff.take()
        slot.restarts += 1
        msg = f"capture (pid {slot.capture.pid}) {how}; restarting in {delay:.1f} s (restart {slot.restarts})"
        log.info(self._say(slot, msg))
        slot.source_state, slot.source_detail = "reconnecting", msg
        self.status(slot, "restarting", msg)
        slot.capture_restart_at = now + delay

    # ------------------------------------------------------------------ shutdown
    def stop_all(self, listener: bool = True) -> None:
        """Ask the children to stop, then join; terminate and kill whatever is left."""
        pairs = [(self.stop_worker, self.worker)] + [(s.stop_capture, s.capture) for s in self.slots]
        if listener:
            pairs.append((self.stop_listener, self.listener))
        for ev, _ in pairs:
            if ev is not None:
                ev.set()
        procs = [p for _, p in pairs if p is not None]
        deadline = time.monotonic() + 5.0
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                if not (p is self.worker and self.tally.worker_state == "loading"):  # loading: expected
                    log.info(f"{p.name} (pid {p.pid}) did not stop in time: terminating it")
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        self.drain()

    @property
    def endpoint(self) -> str:
        return getattr(self, "_endpoint", self.cfg.endpoint)

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:

        c = self.cfg
        listener_keys: Optional[Tuple[bytes, bytes]] = None
        if (
            (c.listen or c.web is not None) and c.curve_secret_key and c.curve_allow_dir
        ):  # ours must pass the allow-list
            import zmq

            listener_keys = zmq.curve_keypair()
        try:
            relay = Relay(
                c.endpoint,
                sndhwm=c.sndhwm,
                allow_remote=c.allow_remote,
                curve_secret_key=c.curve_secret_key,
                curve_allow_dir=c.curve_allow_dir,
                curve_allow_keys=[listener_keys[0]] if listener_keys else (),
            )
        except PublisherError as e:
            return self._refuse(str(e))
        self._endpoint = relay.endpoint
        self.relay = relay
        rings: List[str] = []
        restore = self._install_signals()
        try:
            with relay, Link(relay.link_endpoint) as link, contextlib.ExitStack() as extras:
                self.link = link
                try:
                    check_rings_fit([s.cfg for s in self.slots])
                    for slot in self.slots:
                        slot.ring = extras.enter_context(FrameRing.create(c.ring_slots, c.max_height, c.max_width))
                        rings.append(slot.ring.name)
                except (ConfigError, OSError) as e:  # too big for /dev/shm, or no shared memory at all
                    return self._refuse(f"cannot create the shared-memory frame ring: {e}")
                if c.web is not None:
                    try:
                        self.web = extras.enter_context(
                            open_web(
                                c,
                                _connectable(relay.endpoint),
                                relay.pub.public_key if c.curve_secret_key and relay.pub else None,
                                listener_keys,
                            )
                        )
                    except WebError as e:
                        return self._refuse(str(e))
                    log.info(f"web view: {redact_url(self.web.url())}")
                self.start_worker(relay.link_endpoint)
                for slot in self.slots:
                    self.start_capture(slot)
                if c.listen:
                    key = relay.pub.public_key.decode() if c.curve_secret_key and relay.pub else None
                    self.start_listener(_connectable(relay.endpoint), key, listener_keys)
                for slot in self.slots:
                    self.status(slot, "starting", "starting capture and worker")
                code = self._loop(relay.link_endpoint)
                self._state = "stopping"
                for slot in self.slots:
                    self.status(slot, "stopping", self.signalled or "")
                self.stop_all(listener=False)
                self._state = "stopped" if code == EXIT_OK else "failed"
                for slot in self.slots:
                    self.status(slot, self._state, self.summary_line() if self.single else "")
                time.sleep(0.3)  # let the relay forward the last status (and a listener print it)
                # a configuration error, or a run that failed before publishing anything, is said in one
                # line (above), not followed by a line of zero counters
                if code == EXIT_OK or (code == EXIT_FAILED and sum(self.counts(s)[0] for s in self.slots) > 0):
                    log.info(f"{self.summary_line()}" + (f" ({self.signalled})" if self.signalled else ""))
                for slot in self.slots:
                    if slot.cfg.record and Path(slot.cfg.record).is_file():
                        log.info(f"annotated video: {slot.cfg.record}")
                return code
        finally:
            self.stop_all()
            cleanup_segments(rings)  # the owner unlinked them already; this is the belt and braces
            restore()

    def _loop(self, link_endpoint: str) -> int:
        c, t = self.cfg, self.tally
        last_beat = last_line = 0.0
        while True:
            time.sleep(0.05)
            self.drain()
            now = time.monotonic()
            if self.signalled and not t.worker_done:
                return EXIT_OK
            code = self.watch_worker(link_endpoint)
            if code is not None:
                return code
            for slot in self.slots:
                self.watch_capture(slot)
            if t.worker_done or all(s.finished for s in self.slots):
                return self._outcome()
            if t.ready_at is not None and c.duration_s is not None and now - t.ready_at >= c.duration_s:
                self.signalled = f"--duration {c.duration_s:g} s reached"
                return EXIT_OK
            if now - last_beat >= c.heartbeat_s:
                last_beat = now
                for slot in self.slots:
                    slot.measure_fps(slot.ring.latest_seq())
                    if not slot.finished:
                        self.status(slot)
            if now - last_line >= 5.0 and t.ready_at is not None and not self.quiet:
                last_line = now
                log.info(self.summary_line())

    def _install_signals(self) -> Callable[[], None]:
        previous = {}

        def handler(signum: int, _frame: Any) -> None:
            self.signalled = f"received {signal.Signals(signum).name}"

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


def _connectable(endpoint: str) -> str:
    """Where a local client connects to reach ``endpoint`` (a wildcard bind is reached on loopback)."""
    for wild in ("0.0.0.0", "*", "[::]"):
        endpoint = endpoint.replace(f"//{wild}:", "//127.0.0.1:")
    return endpoint


# ---------------------------------------------------------------------------------- entry point
def main(
    argv: Optional[Sequence[str]] = None,
    *,
    out: TextIO = sys.stderr,
    engine_factory: Optional[Callable[[StreamConfig], Any]] = None,
) -> int:
    """``clipmg-live`` (and ``run_live.py``), under the convention of ``model/errors.py``; what the
    supervisor says (``[clipmg-live] ...``) and the error line go to ``out``. Returns

    - 0: stopped normally (a signal, ``--duration``, ``--max-windows``, the end of a file);
    - 1: the run failed (the source cannot be read, the worker keeps crashing), said on the lines
      before; or an internal error: one line naming the log file that holds its traceback;
    - 2: a bad configuration, found before any process starts or by the worker when it loads the
      engine and pose backend (a ``ClipmgError``): one line, ``clipmg-live: <what to change>``.
    """
    return run_command("clipmg-live", lambda: _main(argv, engine_factory), out=out)


def _main(argv: Optional[Sequence[str]], engine_factory: Optional[Callable[[StreamConfig], Any]]) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    cfg = config_from_args(args).validate()  # ConfigError: one line, exit 2
    set_verbose(cfg.verbose)
    cfgs = stream_configs(cfg, args)  # one a stream (--source given several times, or --streams FILE)
    for c in cfgs:
        try:
            check_source(c)
        except ConfigError as e:
            raise ConfigError(f"stream {c.stream_id}: {e}" if cfg.streams_file or len(cfgs) > 1 else str(e)) from None
    engine = resolve_engine(cfg)
    cfgs = [c.replace(engine=engine.engine, demo=engine.demo) for c in cfgs]
    sup = Supervisor(cfgs, engine_factory, quiet=args.quiet)
    code = sup.run()
    if code == EXIT_CONFIG:
        raise ConfigError(sup.config_error or "the configuration cannot run")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
