"""The web view's server (``stream/web.py``, ``webhub.py``) with real sockets: a real ZeroMQ
publisher feeds it window/event/status messages of two streams, real ``FrameSink``s push JPEGs,
and real HTTP and WebSocket clients read what a page reads. Security: read-only, nothing but the
static folder, tokens, the Host and Origin checks, and a client that stops reading never holds
anyone back. (The page in a real browser: ``test_web_browser.py``.)
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest
from live_harness import endpoint, wait_for

pytest.importorskip("aiohttp")

from clipmg.stream.display import Annotator, Overlay  # noqa: E402
from clipmg.stream.messages import (  # noqa: E402
    encode,
    event_message,
    status_message,
    to_dict,
    topic,
    validate,
    window_message,
)
from clipmg.stream.publisher import Publisher  # noqa: E402
from clipmg.stream.web import WebServer  # noqa: E402
from clipmg.stream.webhub import FrameSink, Hub  # noqa: E402

TOKEN = "s3cret-token-0123456789"
MODEL = {"preset": "clipmg-tiny", "backend": "onnxruntime", "precision": "fp32", "checkpoint_sha256": "0" * 64}


def _window(stream: str, n: int, label: str = "fold arm", p: float = 0.8, logits: int = 0) -> Dict[str, Any]:
    return to_dict(
        window_message(
            logits=[0.123456789 + i for i in range(logits)] if logits else None,
            stream=stream,
            window=n,
            pose_seqs=list(range(n * 8, n * 8 + 32)),
            rgb_seqs=list(range(n * 8, n * 8 + 32, 4)),
            t_wall=[1000.0 + n + i / 25 for i in range(32)],
            stride=8,
            pose_every=1,
            t_publish=time.time(),
            latency_ms={"pose": 5.0, "encode": 3.0, "head": 2.0, "publish": 0.1, "capture_to_publish": 12.5},
            computed={"pose_samples": 8, "rgb_encoded": 2},
            person=True,
            person_fraction=1.0,
            topk=[(3, label, p), (0, "touch chin", 0.1), (1, "rub eyes", 0.05)],
            label=label,
            p=p,
            model=MODEL,
            skipped=0,
        )
    )


def _event(stream: str, n: int) -> Dict[str, Any]:
    return to_dict(
        event_message(
            stream=stream,
            kind="start",
            label="fold arm",
            window=n,
            window_start=n,
            t=1000.0 + n,
            t_start=1000.0 + n,
            confidence=0.8,
            t_publish=time.time(),
        )
    )


def _status(stream: str) -> Dict[str, Any]:
    return to_dict(
        status_message(
            stream=stream,
            state="running",
            t_publish=time.time(),
            source={"state": "streaming", "spec": "rtsp://***:***@cam/1"},
            fps_in=25.0,
            windows=3,
        )
    )


class Feed:
    """A real PUB socket standing in for the relay, publishing until stopped."""

    def __init__(self, ep: str) -> None:
        self.pub = Publisher(ep)
        self.sent: List[Tuple[bytes, bytes]] = []

    def send(self, kind: str, msg: Dict[str, Any], fmt: str = "json") -> None:
        t, payload = topic(kind, msg["stream"]), encode(msg, fmt)
        self.pub.send(t, payload)
        self.sent.append((t, payload))


@pytest.fixture
def served() -> Iterator[Tuple[WebServer, Feed]]:
    ep = endpoint()
    feed = Feed(ep)
    server = WebServer("127.0.0.1:0", endpoint=ep)
    try:
        # the subscription takes a moment (ZeroMQ's slow joiner): publish status until it is seen
        wait_for(lambda: feed.send("status", _status("cam0")) or server.hub.received, 30, "the first message")
        yield server, feed
    finally:
        server.close()
        feed.pub.close()


def _get(server: WebServer, path: str, headers: Dict[str, str] | None = None, method: str = "GET") -> Any:
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def _raw(server: WebServer, request: bytes, head_only: bool = False) -> bytes:
    """A request line sent as is (no client library normalises the path); the reply until the
    server closes (or, ``head_only``, its status line and headers)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        out = b""
        while not (head_only and b"\r\n\r\n" in out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _push_frames(server: WebServer, streams: List[str], n: int = 3) -> None:
    img = np.full((120, 160, 3), 90, np.uint8)
    sinks = [FrameSink(server.frames_endpoint, s, fps=1000.0) for s in streams]
    try:
        for s in sinks:
            wait_for(
                lambda s=s: (
                    s.send(img)
                    and server.hub.streams.get(s.stream.decode())
                    and server.hub.streams[s.stream.decode()].frames >= n
                ),
                30,
                f"frames of {s.stream!r}",
            )
    finally:
        for s in sinks:
            s.close()


def test_streams_messages_and_frames_of_two_streams(served: Tuple[WebServer, Feed]) -> None:
    server, feed = served
    for s in ("cam0", "door"):
        for n in range(3):
            feed.send("window", _window(s, n))
        feed.send("event", _event(s, 2))
        feed.send("status", _status(s))
    _push_frames(server, ["cam0", "door"])
    wait_for(lambda: all(len(server.hub.view(s).windows) == 3 for s in ("cam0", "door")), 30, "the windows")
    status, headers, body = _get(server, "/api/streams")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    streams = {s["stream"]: s for s in json.loads(body)["streams"]}
    assert set(streams) == {"cam0", "door"}
    for s in streams.values():
        assert [w["window"] for w in s["windows"]] == [0, 1, 2] and s["frames"] >= 3
        assert s["events"][0]["event"] == "start" and s["status"]["state"] == "running"
        for m in (*s["windows"], *s["events"], s["status"]):
            validate(m)  # the messages exactly as on ZeroMQ: the schema holds
    status, headers, jpeg = _get(server, "/api/streams/door/frame.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:3] == b"\xff\xd8\xff"
    status, _, body = _get(server, "/api/schema")
    assert status == 200 and json.loads(body) and b"clipmg.window" in body
    assert _get(server, "/api/streams/nope")[0] == 404


def test_websocket_gives_the_zeromq_payloads_byte_for_byte_history_first(served: Tuple[WebServer, Feed]) -> None:
    import aiohttp

    server, feed = served
    early = _window("cam0", 0)
    feed.send("window", early)
    wait_for(lambda: server.hub.view("cam0").windows, 30, "the first window")

    async def read() -> Tuple[List[Dict[str, Any]], List[bytes]]:
        got: List[Dict[str, Any]] = []
        frames: List[bytes] = []
        async with aiohttp.ClientSession() as http_:
            async with http_.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
                async with http_.ws_connect(f"http://127.0.0.1:{server.port}/ws/frames") as wf:
                    feed.send("window", _window("cam0", 1, "rub eyes", 0.7))
                    feed.send("event", _event("cam0", 1))
                    feed.send("window", _window("cam0", 2), fmt="msgpack")
                    await asyncio.get_running_loop().run_in_executor(None, _push_frames, server, ["cam0"], 2)
                    while sum(1 for m in got if m["topic"] == "mg.window.cam0") < 3:
                        got.append(json.loads((await asyncio.wait_for(ws.receive(), 30)).data))
                    frames.append((await asyncio.wait_for(wf.receive(), 30)).data)
        return got, frames

    got, frames = asyncio.run(read())
    windows = [m for m in got if m["topic"] == "mg.window.cam0"]
    assert windows[0]["message"] == early  # the history came first
    assert [w["message"]["window"] for w in windows] == [0, 1, 2]
    assert any(m["topic"] == "mg.event.cam0" for m in got)
    # a JSON payload is passed on byte for byte: the text holds it verbatim
    sent = dict((t, p) for t, p in feed.sent if b"window" in t and b'"window":1,' in p)
    assert len(sent) == 1
    frame = frames[0]
    n = frame[0]
    assert frame[1 : 1 + n] == b"cam0" and frame[1 + n : 4 + n] == b"\xff\xd8\xff"


def test_the_websocket_text_holds_the_payload_verbatim() -> None:
    hub = Hub()
    payload = encode(_window("cam0", 7))
    text = hub.on_message(topic("window", "cam0"), payload)
    assert text == '{"topic":"mg.window.cam0","message":' + payload.decode() + "}"
    assert hub.on_message(b"mg.window.cam0", b"not a message") is None and hub.malformed == 1
    assert hub.on_message(b"other.topic", payload) is None
    assert not hub.on_frame(b"../etc", b"\xff\xd8\xff...") and not hub.on_frame(b"cam0", b"GIF89a")


@pytest.mark.parametrize(
    "path",
    [
        b"/static/../web.py",
        b"/static/..%2fweb.py",
        b"/static/%2e%2e/web.py",
        b"/static/%2e%2e%2fconfig.py",
        b"/static/../../model/config.py",
        b"/../stream/web.py",
        b"/static//etc/passwd",
        b"/static/%2fetc%2fpasswd",
        b"/static/....//web.py",
        b"/static/app.js/../../web.py",
        b"/static/.",
        b"/static/",
        b"/api/streams/..%2f..%2fweb.py/recording",
    ],
)
def test_nothing_outside_the_static_folder_is_served(served: Tuple[WebServer, Feed], path: bytes) -> None:
    server, _ = served
    reply = _raw(server, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status in (400, 403, 404), head
    for secret in (b"import", b"root:", b"def ", b"class "):
        assert secret not in body


def test_read_only_and_security_headers(served: Tuple[WebServer, Feed]) -> None:
    server, _ = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/api/streams", "/static/app.js", "/ws"):
            assert _get(server, path, method=method)[0] in (404, 405), (method, path)
    status, headers, body = _get(server, "/")
    assert status == 200 and b"clipmg live" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    assert b"http://" not in body and b"https://" not in body  # nothing from elsewhere
    for name in ("app.js", "style.css"):
        s, h, b = _get(server, f"/static/{name}")
        assert s == 200 and "http://" not in b.decode() and "https://" not in b.decode()
    # DNS rebinding: a page of another name resolved to 127.0.0.1 is refused
    assert _get(server, "/api/streams", {"Host": "evil.example:80"})[0] == 403
    assert _get(server, "/api/streams", {"Host": f"localhost:{server.port}"})[0] == 200


def test_a_cross_origin_websocket_is_refused(served: Tuple[WebServer, Feed]) -> None:
    server, _ = served
    req = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://evil.example\r\n\r\n"
    ).encode()
    assert b" 403 " in _raw(server, req, head_only=True).split(b"\r\n")[0]


def test_a_token_guards_every_request() -> None:
    ep = endpoint()
    with Publisher(ep), WebServer("127.0.0.1:0", endpoint=ep, token=TOKEN) as server:
        assert "token=" + TOKEN in server.url()
        for path in ("/", "/static/app.js", "/api/streams", "/api/schema", "/ws"):
            assert _get(server, path)[0] == 401
            assert _get(server, path + "?token=wrong-token-0123456789")[0] == 401
        assert _get(server, "/api/streams", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, headers, _ = _get(server, f"/?token={TOKEN}")
        assert status == 302 and headers["Location"] == "/"  # the token leaves the address bar...
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie  # ...for a cookie scripts cannot read
        assert _get(server, "/api/streams", {"Cookie": cookie.split(";")[0]})[0] == 200


def test_a_client_that_stops_reading_holds_nobody_back(served: Tuple[WebServer, Feed]) -> None:
    """Two clients that never read (a WebSocket and an MJPEG stream, with a tiny receive buffer) while
    big frames and many messages flow: another client still gets every message promptly, and the
    server's memory for the stalled ones stays bounded (their queues drop the oldest)."""
    import aiohttp

    server, feed = served
    stalled = []
    for path in ("/ws", "/api/streams/cam0/mjpeg"):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", server.port))
        extra = (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            if path == "/ws"
            else ""
        )
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{extra}\r\n".encode())
        stalled.append(s)
    try:
        wait_for(lambda: len(server.hub.clients) >= 1 and len(server._live) >= 2, 30, "the stalled clients")
        noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # JPEGs that do not compress

        async def watch() -> float:
            async with aiohttp.ClientSession() as http_:
                async with http_.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
                    sink = FrameSink(server.frames_endpoint, "cam0", fps=1000.0)
                    t0 = time.monotonic()
                    last = -1
                    for n in range(600):
                        feed.send("window", _window("cam0", 1000 + n, logits=2000))  # about 40 kB each
                        if n % 10 == 0:
                            await asyncio.get_running_loop().run_in_executor(None, sink.send, noise)
                        while True:  # this client keeps up with every message
                            m = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
                            if m["topic"] == "mg.window.cam0":
                                last = m["message"]["window"]
                            if last == 1000 + n:
                                break
                    sink.close()
                    return time.monotonic() - t0

        elapsed = asyncio.run(watch())
        assert elapsed < 60, f"600 messages took {elapsed:.1f} s with two stalled clients"
        stuck = [c for c in server.hub.clients if c.dropped]
        assert stuck and all(len(c.queue) <= c.size for c in server.hub.clients)
    finally:
        for s in stalled:
            s.close()


def test_the_annotator_sends_at_most_its_rate_and_never_blocks() -> None:
    """No web view reads the channel: ``submit`` still returns at once, and frames beyond the cap
    are not even drawn."""
    sink = FrameSink("ipc:///tmp/clipmg-nobody-reads-this", "cam0", fps=5.0)
    img = np.zeros((120, 160, 3), np.uint8)
    with Annotator(sink=sink) as annot:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            s = time.perf_counter()
            annot.submit(img, None, Overlay(top=[("fold arm", 0.9)], label="fold arm", event="fold arm"))
            assert time.perf_counter() - s < 0.05
            time.sleep(0.01)
    assert 5 <= sink.sent + sink.dropped <= 12  # 5 a second over 2 s, give or take the edges
