"""``clipmg-listen``: subscribe to a clipmg publisher and print what arrives.

    clipmg-listen                                   # every topic from tcp://127.0.0.1:5556, one line each
    clipmg-listen --topic mg.event --pretty         # gesture events, indented JSON
    clipmg-listen --topic mg.window.cam0 --raw -n 5 # five raw window payloads, then exit
    clipmg-listen --endpoint tcp://10.0.0.7:5556 --server-key server.key   # CURVE-encrypted
    clipmg-listen --endpoint tcp://hostA:5556,tcp://hostB:5556             # a fleet: one socket, many hosts

Topics are prefixes (ZeroMQ subscriptions): ``mg`` takes everything, ``mg.window`` every window of
every stream. Gaps in window numbers that the publisher did not report as skipped are counted per
stream and shown (a slow subscriber's messages are dropped by the publisher, never queued forever);
at exit a line on stderr says how many windows each stream delivered and how many were missed.

Several endpoints (``--endpoint`` repeated, or a comma list) are connected by one SUB socket, which
takes messages from all of them fairly, each stream's in order (docs/fleet.md). ``--server-key`` is
given once (every endpoint has that server key) or once per endpoint, in the same order, ``none``
for an endpoint without CURVE.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from clipmg.model import settings
from clipmg.model.errors import run_command
from clipmg.model.settings import Range, setting

from .config import DEFAULT_ENDPOINT, ConfigError, check_endpoint
from .messages import MessageError, StatusMessage, WindowMessage, decode, decode_plain, summary
from .publisher import load_public_key

NO_KEY = "none"  # --server-key none: that endpoint is not encrypted (a fleet of mixed hosts)


@dataclass(frozen=True)
class ListenOptions:
    """``clipmg-listen``'s flags, each declared once (``model/settings.py``): the parser and the checks
    are generated from these fields."""

    endpoint: Tuple[str, ...] = setting(
        (),
        f"publisher to connect to; repeatable, or a comma list, to subscribe to several (default {DEFAULT_ENDPOINT})",
        action="append",
    )
    topic: Tuple[str, ...] = setting(
        (), "topic prefix to subscribe to; repeatable (default: mg = everything)", action="append"
    )
    raw: bool = setting(
        False,
        "print each payload as received (JSON text or msgpack as JSON)",
        exclusive=True,  # --raw or --pretty
        also=((("--pretty",), dict(action="store_true", help="print each payload as indented JSON")),),
    )
    pretty: bool = False  # --pretty, listed with --raw
    count: Optional[int] = setting(None, "exit after this many messages", Range(1), flag=("-n", "--count"))
    timeout: Optional[float] = setting(
        None, "exit (status 1) if nothing arrives for this many seconds", Range(0, open="lo")
    )
    until_stopped: bool = setting(
        False,
        "exit when the publisher says it has stopped (its 'stopped' status: exit 0; 'failed': exit 1), "
        "e.g. at the end of a file",
    )
    server_key: Tuple[str, ...] = setting(
        (),
        "CURVE: the server's public key (40-char Z85 text or its .key certificate file); once for every "
        f"endpoint, or once per --endpoint in the same order ('{NO_KEY}': that endpoint has no CURVE)",
        action="append",
    )
    client_cert: Optional[str] = setting(
        None,
        "CURVE: this client's secret certificate (needed when the server has an allow-list); default: a fresh key pair",
    )

    def __post_init__(self) -> None:
        for ep in self.endpoints:
            check_endpoint(ep, allow_remote=True)  # connecting to another machine is the point of it
        settings.check_fields(self, terse=True)
        pair_keys(self.endpoints, self.server_key)

    @property
    def endpoints(self) -> Tuple[str, ...]:
        """The publishers to connect to (``DEFAULT_ENDPOINT`` when none is given)."""
        return self.endpoint or (DEFAULT_ENDPOINT,)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipmg-listen", description="Print messages from a clipmg publisher.")
    settings.add_arguments(ap, ListenOptions)
    return ap


def options_from_args(args: argparse.Namespace) -> ListenOptions:
    """The checked options of a parsed command line (``ConfigError``: one sentence naming the flag)."""
    values = settings.values_from_args(ListenOptions, args)
    return ListenOptions(
        **{
            **values,
            "endpoint": split_list(values["endpoint"]),
            "server_key": split_list(values["server_key"]),
            "topic": tuple(values["topic"]),
            "pretty": args.pretty,
        }
    )


def split_list(values: Sequence[str]) -> Tuple[str, ...]:
    """A repeatable flag's values, each of which may be a comma list, as one tuple (blanks dropped)."""
    return tuple(x.strip() for v in values for x in v.split(",") if x.strip())


