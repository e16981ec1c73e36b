"""``--web [HOST:]PORT``: the live view in a browser, served from inside the supervisor.

A small aiohttp server on its own thread and event loop. It is one more ZeroMQ subscriber of the
relay's public socket (so it sees exactly what every client sees, and can never hold the worker
back: a SUB socket drops past its high-water mark) and the PULL end of a frame channel the worker's
annotator pushes JPEGs into at ``--web-fps`` at most (``webhub.FrameSink``: two frames queued, then
dropped). Every page is a ``webhub.Client`` with a bounded queue; a page that stops reading blocks
only its own coroutine and loses its oldest messages.

What it serves (read-only: GET and HEAD only, nothing is uploaded or run):

- ``/``: the page (``web_static/``: plain HTML, CSS and JavaScript, no build step, nothing from
  elsewhere), ``/static/NAME``: the files of that folder, by name, and nothing else;
- ``/ws``: every window, event and status message as ``{"topic": ..., "message": <the payload>}``
  (a new page first gets each stream's recent windows and events and its newest status);
  ``/ws/frames``: the newest annotated JPEG of each stream, as binary messages
  ``[len(stream)][stream][JPEG]``;
- ``/api/streams``, ``/api/streams/ID``: the same data as JSON; ``/api/streams/ID/frame.jpg`` and
  ``/api/streams/ID/mjpeg`` (multipart, for an ``<img>`` or a video player);
  ``/api/streams/ID/recording``: the ``--record`` video; ``/api/schema``: the messages' JSON Schema.

Security: loopback by default and only loopback ``Host`` headers accepted there (DNS rebinding);
another interface needs ``--allow-remote`` and a token (``--web-token-env``/``--web-token-file``),
checked on every request (``Authorization: Bearer``, ``?token=`` which a page exchanges for an
HttpOnly cookie, or that cookie); WebSockets must come from the page's own origin; strict security
headers (CSP ``default-src 'none'``). No access log: request lines can hold the token, and the URL
the supervisor prints has it masked (``redact.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hmac
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Set, Tuple
from urllib.parse import urlsplit

from clipmg.model.errors import ClipmgError

from .config import parse_web_address, web_is_loopback
from .messages import schema_json
from .webhub import Hub

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("web_static")
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
COOKIE = "clipmg_web_token"
MAX_LIVE = 32  # WebSocket and MJPEG connections at once; more are refused (503)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class WebError(ClipmgError, RuntimeError):
    """The web view cannot start (the port is taken, the address cannot be bound): one sentence."""


def load_static(folder: Path = STATIC) -> Dict[str, Tuple[bytes, str]]:
    """``{name: (content, content type)}`` of the regular files directly in ``folder``: read once, so
    nothing a request names can reach another file (no path is ever built from a request)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.is_symlink() and p.suffix in STATIC_TYPES:
            out[p.name] = (p.read_bytes(), STATIC_TYPES[p.suffix])
    return out


