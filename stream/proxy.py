"""``clipmg-proxy``: one address for a fleet of recognizers (docs/fleet.md).

    clipmg-proxy --upstream tcp://hostA:5556 --upstream tcp://hostB:5556     # consumers: tcp://127.0.0.1:5557
    clipmg-proxy --upstream tcp://hostA:5556,tcp://hostB:5556 --endpoint tcp://0.0.0.0:5557 --allow-remote \\
        --server-key keys/fleet.key --curve-secret keys/proxy.key_secret     # CURVE on both sides

An XSUB socket connects to every recognizer's PUB endpoint (``clipmg-live --endpoint``); an XPUB
socket is bound for consumers; ZeroMQ's own forwarding device (``zmq.proxy_steerable``) copies
messages one way and subscriptions the other, so a consumer's subscription (``mg.window``) reaches
every recognizer and each recognizer still sends only what someone subscribed to. No broker, no
queue: messages are forwarded as they are (the topic names the stream), each stream's in order;
past ``--hwm`` messages for a slow consumer the newest are dropped for that consumer alone.
A recognizer that goes away and comes back is reconnected to by ZeroMQ itself.

The same rules as ``clipmg-live``: loopback unless ``--allow-remote``; CURVE towards consumers with
``--curve-secret`` (and ``--curve-allow`` for an allow-list), towards recognizers with ``--server-key``
(once for all, or once per ``--upstream``; ``none`` for one without CURVE) and ``--client-cert``.
A line every ``--stats`` seconds says what was forwarded per stream. No PyTorch here.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from clipmg.model import settings
from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.settings import Range, setting

from .config import ConfigError, check_endpoint
from .listen import GapCounter, connect_all, pair_keys, split_list
from .messages import MessageError, WindowMessage, decode
from .publisher import bind, curve_server, load_public_key

log = logging.getLogger(__name__)  # INFO lines are the proxy speaking: "[clipmg-proxy] ..." (model/logs.py)

DEFAULT_PROXY_ENDPOINT = "tcp://127.0.0.1:5557"  # next to clipmg-live's 5556, so both fit on one host
UPSTREAM, CONSUMERS = "recognizers (upstream)", "consumers"
PLURAL = {"window": "windows", "event": "events", "status": "status"}


class ProxyError(ClipmgError, RuntimeError):
    """The proxy's socket could not be set up (a busy or bad endpoint); one sentence saying what to do."""


@dataclass(frozen=True)
class ProxyOptions:
    """``clipmg-proxy``'s flags, each declared once (``model/settings.py``)."""

    upstream: Tuple[str, ...] = setting(
        (),
        "a recognizer's endpoint (its clipmg-live --endpoint) to connect to; repeatable, or a comma list",
        action="append",
        group=UPSTREAM,
    )
    server_key: Tuple[str, ...] = setting(
        (),
        "CURVE: a recognizer's public key (40-char Z85 text or its .key file); once for every --upstream, or "
        "once per --upstream in the same order ('none': that one has no CURVE)",
        action="append",
        group=UPSTREAM,
    )
    client_cert: Optional[str] = setting(
        None,
        "CURVE: the proxy's own secret certificate, for recognizers with an allow-list; default: a fresh key pair",
        group=UPSTREAM,
    )
    endpoint: str = setting(
        DEFAULT_PROXY_ENDPOINT,
        f"XPUB endpoint consumers connect to (default: {DEFAULT_PROXY_ENDPOINT})",
        group=CONSUMERS,
    )
    allow_remote: bool = setting(False, "allow binding a non-loopback interface", group=CONSUMERS)
    curve_secret_key: Optional[str] = setting(
        None, "CURVE: the proxy's secret certificate file", group=CONSUMERS, flag="--curve-secret"
    )
    curve_allow_dir: Optional[str] = setting(
        None, "CURVE: folder of allowed consumer public certificates", group=CONSUMERS, flag="--curve-allow"
    )
    hwm: int = setting(
        1000,
        "messages queued per consumer (and from each recognizer) before new ones are dropped (default: %(default)s)",
        Range(1, 10_000_000),
    )
    stats: float = setting(
        10.0,
        "seconds between the lines saying what was forwarded per stream; 0: none (default: %(default)s)",
        Range(0, 86400),
    )

    def __post_init__(self) -> None:
        if not self.upstream:
            raise ConfigError("give at least one --upstream: a recognizer's endpoint, e.g. tcp://HOST:5556")
        for ep in self.upstream:
            check_endpoint(ep, allow_remote=True)  # connecting to other machines is the point of it
        settings.check_fields(self, terse=True)
        for _, key in pair_keys(self.upstream, self.server_key, flag="--upstream"):
            if key:
                load_public_key(key)  # a bad key is one sentence before anything binds (a busy port included)
        if self.curve_allow_dir and not self.curve_secret_key:
            raise ConfigError("--curve-allow needs --curve-secret (the proxy's secret key file)")
        check_endpoint(self.endpoint, self.allow_remote)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="clipmg-proxy",
        description="Forward the messages of many clipmg recognizers to many consumers through one endpoint "
        "(a ZeroMQ XSUB/XPUB proxy).",
    )
    settings.add_arguments(ap, ProxyOptions)
    return ap