def pair_keys(
    endpoints: Sequence[str], keys: Sequence[Optional[str]], flag: str = "--endpoint"
) -> List[Tuple[str, Optional[str]]]:
    """``(endpoint, server key or None)`` for each endpoint: no key (no CURVE), one key for every
    endpoint, or one per endpoint in order (``none``: that one without CURVE). ``ConfigError`` for
    another count or an endpoint given twice (ZeroMQ would connect to it twice and deliver every
    message twice). ``flag``: the endpoints' flag, for the messages."""
    seen = set()
    for ep in endpoints:
        if ep in seen:
            raise ConfigError(f"{flag} {ep} is given twice; give each publisher once")
        seen.add(ep)
    if not keys:
        return [(ep, None) for ep in endpoints]
    if len(keys) == 1:
        keys = list(keys) * len(endpoints)
    if len(keys) != len(endpoints):
        raise ConfigError(
            f"--server-key is given {len(keys)} times for {len(endpoints)} {flag} endpoints; give it once (every "
            f"endpoint has that server key) or once per {flag} in the same order ('{NO_KEY}' for one without CURVE)"
        )
    return [(ep, None if not k or k == NO_KEY else k) for ep, k in zip(endpoints, keys)]


def client_keys_of(client_cert: Optional[str], flag: str = "--client-cert") -> Tuple[bytes, bytes]:
    """This client's CURVE key pair: from its secret certificate file, or a fresh one (enough for a
    server without an allow-list). ``ConfigError`` (one sentence naming ``flag``) for a bad file."""
    import zmq

    public: Optional[bytes]
    secret: Optional[bytes]
    if client_cert:
        import zmq.auth

        if not Path(client_cert).is_file():
            raise ConfigError(f"{flag} {client_cert}: no such file (give this client's *.key_secret file)")
        try:
            public, secret = zmq.auth.load_certificate(client_cert)
        except Exception as e:  # noqa: BLE001 - zmq.auth raises several types for bad files
            raise ConfigError(f"{flag} {client_cert}: cannot read it as a CURVE certificate ({e})") from None
        if not secret or not public:
            raise ConfigError(f"{flag} {client_cert} holds no secret key (use the *.key_secret file)")
        return public, secret
    public, secret = zmq.curve_keypair()
    return public, secret


def connect_all(
    sock: Any,
    pairs: Sequence[Tuple[str, Optional[str]]],
    client_keys: Optional[Tuple[bytes, bytes]] = None,
    client_cert: Optional[str] = None,
    flag: str = "--endpoint",
) -> None:
    """Connect a SUB (or XSUB) socket to every ``(endpoint, server key or None)``: the endpoints
    without CURVE first, then each CURVE one with its server key set just before its ``connect``
    (libzmq takes a connection's security options from the socket when it connects). The client key
    pair is ``client_keys``, else ``client_cert``'s, else a fresh one."""
    import zmq

    # every key read first: a bad one is one sentence before any connection is made
    curve = [(ep, load_public_key(k)) for ep, k in pairs if k]
    mine = (client_keys or client_keys_of(client_cert)) if curve else None
    plain: List[Tuple[str, Optional[bytes]]] = [(ep, None) for ep, k in pairs if not k]
    for ep, key in plain + curve:
        if key is not None and mine is not None:
            # setting any CURVE key switches the socket to CURVE for this and every later connect
            sock.curve_publickey, sock.curve_secretkey = mine
            sock.curve_serverkey = key
        try:
            sock.connect(ep)
        except zmq.ZMQError as e:
            raise ConfigError(f"{flag} {ep}: cannot connect ({e.strerror})") from None