def page_url(host: str, port: int, token: Optional[str] = None) -> str:
    """The address to open (``token`` added as ``?token=``, which ``redact_url`` masks when printed)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


class WebServer:
    """The web view: binds in the constructor (``WebError`` when it cannot), serves on a thread until
    ``close``. Use as a context manager."""

    def __init__(
        self,
        address: str,
        *,
        endpoint: str,
        token: Optional[str] = None,
        recordings: Optional[Dict[str, str]] = None,
        server_key: Optional[bytes] = None,
        client_keys: Optional[Tuple[bytes, bytes]] = None,
    ) -> None:
        """``endpoint``: the relay's public socket, as a client connects to it; ``recordings``:
        ``{stream: annotated video path}``; ``server_key``/``client_keys``: CURVE, when the relay
        uses it (the client key pair must be on its allow-list, if it has one)."""
        self.host, port = parse_web_address(address)
        self.endpoint, self.token = endpoint, token
        self.server_key, self.client_keys = server_key, client_keys
        self.loopback = web_is_loopback(self.host)
        self.hub = Hub(recordings)
        self.static = load_static()
        self._tmp = tempfile.mkdtemp(prefix="clipmg-web-")  # private (0700): only this user can push frames
        self.frames_endpoint = f"ipc://{self._tmp}/frames"
        self._live: Set[asyncio.Task] = set()
        self._frame_waiters: Set[asyncio.Event] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._ready: "concurrent.futures.Future[int]" = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(port,), name="clipmg-web", daemon=True)
        self._thread.start()
        try:
            self.port = self._ready.result(timeout=60)
        except OSError as e:
            self._thread.join(5)
            shutil.rmtree(self._tmp, ignore_errors=True)
            why = "the address is already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise WebError(f"cannot serve the web view on {address}: {why}; choose another --web port") from None
        if not self.loopback:
            log.warning("web view on %s: reachable from other machines (token required)", self.url(False))

    def url(self, with_token: bool = True) -> str:
        return page_url(self.host, self.port, self.token if with_token else None)

    # ------------------------------------------------------------------ the thread
    def _main(self, port: int) -> None:
        try:
            asyncio.run(self._serve(port))
        except BaseException as e:  # noqa: BLE001 - reported to the constructor, or logged once running
            if not self._ready.done():
                self._ready.set_exception(e)
            else:
                log.error("the web view stopped: %s", e)

    async def _serve(self, port: int) -> None:
        import zmq
        import zmq.asyncio
        from aiohttp import web

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        ctx = zmq.asyncio.Context()
        sub, pull = ctx.socket(zmq.SUB), ctx.socket(zmq.PULL)
        tasks = []
        try:
            site = web.TCPSite(runner, self.host, port)
            await site.start()
            bound = runner.addresses[0][1]
            for s in (sub, pull):
                s.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 1000)
            if self.server_key is not None:
                public, secret = self.client_keys or zmq.curve_keypair()
                sub.curve_serverkey, sub.curve_publickey, sub.curve_secretkey = self.server_key, public, secret
            sub.setsockopt(zmq.SUBSCRIBE, b"mg.")
            sub.connect(self.endpoint)
            pull.setsockopt(zmq.RCVHWM, 2)
            pull.bind(self.frames_endpoint)
            tasks = [asyncio.create_task(self._pump_messages(sub)), asyncio.create_task(self._pump_frames(pull))]
            self._ready.set_result(bound)
            await self._stop.wait()
        finally:
            for t in [*tasks, *self._live]:
                t.cancel()
            await asyncio.gather(*tasks, *self._live, return_exceptions=True)
            await runner.cleanup()
            sub.close()
            pull.close()
            ctx.term()

    async def _pump_messages(self, sub: Any) -> None:
        while True:
            frames = await sub.recv_multipart()
            if len(frames) == 2:
                self.hub.on_message(frames[0], frames[1])

    async def _pump_frames(self, pull: Any) -> None:
        while True:
            frames = await pull.recv_multipart()
            if len(frames) == 2 and self.hub.on_frame(frames[0], frames[1]):
                for ev in self._frame_waiters:
                    ev.set()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop has already ended
                pass
        self._thread.join(10)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "WebServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the application
    def _app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def guard(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=1024)
        app.on_response_prepare.append(self._headers)
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/static/{name}", self._static)
        r.add_get("/api/streams", self._streams)
        r.add_get("/api/schema", self._schema)
        r.add_get("/api/streams/{stream}", self._stream)
        r.add_get("/api/streams/{stream}/frame.jpg", self._frame)
        r.add_get("/api/streams/{stream}/mjpeg", self._mjpeg)
        r.add_get("/api/streams/{stream}/recording", self._recording)
        r.add_get("/ws", self._ws_messages)
        r.add_get("/ws/frames", self._ws_frames)
        return app

    @staticmethod
    async def _headers(request: Any, response: Any) -> None:
        response.headers.update(SECURITY_HEADERS)

    def _host_ok(self, request: Any) -> bool:
        """On loopback, only a loopback ``Host`` (a page of another site that rebinds its name to
        127.0.0.1 must not read this one)."""
        if not self.loopback:
            return True
        host = urlsplit(f"//{request.host}").hostname or ""
        return host in LOOPBACK_NAMES or host.startswith("127.")

    def _token_given(self, request: Any) -> str:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :].strip()
        return request.query.get("token") or request.cookies.get(COOKIE) or ""

    async def _guard(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        from aiohttp import web

        if not self._host_ok(request):
            return web.Response(status=403, text="unexpected Host header\n")
        if self.token is not None:
            given = self._token_given(request)
            if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
                return web.Response(status=401, text="a token is required (open the URL clipmg-live printed)\n")
            if "token" in request.query:  # swap the URL's token for a cookie, and drop it from the address bar
                resp = web.HTTPFound(request.rel_url.path)
                resp.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
                raise resp
        return await handler(request)

    def _json(self, data: Any, status: int = 200) -> Any:
        from aiohttp import web

        return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))

    async def _index(self, request: Any) -> Any:
        return self._file("index.html")

    async def _static(self, request: Any) -> Any:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> Any:
        from aiohttp import web

        if name not in self.static:
            raise web.HTTPNotFound()
        body, ctype = self.static[name]
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def _streams(self, request: Any) -> Any:
        return self._json({"streams": [v.snapshot() for v in self.hub.streams.values()]})

    async def _schema(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(text=schema_json(), content_type="application/json")

    def _view(self, request: Any) -> Any:
        from aiohttp import web

        v = self.hub.streams.get(request.match_info["stream"])
        if v is None:
            raise web.HTTPNotFound(text="no such stream\n")
        return v

    async def _stream(self, request: Any) -> Any:
        return self._json(self._view(request).snapshot())

    async def _frame(self, request: Any) -> Any:
        from aiohttp import web

        v = self._view(request)
        if not v.frames:
            raise web.HTTPNotFound(text="no frame yet\n")
        return web.Response(body=v.frame, content_type="image/jpeg")

    async def _recording(self, request: Any) -> Any:
        from aiohttp import web

        v = self._view(request)
        if v.recording is None or not Path(v.recording).is_file():
            raise web.HTTPNotFound(text="no annotated video (run with --record OUT.mp4)\n")
        name = Path(v.recording).name
        kind = "video/x-msvideo" if name.lower().endswith(".avi") else "video/mp4"
        return web.FileResponse(
            v.recording, headers={"Content-Type": kind, "Content-Disposition": f'attachment; filename="{name}"'}
        )

    # ------------------------------------------------------------------ long-lived responses
    def _enter_live(self) -> None:
        from aiohttp import web

        if len(self._live) >= MAX_LIVE:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_LIVE} live connections\n")
        task = asyncio.current_task()
        assert task is not None
        self._live.add(task)

    def _same_origin(self, request: Any) -> None:
        """A WebSocket from a page of another site (browsers send its Origin) is refused."""
        from aiohttp import web

        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="cross-origin WebSocket refused\n")

    async def _ws_messages(self, request: Any) -> Any:
        from aiohttp import web

        self._same_origin(request)
        self._enter_live()
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024)
        wake = asyncio.Event()
        client = None
        try:
            await ws.prepare(request)
            reader = asyncio.create_task(self._ignore_input(ws, wake))
            client = self.hub.connect(wake.set)
            while not ws.closed:
                await wake.wait()
                wake.clear()
                while client.queue and not ws.closed:
                    await ws.send_str(client.queue.popleft())
            reader.cancel()
        finally:
            if client is not None:
                self.hub.disconnect(client)
            self._live.discard(asyncio.current_task())  # type: ignore[arg-type]
        return ws

    async def _ws_frames(self, request: Any) -> Any:
        from aiohttp import web

        self._same_origin(request)
        self._enter_live()
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024)
        wake = asyncio.Event()
        wake.set()
        self._frame_waiters.add(wake)
        seen: Dict[str, int] = {}
        try:
            await ws.prepare(request)
            reader = asyncio.create_task(self._ignore_input(ws, wake))
            while not ws.closed:
                await wake.wait()
                wake.clear()
                for name, jpeg in self.hub.newest_frames(seen):  # a slow page skips frames: only the newest
                    if ws.closed:
                        break
                    await ws.send_bytes(bytes([len(name)]) + name.encode("ascii") + jpeg)
            reader.cancel()
        finally:
            self._frame_waiters.discard(wake)
            self._live.discard(asyncio.current_task())  # type: ignore[arg-type]
        return ws

    @staticmethod
    async def _ignore_input(ws: Any, wake: asyncio.Event) -> None:
        """Read the page's side (pings, the close) and drop whatever it sends: the view is read-only."""
        try:
            async for _ in ws:
                pass
        finally:
            wake.set()

    async def _mjpeg(self, request: Any) -> Any:
        from aiohttp import web

        v = self._view(request)
        self._enter_live()
        wake = asyncio.Event()
        wake.set()
        self._frame_waiters.add(wake)
        resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        last = 0
        try:
            await resp.prepare(request)
            while True:
                await wake.wait()
                wake.clear()
                if v.frames != last:
                    last, jpeg = v.frames, v.frame
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    await resp.write(head + jpeg + b"\r\n")  # a reader that stopped blocks only this coroutine
        except ConnectionResetError:  # the page went away
            pass
        finally:
            self._frame_waiters.discard(wake)
            self._live.discard(asyncio.current_task())  # type: ignore[arg-type]
        return resp


def open_web(cfg: Any, endpoint: str, server_key: Optional[bytes], client_keys: Optional[Tuple[bytes, bytes]]) -> Any:
    """The supervisor's web view for ``cfg`` (``None`` without ``--web``): subscribed to ``endpoint``;
    ``WebError`` when it cannot serve."""
    if cfg.web is None:
        return None
    recordings = {cfg.stream_id: str(Path(cfg.record).resolve())} if cfg.record else {}
    return WebServer(
        cfg.web,
        endpoint=endpoint,
        token=cfg.web_token,
        recordings=recordings,
        server_key=server_key,
        client_keys=client_keys,
    )