def options_from_args(args: argparse.Namespace) -> ProxyOptions:
    """The checked options of a parsed command line (``ConfigError``: one sentence naming the flag)."""
    values = settings.values_from_args(ProxyOptions, args)
    return ProxyOptions(
        **{**values, "upstream": split_list(values["upstream"]), "server_key": split_list(values["server_key"])}
    )


class Forwarded:
    """What the proxy forwarded, per stream and kind, counted from the proxy's capture copy (pure
    logic): ``counts[stream][kind]``; ``gaps``: windows that never reached the proxy (lost between a
    recognizer and it, e.g. at a high-water mark), per stream."""

    def __init__(self) -> None:
        self.counts: Dict[str, Dict[str, int]] = {}
        self.gaps = GapCounter()
        self.total = 0
        self._lock = threading.Lock()

    def add(self, frames: List[bytes]) -> None:
        """One captured message; subscriptions (one frame, ``\\x00``/``\\x01`` + topic) are not counted."""
        if len(frames) != 2:
            return
        parts = frames[0].decode("utf-8", "replace").split(".", 2)  # mg.<kind>.<stream>
        if len(parts) != 3 or parts[0] != "mg":
            return
        kind, stream = parts[1], parts[2]
        with self._lock:
            self.total += 1
            per = self.counts.setdefault(stream, {})
            per[kind] = per.get(kind, 0) + 1
            if kind == "window":
                try:
                    msg = decode(frames[1])
                except MessageError:
                    return  # forwarded all the same; not a window this version can number
                if isinstance(msg, WindowMessage):
                    self.gaps.update(msg)

    def snapshot(self) -> Dict[str, Dict[str, int]]:
        with self._lock:
            return {s: dict(k) for s, k in self.counts.items()}

    def line(self, since: Optional[Dict[str, Dict[str, int]]] = None) -> str:
        """``cam0: 30 windows (0 missed), 10 status; cam1: ...``: what was forwarded after ``since``
        (missed: windows that never reached the proxy, since it started)."""
        now, since = self.snapshot(), since or {}
        with self._lock:
            missed = dict(self.gaps.missed)
        out = []
        for stream in sorted(now):
            diff = {k: n - since.get(stream, {}).get(k, 0) for k, n in now[stream].items()}
            text = ", ".join(
                f"{n} {PLURAL.get(k, k)}" + (f" ({missed.get(stream, 0)} missed)" if k == "window" else "")
                for k, n in sorted(diff.items())
                if n
            )
            if text:
                out.append(f"{stream}: {text}")
        return "; ".join(out)


