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
from typing import Any, Callable, Dict, Optional, Sequence, TextIO, Tuple

from clipmg.engines.artifacts import detect_artifact
from clipmg.model.errors import EXIT_BUG, EXIT_OK, EXIT_USER, run_command
from clipmg.model.logs import set_verbose

from .backoff import Backoff
from .capture import capture_main
from .config import ConfigError, StreamConfig, build_parser, check_ring_fits, check_source, config_from_args
from .demo import DEMO_NOTICE, demo_model
from .listen import listen_main
from .messages import SOURCE_STATES, status_message
from .publisher import Link, PublisherError, Relay
from .redact import redact_url
from .ringbuffer import FrameRing, cleanup_segments
from .sources import spec_is_live
from .web import WebError, open_web
from .worker import EXIT_FATAL, worker_main

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
        if cfg.precision != "auto":
            if kind != "onnx":
                raise ConfigError(
                    f"--precision {cfg.precision} applies to an exported ONNX engine; {cfg.engine} is "
                    f"a {kind}, which runs at its own precision (export a checkpoint with "
                    f"clipmg-export --int8)"
                )
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
@dataclass
class Tally:
    """What the supervisor knows, from the children's events and the ring."""

    source_state: str = "unknown"
    source_detail: str = ""
    worker_state: str = "starting"
    worker_pid: int = 0
    model: Dict[str, str] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)  # the current worker's last worker_stats
    done_windows: int = 0  # windows of workers that have exited
    done_skipped: int = 0
    done_dropped: int = 0
    restarts: int = 0
    fatal: str = ""
    worker_done: bool = False
    ready_at: Optional[float] = None
    fps_in: float = 0.0
    _last_seq: Tuple[float, int] = (0.0, -1)

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
    """Owns the relay, the ring and the child processes of one stream."""

    def __init__(
        self,
        cfg: StreamConfig,
        engine_factory: Optional[Callable[[StreamConfig], Any]] = None,
        quiet: bool = False,
    ) -> None:

        self.cfg, self.engine_factory, self.quiet = cfg, engine_factory, quiet
        self.ctx = mp.get_context("spawn")
        self.tally = Tally()
        self.status_q = self.ctx.Queue(maxsize=1000)
        self.stop_capture = self.ctx.Event()
        self.stop_worker = self.ctx.Event()
        self.stop_listener = self.ctx.Event()
        self.frames_go = self.ctx.Event()  # set when the worker is ready: a file's first frame is read then
        self.source_ended = self.ctx.Event()  # set when a file has ended: the worker finishes its windows
        self._ended_at: Optional[float] = None
        self.capture: Any = None
        self.worker: Any = None
        self.listener: Any = None
        self.signalled = ""
        self._restart_at: Optional[float] = None
        self._backoff = Backoff(cfg.restart_backoff_s, max(cfg.restart_backoff_s, cfg.restart_backoff_max_s))
        self._worker_started = 0.0
        self.relay: Any = None
        self._capture_restart_at: Optional[float] = None
        self._capture_backoff = Backoff(cfg.restart_backoff_s, max(cfg.restart_backoff_s, cfg.restart_backoff_max_s))
        self._capture_started = 0.0
        self._state = "starting"
        self.config_error = ""  # why the run ended with EXIT_CONFIG (main reports it as one line)
        self.web: Any = None  # the --web view (stream/web.py)

    # ------------------------------------------------------------------ processes
    def start_capture(self, ring_name: str) -> None:

        c = self.cfg
        # --source-option values override the defaults (e.g. read_timeout_s=2 for a camera that may stall)
        opts = {
            "pace": c.pace,
            "open_timeout_s": c.open_timeout_s,
            "read_timeout_s": c.read_timeout_s,
            "start_event": self.frames_go,
            **dict(c.source_options),
        }
        self.stop_capture = self.ctx.Event()  # fresh: a killed process may have left the old one unusable
        self.capture = self.ctx.Process(
            target=_child,
            name="clipmg-capture",
            daemon=False,
            args=(capture_main, c.source, ring_name, self.status_q, self.stop_capture),
            kwargs=opts,
        )
        self.capture.start()
        self._capture_started = time.monotonic()

    def start_worker(self, ring_name: str, link_endpoint: str) -> None:

        c = self.cfg
        if self.tally.restarts and c.record:  # a restarted worker must not overwrite the first video
            p = Path(c.record)
            c = c.replace(record=str(p.with_name(f"{p.stem}.restart{self.tally.restarts}{p.suffix}")))
        remaining = None if c.max_windows is None else max(1, c.max_windows - self.tally.windows)
        if self.relay is not None:
            self.relay.tally.new_run()  # its skip counter starts over; a gap before its first window is the restart's
        self.stop_worker = self.ctx.Event()
        self.worker = self.ctx.Process(
            target=_child,
            name="clipmg-worker",
            daemon=False,
            args=(worker_main, c, ring_name, self.status_q, self.stop_worker),
            kwargs=dict(
                link_endpoint=link_endpoint,
                max_windows=remaining,
                engine_factory=self.engine_factory,
                from_oldest=self.tally.restarts == 0 and not spec_is_live(c.source),
                source_ended=self.source_ended,
                frames_endpoint=self.web.frames_endpoint if self.web is not None else None,
            ),
        )
        self.worker.start()
        self._worker_started = time.monotonic()
        self.tally.worker_pid = self.worker.pid
        self.tally.worker_state = "loading"

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
        if kind == "source_state":
            t.source_state, t.source_detail = str(ev.get("state")), str(ev.get("detail", ""))
            if t.source_state in ("reconnecting", "stalled"):  # 'failed'/'ended' end the run: said once, there
                log.info(
                    f"source {ev.get('source')}: {t.source_state}"
                    + (f" ({t.source_detail})" if t.source_detail else "")
                )
        elif ev.get("pid") not in (None, t.worker_pid):
            return  # a late event from a worker that was replaced
        elif kind == "worker_state":
            t.worker_state = str(ev.get("state"))
            if t.worker_state == "ready":
                t.model = dict(ev.get("model", {}))
                self.frames_go.set()  # a file starts playing now, from its first frame
                if self._state in ("stopping", "stopped", "failed") or t.source_state == "failed":
                    return  # the run is ending (the source could not be opened): nothing to announce
                if t.ready_at is None:
                    t.ready_at = time.monotonic()
                    cache = "frame + pose cache" if ev.get("pose_cache") else "frame cache"
                    stops = (
                        ""
                        if self.cfg.duration_s is None
                        else (f"; stops by itself after {self.cfg.duration_s:g} s (Ctrl-C stops it sooner)")
                    )
                    log.info(
                        f"model ready: {t.model.get('preset')} ({t.model.get('backend')}, {t.model.get('precision')}, "
                        f"{cache}); publishing on {self.endpoint}{stops}"
                    )
                else:
                    log.info("worker restarted and ready")
                self._state = "running"
            elif t.worker_state == "failed" and ev.get("fatal"):
                t.fatal = str(ev.get("message", "the worker cannot start"))
        elif kind == "worker_stats":
            t.stats = {k: v for k, v in ev.items() if k not in ("event", "pid", "t_wall")}
        elif kind == "worker_done":
            t.worker_done = True
            why = ev.get("reason")
            self.signalled = f"--max-windows {self.cfg.max_windows} reached" if why == "done" else str(why or "")

    # ------------------------------------------------------------------ status
    def status(self, link: Any, state: Optional[str] = None, message: str = "") -> None:

        t, s = self.tally, self.tally.stats
        worker = {
            "pid": t.worker_pid,
            "alive": bool(self.worker is not None and self.worker.is_alive()),
            "state": t.worker_state,
            "annotation_dropped": int(s.get("annotation_dropped", 0)),
        }
        windows, skipped = self.counts()
        msg = status_message(
            stream=self.cfg.stream_id,
            state=state or self._state,
            t_publish=time.time(),
            source={
                "state": t.source_state if t.source_state in SOURCE_STATES else "unknown",
                "spec": redact_url(self.cfg.source),
            },
            fps_in=t.fps_in,
            fps_pose=float(s.get("fps_pose", 0.0)),
            fps_out=float(s.get("fps_out", 0.0)),
            windows=windows,
            skipped=skipped,
            dropped_frames=t.done_dropped + int(s.get("dropped_frames", 0)),
            dropped_messages=int(s.get("dropped_messages", 0)),
            restarts=t.restarts,
            worker=worker,
            model=t.model,
            last_window=s.get("last_window") or None,
            latency_ms=(s.get("last_window") or {}).get("latency_ms"),
            message=message,
            restart_gap=None if self.relay is None else self.relay.tally.restart_gap,
        )
        link.publish("status", self.cfg.stream_id, msg, self.cfg.fmt)

    def counts(self) -> Tuple[int, int]:
        """``(windows, skipped)`` published so far: counted by the relay from the window messages
        themselves (exact, also for a worker that was killed before it could report); ``skipped``
        includes the windows lost while a crashed worker restarted."""
        if self.relay is None or not self.relay.tally.windows:
            return self.tally.windows, self.tally.skipped
        rt = self.relay.tally
        return rt.windows, rt.skipped + rt.restart_gap

    def summary_line(self) -> str:
        t, s = self.tally, self.tally.stats
        windows, skipped = self.counts()
        last = s.get("last_window") or {}
        lat = (last.get("latency_ms") or {}).get("capture_to_publish")
        return (
            f"{self._state}: source {t.source_state}, in {t.fps_in:.1f} fps, pose {float(s.get('fps_pose', 0)):.1f}/s, "
            f"out {float(s.get('fps_out', 0)):.2f} win/s, windows {windows}, skipped {skipped}, "
            f"restarts {t.restarts}" + (f", last {last.get('label')!s} ({lat:.0f} ms)" if lat is not None else "")
        )

    # ------------------------------------------------------------------ watching
    def watch_worker(self, ring_name: str, link: Any, link_endpoint: str) -> Optional[int]:
        """Restart a dead worker with back-off; returns an exit status when the run must end."""
        t, c = self.tally, self.cfg
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self.start_worker(ring_name, link_endpoint)
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
            return EXIT_OK
        t.retire_worker()
        if t.restarts >= c.max_restarts:
            log.info(f"the worker crashed {t.restarts + 1} times; giving up")
            return EXIT_FAILED
        delay, msg = self._plan_restart(self._backoff, f"worker (pid {t.worker_pid}) {_how_it_ended(code)}")
        self._state = "restarting"
        t.worker_state = "restarting"
        self.status(link, "restarting", msg)
        self._restart_at = now + delay
        return None

    def _refuse(self, why: str) -> int:
        """End the run as a bad configuration: ``main`` says ``why`` in one line (exit 2)."""
        self.config_error = why
        return EXIT_CONFIG

    def _plan_restart(self, backoff: Backoff, what: str) -> Tuple[float, str]:
        """Count a restart, take its delay from ``backoff`` (the next one is
        twice as long, capped) and say so; returns the delay and the message."""
        delay = backoff.take()
        self.tally.restarts += 1
        msg = f"{what}; restarting in {delay:.1f} s (restart {self.tally.restarts})"
        log.info(msg)
        return delay, msg

    def watch_capture(self, ring_name: str, link: Any) -> Optional[int]:
        """End the run when the source failed or ended; restart a capture process that died without
        saying so (killed, e.g. by the OOM killer) with back-off: it continues the ring's numbering."""
        t, c = self.tally, self.cfg
        now = time.monotonic()
        if self._capture_restart_at is not None:
            if now >= self._capture_restart_at:
                self._capture_restart_at = None
                self.start_capture(ring_name)
            return None
        if self.capture.is_alive():
            if now - self._capture_started > 30.0:  # it ran fine for a while: back-off starts over
                self._capture_backoff.reset()
            return None
        self.capture.join(0.1)
        self.drain()
        state, detail = t.source_state, t.source_detail
        if state == "failed":
            log.info(f"cannot read the source: {detail or 'it failed to open'}")
            return EXIT_FAILED
        if state == "ended":
            # The file is over but the worker may still have windows to close (and, for a clip
            # shorter than one window, its whole-clip window): it says worker_done when it has.
            if self._ended_at is None:
                self._ended_at = now
                self.source_ended.set()
                log.info("source ended" + (f": {detail}" if detail else "") + "; finishing the last windows")
            if t.worker_done or self.worker is None:
                return EXIT_OK
            if now - self._ended_at > END_OF_SOURCE_TIMEOUT_S:
                log.info(f"the worker did not finish within {END_OF_SOURCE_TIMEOUT_S:.0f} s of the end of the source")
                return EXIT_OK
            return None
        if state == "stopped":
            log.info(f"source {state}" + (f": {detail}" if detail else ""))
            return EXIT_OK
        how = _how_it_ended(self.capture.exitcode)
        if t.restarts >= c.max_restarts:
            log.info(f"the capture process (pid {self.capture.pid}) {how}; {t.restarts} restarts so far: giving up")
            return EXIT_FAILED
        delay, msg = self._plan_restart(self._capture_backoff, f"capture (pid {self.capture.pid}) {how}")
        t.source_state, t.source_detail = "reconnecting", msg
        self.status(link, "restarting", msg)
        self._capture_restart_at = now + delay
        return None

    # ------------------------------------------------------------------ shutdown
    def stop_all(self, listener: bool = True) -> None:
        """Ask the children to stop, then join; terminate and kill whatever is left."""
        pairs = [(self.stop_worker, self.worker), (self.stop_capture, self.capture)]
        if listener:
            pairs.append((self.stop_listener, self.listener))
        for ev, _ in pairs:
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
        try:
            check_ring_fits(c)
            ring = FrameRing.create(c.ring_slots, c.max_height, c.max_width)
        except (ConfigError, OSError) as e:  # too big for /dev/shm, or no shared memory at all
            relay.close()
            return self._refuse(f"cannot create the shared-memory frame ring: {e}")
        ring_name = ""
        restore = self._install_signals()
        try:
            with relay, ring, Link(relay.link_endpoint) as link, contextlib.ExitStack() as extras:
                ring_name = ring.name
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
                self.start_worker(ring.name, relay.link_endpoint)
                self.start_capture(ring.name)
                if c.listen:
                    key = relay.pub.public_key.decode() if c.curve_secret_key and relay.pub else None
                    self.start_listener(_connectable(relay.endpoint), key, listener_keys)
                self.status(link, "starting", "starting capture and worker")
                code = self._loop(ring, link, relay.link_endpoint)
                self._state = "stopping"
                self.status(link, "stopping", self.signalled or "")
                self.stop_all(listener=False)
                self._state = "stopped" if code == EXIT_OK else "failed"
                self.status(link, self._state, self.summary_line())
                time.sleep(0.3)  # let the relay forward the last status (and a listener print it)
                # a configuration error, or a run that failed before publishing anything, is said in one
                # line (above), not followed by a line of zero counters
                if code == EXIT_OK or (code == EXIT_FAILED and self.counts()[0] > 0):
                    log.info(f"{self.summary_line()}" + (f" ({self.signalled})" if self.signalled else ""))
                if c.record and Path(c.record).is_file():
                    log.info(f"annotated video: {c.record}")
                return code
        finally:
            self.stop_all()
            if ring_name:
                cleanup_segments([ring_name])  # the owner unlinked it already; this is the belt and braces
            restore()

    def _loop(self, ring: Any, link: Any, link_endpoint: str) -> int:
        c, t = self.cfg, self.tally
        last_beat = last_line = 0.0
        while True:
            time.sleep(0.05)
            self.drain()
            now = time.monotonic()
            if self.signalled:
                return EXIT_OK
            for check in (
                lambda: self.watch_worker(ring.name, link, link_endpoint),
                lambda: self.watch_capture(ring.name, link),
            ):
                code = check()
                if code is not None:
                    return code
            if t.worker_done:
                return EXIT_OK
            if t.ready_at is not None and c.duration_s is not None and now - t.ready_at >= c.duration_s:
                self.signalled = f"--duration {c.duration_s:g} s reached"
                return EXIT_OK
            if now - last_beat >= c.heartbeat_s:
                last_beat = now
                t.measure_fps(ring.latest_seq())
                self.status(link)
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
    check_source(cfg)
    cfg = resolve_engine(cfg)
    sup = Supervisor(cfg, engine_factory, quiet=args.quiet)
    code = sup.run()
    if code == EXIT_CONFIG:
        raise ConfigError(sup.config_error or "the configuration cannot run")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