def _json(msg: Any, indent: Optional[int] = None) -> str:
    """JSON text of a decoded message; msgpack may carry bytes, which JSON cannot: shown as hex."""
    return json.dumps(
        msg,
        indent=indent,
        separators=None if indent else (",", ":"),
        default=lambda o: o.hex() if isinstance(o, (bytes, bytearray)) else repr(o),
    )


class GapCounter:
    """Window numbers a subscriber missed that the publisher did not report as skipped, per stream
    (``missed``) and in all (``missing``); ``received``: window messages per stream."""

    def __init__(self) -> None:
        self.last: Dict[str, tuple] = {}  # stream -> (window, skipped)
        self.missing = 0
        self.missed: Dict[str, int] = {}
        self.received: Dict[str, int] = {}

    def update(self, msg: WindowMessage) -> int:
        s, w, sk = msg.stream, msg.window, msg.skipped
        gap = 0
        if s in self.last and sk >= self.last[s][1]:  # skipped went down: a restarted worker, not a loss
            w0, sk0 = self.last[s]
            gap = max(0, (w - w0 - 1) - (sk - sk0))
        self.last[s] = (w, sk)
        self.missing += gap
        self.missed[s] = self.missed.get(s, 0) + gap
        self.received[s] = self.received.get(s, 0) + 1
        return gap

    def report(self) -> str:
        """``cam0 120 (0 missed), cam1 118 (2 missed)``: what each stream delivered, by stream name."""
        return ", ".join(f"{s} {self.received[s]} ({self.missed[s]} missed)" for s in sorted(self.received))


def listen(
    endpoint: Union[str, Sequence[str]],
    topics: List[str],
    *,
    out: Any = sys.stdout,
    raw: bool = False,
    pretty: bool = False,
    count: Optional[int] = None,
    timeout: Optional[float] = None,
    server_key: Union[None, str, Sequence[Optional[str]]] = None,
    client_cert: Optional[str] = None,
    stop: Any = None,
    client_keys: Optional[Tuple[bytes, bytes]] = None,
    until_stopped: bool = False,
    report: bool = False,
) -> int:
    """Subscribe to one publisher or several (``endpoint``: one or a list; ``server_key``: one for
    all or one per endpoint, see ``pair_keys``) and print until ``count`` messages, ``timeout`` of
    silence, ``stop`` (an Event), Ctrl-C or, with ``until_stopped``, the publishers' final status:
    every stream heard from has sent one, and at least one per endpoint (all ``stopped``: 0; one
    ``failed``: 1). Their status topic is subscribed to for that even when ``topics`` leave it out,
    and then not printed. ``report``: at exit, one stderr line of windows received and missed per stream.

    Returns the process exit status (0, or 1 on timeout or a failed publisher).
    """
    import zmq

    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    keys = [] if server_key is None else [server_key] if isinstance(server_key, str) else list(server_key)
    pairs = pair_keys(endpoints, keys)
    gaps = GapCounter()
    try:
        with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sock:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 1000)
            for t in topics:
                sock.setsockopt(zmq.SUBSCRIBE, t.encode())
            if until_stopped and not _shown("mg.status.", topics):
                sock.setsockopt(zmq.SUBSCRIBE, b"mg.status.")
            connect_all(sock, pairs, client_keys, client_cert)
            return _receive(sock, topics, gaps, out, raw, pretty, count, timeout, stop, until_stopped, endpoints)
    finally:
        if report and gaps.received:
            print(f"clipmg-listen: windows received per stream: {gaps.report()}", file=sys.stderr)


