"""ZeroMQ publishing: the PUB socket clients subscribe to, and the relay that keeps it alive.

- ``Publisher``: a PUB socket bound to one endpoint (``tcp://127.0.0.1:5556`` by default), sending
  multipart ``[topic, payload]`` without ever blocking: past the high-water mark libzmq drops
  messages for that one slow subscriber and the worker carries on. Optional CURVE encryption
  (server secret key; clients must know the server public key) with an optional allow-list of
  client public keys enforced by a ZAP authenticator thread.
- ``Link``: a PUSH socket a worker sends ``[topic, payload]`` through to a ``Relay``; non-blocking,
  it counts what it had to drop (``dropped``) when the relay is gone or full.
- ``Relay``: owned by the supervisor. It binds the ``Publisher`` and a private PULL socket
  (``ipc://`` in a temporary folder) and forwards from one to the other in a thread, so the public
  socket, and every subscriber's connection, survive a worker crash and restart.

Every socket is closed by its context manager (``linger`` bounded), never in ``__del__``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Protocol, Sequence, Union

from clipmg.model.errors import ClipmgError

from .config import ConfigError, check_endpoint
from .messages import Message, MessageError, WindowMessage, decode, encode, topic

log = logging.getLogger(__name__)


class PublisherError(ClipmgError, RuntimeError):
    """The socket could not be set up (a bad or busy endpoint, a bad key file); the message is one
    sentence saying what to do."""


def _zmq() -> Any:
    import zmq

    return zmq


def load_server_keys(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a ``zmq.auth`` secret certificate file."""
    import zmq.auth

    p = Path(path)
    if not p.is_file():
        raise PublisherError(
            f"CURVE secret key file {p} does not exist; create one with python -m clipmg.stream.publisher keys DIR"
        )
    try:
        public, secret = zmq.auth.load_certificate(p)
    except Exception as e:  # noqa: BLE001 - zmq.auth raises several types for bad files
        raise PublisherError(f"cannot read CURVE certificate {p} ({e})") from e
    if not secret:
        raise PublisherError(
            f"{p} holds only a public key; give the server's secret certificate (the *.key_secret file)"
        )
    return public, secret


def load_public_key(key: str) -> bytes:
    """A server public key given as a certificate file path or as the 40-character Z85 text."""
    p = Path(key)
    if p.is_file():
        import zmq.auth

        try:
            public, _ = zmq.auth.load_certificate(p)
        except Exception as e:  # noqa: BLE001 - zmq.auth raises several types for bad files
            raise PublisherError(f"--server-key {p}: cannot read it as a CURVE certificate ({e})") from None
        return public
    if len(key) == 40:
        return key.encode("ascii")
    raise PublisherError(f"--server-key {key!r} is neither a certificate file nor a 40-character Z85 key")


def make_keys(directory: str | os.PathLike, name: str = "server") -> tuple[Path, Path]:
    """Write a CURVE key pair ``<name>.key`` (public, give it to clients) and ``<name>.key_secret``."""
    import zmq.auth

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(d, name)
    return Path(public), Path(secret)


def start_allow_list(ctx: Any, allow_dir: str, extra_keys: Sequence[bytes] = ()) -> Any:
    """A started ZAP authenticator (``ThreadAuthenticator``; the caller stops it) admitting exactly the
    client public keys in ``allow_dir`` (``*.key`` certificates, ``--curve-allow``) and ``extra_keys``."""
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    d = Path(allow_dir)
    if not d.is_dir() or not any(d.glob("*.key")):
        raise PublisherError(f"--curve-allow {d} must be a folder of client public certificates (*.key)")
    try:
        keys = set(zmq.auth.load_certificates(str(d))) | {bytes(k) for k in extra_keys}
    except Exception as e:  # noqa: BLE001 - zmq.auth raises several types for bad files
        raise PublisherError(f"--curve-allow {d}: cannot read a certificate there ({e})") from e
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowList(keys))
    return auth


def curve_server(
    sock: Any, ctx: Any, secret_file: str, allow_dir: Optional[str] = None, extra_keys: Sequence[bytes] = ()
) -> tuple[bytes, Any]:
    """Make ``sock`` (a PUB or XPUB, before ``bind``) a CURVE server with the certificate ``secret_file``
    (``--curve-secret``), admitting only ``allow_dir``'s clients when given (``--curve-allow``).
    Returns ``(public key, authenticator or None)``; the caller stops the authenticator."""
    public, secret = load_server_keys(secret_file)
    auth = start_allow_list(ctx, allow_dir, extra_keys) if allow_dir else None
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return public, auth