class Proxy:
    """The bound XPUB, the connected XSUB and ``zmq.proxy_steerable`` between them in a thread, with a
    capture copy counted into ``forwarded``. ``stop()`` ends it through its control socket (the proxy
    call blocks in C, where no Python signal handler can run). Use as a context manager."""

    def __init__(self, opts: ProxyOptions) -> None:
        import zmq

        self.opts = opts
        self.ctx = zmq.Context()
        self.auth: Any = None
        self.forwarded = Forwarded()
        self._socks: List[Any] = []
        self._threads: List[threading.Thread] = []
        self._done = threading.Event()
        self.error: Optional[BaseException] = None
        try:
            self._setup(zmq)
        except BaseException:
            self.close()
            raise

    def _socket(self, kind: int) -> Any:
        import zmq

        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        self._socks.append(s)
        return s

    def _setup(self, zmq: Any) -> None:
        o = self.opts
        self.xpub = self._socket(zmq.XPUB)
        self.xpub.setsockopt(zmq.SNDHWM, o.hwm)
        if o.curve_secret_key:
            self.public_key, self.auth = curve_server(self.xpub, self.ctx, o.curve_secret_key, o.curve_allow_dir)
        bind(self.xpub, o.endpoint, ProxyError, "serve consumers", "clipmg-proxy or clipmg-live")
        self.endpoint: str = self.xpub.getsockopt_string(zmq.LAST_ENDPOINT) or o.endpoint
        self.xsub = self._socket(zmq.XSUB)
        self.xsub.setsockopt(zmq.RCVHWM, o.hwm)
        connect_all(
            self.xsub, pair_keys(o.upstream, o.server_key, flag="--upstream"), None, o.client_cert, "--upstream"
        )
        # the capture copy: a PUB never blocks the proxy (a PUSH at its high-water mark would)
        tag = f"inproc://clipmg-proxy-{id(self)}"
        capture, self._tap = self._socket(zmq.PUB), self._socket(zmq.SUB)
        capture.setsockopt(zmq.SNDHWM, 100_000)
        capture.bind(f"{tag}-capture")
        self._tap.setsockopt(zmq.SUBSCRIBE, b"")
        self._tap.connect(f"{tag}-capture")
        control, self._control = self._socket(zmq.PAIR), self._socket(zmq.PAIR)
        control.bind(f"{tag}-control")
        self._control.connect(f"{tag}-control")
        self._threads = [
            threading.Thread(target=self._forward, args=(capture, control), name="clipmg-proxy", daemon=True),
            threading.Thread(target=self._count, name="clipmg-proxy-count", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _forward(self, capture: Any, control: Any) -> None:
        import zmq

        try:
            zmq.proxy_steerable(self.xsub, self.xpub, capture, control)
        except zmq.ContextTerminated:
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the main thread, which exits 1 with it
            self.error = e
        finally:
            self._done.set()

    def _count(self) -> None:
        import zmq

        while not self._done.is_set():
            try:
                if self._tap.poll(100):
                    self.forwarded.add(self._tap.recv_multipart(zmq.NOBLOCK))
            except zmq.ZMQError:
                return

    def wait(self, timeout: float) -> bool:
        """True once the forwarding thread has ended (stopped, or failed: ``error``)."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        if self._threads and not self._done.is_set():
            self._control.send(b"TERMINATE")
            self._done.wait(5.0)
        for t in self._threads:
            t.join(2.0)
        self._threads = []

    def close(self) -> None:
        self.stop()
        for s in self._socks:
            s.close()
        self._socks = []
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        self.ctx.term()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(opts: ProxyOptions) -> int:
    """Forward until SIGINT/SIGTERM (exit 0) or a failure of the forwarding thread (exit 1), saying
    what was forwarded every ``opts.stats`` seconds and at the end."""
    stopped: List[str] = []

    def handler(signum: int, _frame: Any) -> None:
        stopped.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Proxy(opts) as proxy:
            log.info(
                f"forwarding from {len(opts.upstream)} recognizer(s) ({', '.join(opts.upstream)}) "
                f"to consumers on {proxy.endpoint}" + (" (CURVE)" if opts.curve_secret_key else "")
            )
            since, last = proxy.forwarded.snapshot(), time.monotonic()
            while not stopped and not proxy.wait(0.1):
                if opts.stats and time.monotonic() - last >= opts.stats:
                    text = proxy.forwarded.line(since) or "nothing (are the recognizers running and reachable?)"
                    log.info(f"forwarded in the last {opts.stats:g} s: {text}")
                    since, last = proxy.forwarded.snapshot(), time.monotonic()
            if proxy.error is not None:
                log.info(f"forwarding failed: {type(proxy.error).__name__}: {proxy.error}")
                return 1
            proxy.stop()
            log.info(
                f"stopped ({'received ' + stopped[0] if stopped else 'the proxy ended'}); forwarded "
                f"{proxy.forwarded.total} message(s)" + (f": {proxy.forwarded.line()}" if proxy.forwarded.total else "")
            )
            return 0
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Optional[List[str]] = None) -> int:
    """``clipmg-proxy``: 0 stopped by a signal, 1 the forwarding failed, 2 a bad flag value (one line)."""
    return run_command("clipmg-proxy", lambda: run(options_from_args(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(main())