def _shown(top: str, topics: Sequence[str]) -> bool:
    return any(top.startswith(t) for t in topics)


def _receive(
    sock: Any,
    topics: List[str],
    gaps: GapCounter,
    out: Any,
    raw: bool,
    pretty: bool,
    count: Optional[int],
    timeout: Optional[float],
    stop: Any,
    until_stopped: bool,
    endpoints: Sequence[str],
) -> int:
    """The receive loop of ``listen`` on a connected socket; returns the exit status."""
    heard: set = set()  # streams whose status arrived
    final: Dict[str, str] = {}  # stream -> 'stopped' / 'failed'
    n = 0
    last = time.monotonic()
    while count is None or n < count:
        if stop is not None and stop.is_set():
            break
        if not sock.poll(100):
            if timeout is not None and time.monotonic() - last > timeout:
                print(f"clipmg-listen: nothing received from {', '.join(endpoints)} for {timeout:g} s", file=sys.stderr)
                return 1
            continue
        parts = sock.recv_multipart()
        last = time.monotonic()
        if len(parts) != 2:
            print(
                f"clipmg-listen: ignored a message of {len(parts)} frames (expected [topic, payload])",
                file=sys.stderr,
            )
            continue
        top = parts[0].decode("utf-8", "replace")
        try:
            msg = decode(parts[1])  # validated: a malformed message is shown as such, never crashes us
        except MessageError as e:
            print(f"{top}  <undecodable payload: {e}>", file=out, flush=True)
            continue
        done = False
        if until_stopped and top.startswith("mg.status.") and isinstance(msg, StatusMessage):
            heard.add(msg.stream)
            if msg.state in ("stopped", "failed"):
                final[msg.stream] = msg.state
            done = len(final) >= len(endpoints) and heard <= final.keys()
        status = 1 if "failed" in final.values() else 0
        if not _shown(top, topics):
            if done:
                return status
            continue
        n += 1
        gap = gaps.update(msg) if isinstance(msg, WindowMessage) else 0
        if raw:  # as received, fields this version does not know included
            text = parts[1].decode("utf-8", "replace") if parts[1][:1] == b"{" else _json(decode_plain(parts[1]))
            print(f"{top} {text}", file=out, flush=True)
        elif pretty:
            print(f"{top}\n{_json(decode_plain(parts[1]), indent=2)}", file=out, flush=True)
        else:
            line = summary(top, msg)
            print(line + (f"  [{gap} window(s) not received]" if gap else ""), file=out, flush=True)
        if done:
            return status
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """``clipmg-listen``: 0 (count reached, stopped, or the publisher said 'stopped'), 1 (nothing for
    ``--timeout`` seconds, or the publisher said 'failed'), 2 a bad flag value (one line)."""
    return run_command("clipmg-listen", lambda: _main(argv))


def _main(argv: Optional[List[str]]) -> int:
    opts = options_from_args(build_parser().parse_args(argv))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return listen(
            opts.endpoints,
            list(opts.topic) or ["mg"],
            raw=opts.raw,
            pretty=opts.pretty,
            count=opts.count,
            timeout=opts.timeout,
            server_key=opts.server_key,
            client_cert=opts.client_cert,
            until_stopped=opts.until_stopped,
            report=True,
        )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM is how a listener is meant to stop
        return 0


def listen_main(
    endpoint: str,
    topics: List[str],
    stop_event: Any = None,
    raw: bool = False,
    server_key: Optional[str] = None,
    client_keys: Optional[Tuple[bytes, bytes]] = None,
) -> None:
    """Process entry point for ``clipmg-live --listen`` (prints to the inherited stdout).
    ``client_keys``: this listener's CURVE key pair, which the supervisor put on its allow-list."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us through stop_event
    listen(endpoint, topics, raw=raw, server_key=server_key, stop=stop_event, client_keys=client_keys)


if __name__ == "__main__":
    raise SystemExit(main())
