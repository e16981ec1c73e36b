"""``clipmg-listen``: subscribe to a clipmg publisher and print what arrives.

    clipmg-listen                                   # every topic from tcp://127.0.0.1:5556, one line each
    clipmg-listen --topic mg.event --pretty         # gesture events, indented JSON
    clipmg-listen --topic mg.window.cam0 --raw -n 5 # five raw window payloads, then exit
    clipmg-listen --endpoint tcp://10.0.0.7:5556 --server-key server.key   # CURVE-encrypted

Topics are prefixes (ZeroMQ subscriptions): ``mg`` takes everything, ``mg.window`` every window of
every stream. Gaps in window numbers that the publisher did not report as skipped are counted and
shown (a slow subscriber's messages are dropped by the publisher, never queued forever).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from clipmg.model import settings
from clipmg.model.errors import run_command
from clipmg.model.settings import Range, setting

from .config import DEFAULT_ENDPOINT, ConfigError, check_endpoint
from .messages import MessageError, StatusMessage, WindowMessage, decode, decode_plain, summary


@dataclass(frozen=True)
class ListenOptions:
    """``clipmg-listen``'s flags, each declared once (``model/settings.py``): the parser and the checks
    are generated from these fields."""

    endpoint: str = setting(DEFAULT_ENDPOINT, f"publisher to connect to (default {DEFAULT_ENDPOINT})")
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
    server_key: Optional[str] = setting(
        None, "CURVE: the server's public key (40-char Z85 text or its .key certificate file)"
    )
    client_cert: Optional[str] = setting(
        None,
        "CURVE: this client's secret certificate (needed when the server has an allow-list); default: a fresh key pair",
    )

    def __post_init__(self) -> None:
        check_endpoint(self.endpoint, allow_remote=True)  # connecting to another machine is the point of it
        settings.check_fields(self, terse=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipmg-listen", description="Print messages from a clipmg publisher.")
    settings.add_arguments(ap, ListenOptions)
    return ap


def options_from_args(args: argparse.Namespace) -> ListenOptions:
    """The checked options of a parsed command line (``ConfigError``: one sentence naming the flag)."""
    values = settings.values_from_args(ListenOptions, args)
    return ListenOptions(**{**values, "topic": tuple(values["topic"]), "pretty": args.pretty})


def _curve_client(
    sock: Any, server_key: str, client_cert: Optional[str], client_keys: Optional[Tuple[bytes, bytes]] = None
) -> None:
    import zmq

    from .publisher import load_public_key

    sock.curve_serverkey = load_public_key(server_key)
    public: Optional[bytes]
    secret: Optional[bytes]
    if client_keys:
        public, secret = client_keys
    elif client_cert:
        import zmq.auth

        if not Path(client_cert).is_file():
            raise ConfigError(f"--client-cert {client_cert}: no such file (give this client's *.key_secret file)")
        try:
            public, secret = zmq.auth.load_certificate(client_cert)
        except Exception as e:  # noqa: BLE001 - zmq.auth raises several types for bad files
            raise ConfigError(f"--client-cert {client_cert}: cannot read it as a CURVE certificate ({e})") from None
        if not secret:
            raise ConfigError(f"--client-cert {client_cert} holds no secret key (use the *.key_secret file)")
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_publickey, sock.curve_secretkey = public, secret


def _json(msg: Any, indent: Optional[int] = None) -> str:
    """JSON text of a decoded message; msgpack may carry bytes, which JSON cannot: shown as hex."""
    return json.dumps(
        msg,
        indent=indent,
        separators=None if indent else (",", ":"),
        default=lambda o: o.hex() if isinstance(o, (bytes, bytearray)) else repr(o),
    )


class GapCounter:
    """Window numbers a subscriber missed that the publisher did not report as skipped."""

    def __init__(self) -> None:
        self.last: Dict[str, tuple] = {}  # stream -> (window, skipped)
        self.missing = 0

    def update(self, msg: WindowMessage) -> int:
        s, w, sk = msg.stream, msg.window, msg.skipped
        gap = 0
        if s in self.last and sk >= self.last[s][1]:  # skipped went down: a restarted worker, not a loss
            w0, sk0 = self.last[s]
            gap = max(0, (w - w0 - 1) - (sk - sk0))
        self.last[s] = (w, sk)
        self.missing += gap
        return gap


def listen(
    endpoint: str,
    topics: List[str],
    *,
    out: Any = sys.stdout,
    raw: bool = False,
    pretty: bool = False,
    count: Optional[int] = None,
    timeout: Optional[float] = None,
    server_key: Optional[str] = None,
    client_cert: Optional[str] = None,
    stop: Any = None,
    client_keys: Optional[Tuple[bytes, bytes]] = None,
    until_stopped: bool = False,
) -> int:
    """Subscribe and print until ``count`` messages, ``timeout`` of silence, ``stop`` (an Event), Ctrl-C
    or, with ``until_stopped``, the publisher's final status (``stopped``: 0, ``failed``: 1; its status
    topic is subscribed to for that even when ``topics`` leave it out, and then not printed).

    Returns the process exit status (0, or 1 on timeout or a failed publisher).
    """
    import zmq

    gaps = GapCounter()
    n = 0
    with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1000)
        if server_key:
            _curve_client(sock, server_key, client_cert, client_keys)
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        shown = lambda top: any(top.startswith(t) for t in topics)  # noqa: E731
        if until_stopped and not shown("mg.status."):
            sock.setsockopt(zmq.SUBSCRIBE, b"mg.status.")
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as e:
            raise ConfigError(f"--endpoint {endpoint}: cannot connect ({e.strerror})") from None
        last = time.monotonic()
        while count is None or n < count:
            if stop is not None and stop.is_set():
                break
            if not sock.poll(100):
                if timeout is not None and time.monotonic() - last > timeout:
                    print(f"clipmg-listen: nothing received from {endpoint} for {timeout:g} s", file=sys.stderr)
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
            final = (
                until_stopped
                and top.startswith("mg.status.")
                and isinstance(msg, StatusMessage)
                and msg.state in ("stopped", "failed")
            )
            ok = 0 if isinstance(msg, StatusMessage) and msg.state == "stopped" else 1
            if not shown(top):
                if final:
                    return ok
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
            if final:
                return ok
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
            opts.endpoint,
            list(opts.topic) or ["mg"],
            raw=opts.raw,
            pretty=opts.pretty,
            count=opts.count,
            timeout=opts.timeout,
            server_key=opts.server_key,
            client_cert=opts.client_cert,
            until_stopped=opts.until_stopped,
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