def bind(sock: Any, endpoint: str, error: type, serves: str, others: str) -> None:
    """Bind ``sock`` to ``endpoint`` or raise ``error`` with one sentence; an address in use says what
    may hold it (``others``) and that ``--endpoint`` chooses another."""
    zmq = _zmq()
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        if e.errno == zmq.EADDRINUSE:
            raise error(
                f"cannot {serves} on {endpoint}: the address is already in use (is another {others} running?); "
                "stop it or choose another --endpoint"
            ) from None
        raise error(f"cannot bind {endpoint}: {e.strerror}") from None


class Publisher:
    """A bound PUB socket; ``send`` never blocks. Use as a context manager."""

    def __init__(
        self,
        endpoint: str,
        *,
        sndhwm: int = 100,
        allow_remote: bool = False,
        curve_secret_key: Optional[str] = None,
        curve_allow_dir: Optional[str] = None,
        curve_allow_keys: Sequence[bytes] = (),
        linger_ms: int = 200,
        context: Any = None,
    ) -> None:
        """``curve_allow_keys``: client public keys (Z85) admitted besides those in ``curve_allow_dir``
        (the supervisor's own listener)."""
        zmq = _zmq()
        try:
            remote = check_endpoint(endpoint, allow_remote)
        except ConfigError as e:
            raise PublisherError(str(e)) from e
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.auth: Any = None
        self.sent = 0
        self.dropped = 0
        self.sock = self.ctx.socket(zmq.PUB)
        try:
            self.sock.setsockopt(zmq.SNDHWM, sndhwm)
            self.sock.setsockopt(zmq.LINGER, linger_ms)
            if curve_secret_key:
                self.public_key, self.auth = curve_server(
                    self.sock, self.ctx, curve_secret_key, curve_allow_dir, curve_allow_keys
                )
            bind(self.sock, endpoint, PublisherError, "publish", "clipmg-live")
        except BaseException:
            self.close()
            raise
        self.endpoint: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT) or endpoint
        if remote:
            log.warning(
                "publishing on %s: reachable from other machines%s",
                self.endpoint,
                "" if curve_secret_key else " without encryption (consider --curve-secret)",
            )

    def send(self, topic_: bytes, payload: bytes) -> bool:
        """Send ``[topic, payload]``; returns False (and counts a drop) instead of blocking."""
        zmq = _zmq()
        try:
            self.sock.send_multipart([topic_, payload], flags=zmq.NOBLOCK, copy=len(payload) < 65536)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def publish(self, kind: str, stream: str, msg: Union[Message, Mapping[str, Any]], fmt: str = "json") -> bool:
        """Serialise ``msg`` first, then send it under ``mg.<kind>.<stream>``."""
        payload = encode(msg, fmt)
        return self.send(topic(kind, stream), payload)

    def close(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.close()
            self.sock = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self._own_ctx and self.ctx is not None:
            self.ctx.term()
            self.ctx = None

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AllowList:
    """ZAP credentials provider: admits exactly these client public keys (Z85 bytes)."""

    def __init__(self, keys: set) -> None:
        self.keys = frozenset(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


class Sender(Protocol):
    """What a worker sends its payloads through: ``Publisher``, ``Link``, or a collector (``drive.py``)."""

    dropped: int  # payloads it could not hand on (a full queue, a gone relay)

    def send(self, topic_: bytes, payload: bytes) -> bool: ...


class Link:
    """PUSH side of the worker -> relay hop; same ``send``/``publish`` as ``Publisher``."""

    def __init__(self, endpoint: str, *, sndhwm: int = 1000, linger_ms: int = 500) -> None:
        zmq = _zmq()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.sent = 0
        self.dropped = 0

    send = Publisher.send
    publish = Publisher.publish

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WindowTally:
    """What one stream published, counted from the window messages themselves (pure logic).

    ``windows``: window messages; ``skipped``: windows a worker reported skipping (it was late);
    ``restart_gap``: windows nobody computed because the worker was being restarted after a
    crash. Call ``new_run()`` when a worker (re)starts: its ``skipped`` counter starts over. For a
    stream without dropped messages, ``windows + skipped + restart_gap`` equals the span of window
    numbers from the first published window (plus the skips it reported) to the last.
    """

    def __init__(self) -> None:
        self.windows = self.skipped = self.restart_gap = 0
        self._last: Optional[tuple] = None  # (window, skipped) of the last window message
        self._new_run = True

    def new_run(self) -> None:
        self._new_run = True

    def update(self, window: int, skipped: int) -> None:
        if self._new_run or self._last is None:
            self.skipped += skipped
            if self._last is not None:
                self.restart_gap += max(0, window - self._last[0] - 1 - skipped)
        else:
            self.skipped += max(0, skipped - self._last[1])
        self.windows += 1
        self._last = (window, skipped)
        self._new_run = False


class Relay:
    """Binds the public ``Publisher`` and a private PULL endpoint; forwards in a thread.

    ``link_endpoint`` is what workers connect their ``Link`` to. Counters: ``forwarded``, and a
    ``WindowTally`` of the window messages forwarded for each stream (``tally_of(stream)``).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        sndhwm: int = 100,
        allow_remote: bool = False,
        curve_secret_key: Optional[str] = None,
        curve_allow_dir: Optional[str] = None,
        curve_allow_keys: Sequence[bytes] = (),
    ) -> None:
        zmq = _zmq()
        self.ctx = zmq.Context()
        self._tmp = tempfile.mkdtemp(prefix="clipmg-relay-")
        self.link_endpoint = f"ipc://{self._tmp}/link"
        self.pull = None
        self.pub: Optional[Publisher] = None
        self.forwarded = 0
        self.tallies: Dict[str, WindowTally] = {}
        self._tally_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        try:
            self.pub = Publisher(
                endpoint,
                sndhwm=sndhwm,
                allow_remote=allow_remote,
                context=self.ctx,
                curve_secret_key=curve_secret_key,
                curve_allow_dir=curve_allow_dir,
                curve_allow_keys=curve_allow_keys,
            )
            self.pull = self.ctx.socket(zmq.PULL)
            self.pull.setsockopt(zmq.RCVHWM, 1000)
            self.pull.setsockopt(zmq.LINGER, 0)
            self.pull.bind(self.link_endpoint)
        except BaseException:
            self.close()
            raise
        self.endpoint = self.pub.endpoint
        self._thread = threading.Thread(target=self._run, name="clipmg-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        zmq = _zmq()
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            while True:  # drain what is queued, never blocking
                try:
                    frames: Sequence[Any] = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)  # type: ignore[union-attr]
                except zmq.Again:
                    break
                if len(frames) == 2 and self.pub is not None:
                    top, payload = frames[0].bytes, frames[1].bytes
                    self.pub.send(top, payload)
                    self.forwarded += 1
                    if top.startswith(b"mg.window."):
                        self._count(payload)

    def _count(self, payload: bytes) -> None:
        try:
            msg = decode(payload)
        except MessageError:
            return  # not a message this version understands: forwarded, not counted
        if isinstance(msg, WindowMessage):
            self.tally_of(msg.stream).update(msg.window, msg.skipped)

    def tally_of(self, stream: str) -> WindowTally:
        """The window messages forwarded for ``stream`` (an empty tally before its first)."""
        with self._tally_lock:
            t = self.tallies.get(stream)
            if t is None:
                t = self.tallies[stream] = WindowTally()
            return t

    @property
    def dropped(self) -> int:
        return self.pub.dropped if self.pub is not None else 0

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.pull is not None:
            self.pull.close()
            self.pull = None
        if self.pub is not None:
            self.pub.close()
            self.pub = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m clipmg.stream.publisher keys DIR [NAME]``: create a CURVE key pair."""

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[0] != "keys":
        print(
            "usage: python -m clipmg.stream.publisher keys DIR [NAME]   (NAME: server, or a client's name)",
            file=sys.stderr,
        )
        return 2
    public, secret = make_keys(args[1], args[2] if len(args) == 3 else "server")
    print(
        f"public key (give it to clients / put client keys in the --curve-allow folder): {public}\n"
        f"secret key (keep it private; --curve-secret / --client-cert): {secret}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
