"""What the web view knows about each stream, and the worker's end of the frame channel.

``Hub`` is bookkeeping without sockets or an event loop (the web server, ``web.py``, feeds it and
reads it on its one event-loop thread): the newest status, a timeline of recent window messages and
the recent events of every stream, each kept as the exact message a ZeroMQ subscriber received, and
the newest annotated JPEG. Every connected page is a ``Client`` with a bounded queue: a page that
reads too slowly loses its oldest messages (counted), never slows the hub, the relay or the worker.

``FrameSink`` is the worker's side: the annotator thread hands it annotated frames and it JPEG-codes
and sends at most ``fps`` of them a second, without ever blocking (a full channel drops the frame).
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

import cv2

from .messages import STREAM_ID_PATTERN, MessageError, decode, encode, to_dict

TIMELINE = 120  # window messages kept per stream (the page's scrolling timeline; a new page gets them)
EVENTS = 50  # event messages kept per stream
CLIENT_QUEUE = 256  # messages waiting for one page before its oldest are dropped
JPEG_QUALITY = 75
_STREAM = re.compile(STREAM_ID_PATTERN)
_TOPIC = re.compile(r"^mg\.(window|event|status)\.([A-Za-z0-9_-]{1,64})$")


@dataclass
class StreamView:
    """One stream as the web view shows it: the messages exactly as published, and its newest frame."""

    stream: str
    status: Optional[Dict[str, Any]] = None
    windows: Deque[Dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TIMELINE))
    events: Deque[Dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS))
    texts: Deque[str] = field(default_factory=lambda: deque(maxlen=TIMELINE + EVENTS + 1))  # replayed to a new page
    frame: bytes = b""  # the newest annotated JPEG
    frames: int = 0  # JPEGs received (the newest one's number)
    recording: Optional[str] = None  # the annotated video's file (--record)

    def snapshot(self) -> Dict[str, Any]:
        return {
            "stream": self.stream,
            "status": self.status,
            "windows": list(self.windows),
            "events": list(self.events),
            "frames": self.frames,
            "recording": self.recording is not None,
        }


class Client:
    """One connected page: messages wait in a bounded queue; ``notify`` wakes its sender."""

    def __init__(self, notify: Callable[[], None], size: int = CLIENT_QUEUE) -> None:
        self.queue: Deque[str] = deque()
        self.size, self.notify, self.dropped = size, notify, 0

    def offer(self, text: str) -> None:
        if len(self.queue) >= self.size:  # the page is behind: its oldest message goes, the newest stays
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(text)
        self.notify()


class Hub:
    """Every stream the relay has published, and the pages watching (used on one thread)."""

    def __init__(self, recordings: Optional[Dict[str, str]] = None) -> None:
        self.streams: Dict[str, StreamView] = {}
        self.clients: Set[Client] = set()
        self.recordings = dict(recordings or {})
        self.frame_version = 0  # bumped on every new frame of any stream
        self.received = self.malformed = 0
        for s in self.recordings:
            self.view(s)

    def view(self, stream: str) -> StreamView:
        v = self.streams.get(stream)
        if v is None:
            v = self.streams[stream] = StreamView(stream, recording=self.recordings.get(stream))
        return v

    def on_message(self, topic: bytes, payload: bytes) -> Optional[str]:
        """File one ``[topic, payload]`` of the relay and pass it to every page; returns the text the
        pages get, ``{"topic": ..., "message": <the payload>}`` (the JSON payload byte for byte; a
        msgpack one as JSON), or ``None`` for something that is not a clipmg message (counted)."""
        m = _TOPIC.match(topic.decode("ascii", "replace"))
        try:
            if m is None:
                raise MessageError("not a clipmg topic")
            msg = to_dict(decode(payload))  # validated, kept as the plain map the page and the API serve
            body = payload.decode("utf-8") if payload[:1] == b"{" else encode(msg, "json").decode("utf-8")
        except (MessageError, UnicodeDecodeError):
            self.malformed += 1
            return None
        kind, stream = m.group(1), m.group(2)
        self.received += 1
        text = f'{{"topic":{json.dumps(m.group(0))},"message":{body}}}'
        v = self.view(stream)
        if kind == "status":
            v.status = msg
        else:
            (v.windows if kind == "window" else v.events).append(msg)
            v.texts.append(text)
        for c in list(self.clients):
            c.offer(text)
        return text

    def on_frame(self, stream: bytes, jpeg: bytes) -> bool:
        """Keep ``jpeg`` as the newest frame of ``stream`` (False: not a stream id, or not a JPEG)."""
        name = stream.decode("ascii", "replace")
        if not _STREAM.match(name) or jpeg[:3] != b"\xff\xd8\xff":
            self.malformed += 1
            return False
        v = self.view(name)
        v.frame, v.frames = bytes(jpeg), v.frames + 1
        self.frame_version += 1
        return True

    def history(self) -> List[str]:
        """What a page that connects now is sent first: each stream's recent windows and events,
        then its newest status."""
        out: List[str] = []
        for v in self.streams.values():
            out.extend(v.texts)
            if v.status is not None:
                body = json.dumps(v.status, separators=(",", ":"), ensure_ascii=False)
                out.append(f'{{"topic":"mg.status.{v.stream}","message":{body}}}')
        return out

    def connect(self, notify: Callable[[], None], size: int = CLIENT_QUEUE) -> Client:
        """A new page: its queue starts with the history, then every message from now on."""
        c = Client(notify, size)
        for text in self.history()[-size:]:
            c.queue.append(text)
        self.clients.add(c)
        notify()
        return c

    def disconnect(self, c: Client) -> None:
        self.clients.discard(c)

    def newest_frames(self, seen: Dict[str, int]) -> List[Tuple[str, bytes]]:
        """The frames of the streams whose newest frame is not the one in ``seen`` (updated)."""
        out = []
        for name, v in self.streams.items():
            if v.frames and seen.get(name) != v.frames:
                seen[name] = v.frames
                out.append((name, v.frame))
        return out


class FrameSink:
    """The worker's end of the frame channel: a PUSH socket connected to the web view's PULL.

    Used from one thread (the annotator's), which also creates the socket. ``due()`` says whether a
    frame would be sent now (the cap: ``fps`` a second), so the annotator skips drawing frames nobody
    will see; ``send`` JPEG-codes one BGR image and sends ``[stream, jpeg]`` without blocking."""

    def __init__(self, endpoint: str, stream: str, fps: float, quality: int = JPEG_QUALITY) -> None:
        self.endpoint, self.stream, self.quality = endpoint, stream.encode("ascii"), quality
        self.interval = 1.0 / fps
        self._next = 0.0
        self.sent = self.dropped = 0
        self._ctx: Any = None
        self._sock: Any = None

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def send(self, bgr: Any) -> bool:
        import zmq

        self._next = time.monotonic() + self.interval
        if self._sock is None:
            self._ctx = zmq.Context()
            self._sock = self._ctx.socket(zmq.PUSH)
            self._sock.setsockopt(zmq.SNDHWM, 2)  # a web view that is not reading holds at most two frames
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.connect(self.endpoint)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            self.dropped += 1
            return False
        try:
            self._sock.send_multipart([self.stream, buf.tobytes()], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
