"""``StreamConfig``: every setting of the live recognizer in one frozen dataclass.

The supervisor builds it from the command line (``clipmg-live``); the capture and worker processes
receive it as their first argument (it pickles, so it crosses the ``spawn`` boundary as is).
``validate()`` turns every bad combination into one ``ConfigError`` sentence that says what to do.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Optional, Tuple
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
POSE_BACKENDS: Tuple[str, ...] = ("synthetic", "mediapipe", "openpose", "replay")
FORMATS: Tuple[str, ...] = ("json", "msgpack")
NO_PERSON_POLICIES: Tuple[str, ...] = ("answer", "none")
STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one sentence saying what to change."""


@dataclass(frozen=True)
class StreamConfig:
    """Settings of one live stream: capture, scheduling, engine, publishing, supervision."""

    # --- capture -------------------------------------------------------------------------------
    source: str = "synthetic"  # webcam index, RTSP/HTTP URL, video file, image folder or 'synthetic'
    stream_id: str = "cam0"  # names the stream in topics (mg.window.<stream_id>) and messages
    pace: bool = True  # files: play at their own fps (False: as fast as possible, for benchmarks)
    ring_slots: int = 64  # frames the shared-memory ring holds (drop-oldest when full)
    max_height: int = 720  # largest frame height the ring accepts (bigger frames are resized)
    max_width: int = 1280  # largest frame width the ring accepts
    open_timeout_s: float = 5.0  # capture: give up opening a source after this long
    read_timeout_s: float = 5.0  # capture: a read that blocks longer counts as a stall
    source_options: Tuple[Tuple[str, Any], ...] = ()  # extra keyword options for the source

    # --- scheduling (streaming.md "Frame clock and windows") -----------------------------------
    stride: int = 8  # S: a window closes every S pose samples (multiple of the pose group, 4)
    pose_every: int = 1  # Δp: pose runs on every Δp-th captured frame

    # --- pose and model --------------------------------------------------------------------------
    pose: Optional[str] = None  # pose backend; None = 'synthetic' for the synthetic source, else 'mediapipe'
    pose_options: Tuple[Tuple[str, Any], ...] = ()  # extra keyword options for the pose backend
    engine: Optional[str] = None  # checkpoint (.safetensors) or exported engine dir; None = demo model
    device: str = "cpu"  # engine device for the torch backend ('cpu', 'cuda', 'cuda:1', ...)
    demo: bool = False  # True when the engine is the synthetic demo model (said plainly on start)

    # --- decisions -------------------------------------------------------------------------------
    top_k: int = 3  # labels with probabilities in each window message
    threshold: float = 0.0  # decided label only when its probability reaches this (else null)
    background: Tuple[str, ...] = ("no gesture", "idle", "background")  # labels never decided
    no_person: str = "answer"  # no person in a window: 'answer' (publish the model's answer) or 'none'
    include_logits: bool = False  # add raw logits to window messages (debugging, equality tests)
    event_threshold: float = 0.6  # events: a gesture starts when its probability reaches this
    event_hysteresis: float = 0.15  # events: ... and ends when it falls below threshold - hysteresis
    event_min_duration_s: float = 0.3  # events: above threshold this long before a start is emitted
    event_release_s: float = 0.0  # events: below the lower threshold this long before an end

    # --- publishing ------------------------------------------------------------------------------
    endpoint: str = DEFAULT_ENDPOINT  # where the PUB socket binds (loopback unless asked)
    allow_remote: bool = False  # must be True to bind a non-loopback interface
    fmt: str = "json"  # payload encoding: 'json' (UTF-8) or 'msgpack'
    sndhwm: int = 100  # PUB high-water mark: messages queued per subscriber before dropping
    heartbeat_s: float = 1.0  # status message period (mg.status.<stream>)
    curve_secret_key: Optional[str] = None  # CURVE: file with the server's secret key (zmq.auth format)
    curve_allow_dir: Optional[str] = None  # CURVE: folder of allowed client public keys (None = any client)

    # --- run control and supervision -------------------------------------------------------------
    duration_s: Optional[float] = None  # stop by itself after this many seconds (None = run until stopped)
    max_windows: Optional[int] = None  # stop by itself after this many published windows
    restart_backoff_s: float = 0.5  # first delay before restarting a crashed worker (doubles each time)
    restart_backoff_max_s: float = 10.0  # cap of the restart delay
    max_restarts: int = 20  # give up (exit non-zero) after this many worker restarts
    display: bool = False  # OpenCV window with frame, skeleton, top-3, fps, latency
    record: Optional[str] = None  # write the annotated video to this file (.mp4 / .avi)
    listen: bool = False  # start a listener subprocess printing the messages

    @property
    def pose_backend(self) -> str:
        """The pose backend actually used (resolves the default)."""
        if self.pose:
            return self.pose
        return "synthetic" if self.source.startswith("synthetic") else "mediapipe"

    def replace(self, **changes: Any) -> "StreamConfig":
        return dataclasses.replace(self, **changes)

    def validate(self, group: int = 4, pose_frames: int = 32) -> "StreamConfig":
        """Raise ``ConfigError`` (one sentence) for a configuration that cannot run; return self."""
        if not STREAM_ID.match(self.stream_id):
            raise ConfigError(f"stream id {self.stream_id!r} must be 1-64 letters, digits, '_' or '-' "
                              f"(it becomes part of the topic mg.window.<stream>)")
        if self.stride < group or self.stride % group:
            raise ConfigError(f"--stride {self.stride} must be a positive multiple of {group} (the pose samples "
                              f"per RGB frame), e.g. 4, 8 or 16")
        if self.stride > pose_frames:
            raise ConfigError(f"--stride {self.stride} is larger than the {pose_frames}-sample window: "
                              f"samples between windows would never be used; choose at most {pose_frames}")
        if self.pose_every < 1:
            raise ConfigError(f"--pose-every must be at least 1, got {self.pose_every}")
        if self.pose_backend not in POSE_BACKENDS:
            raise ConfigError(f"unknown pose backend {self.pose_backend!r}; choose one of {', '.join(POSE_BACKENDS)}")
        if self.fmt not in FORMATS:
            raise ConfigError(f"unknown format {self.fmt!r}; choose json or msgpack")
        if self.no_person not in NO_PERSON_POLICIES:
            raise ConfigError(f"unknown no-person policy {self.no_person!r}; choose 'answer' or 'none'")
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 < self.event_threshold <= 1.0:
            raise ConfigError("thresholds are probabilities: --threshold and --event-threshold must lie in [0, 1]")
        if not 0.0 <= self.event_hysteresis < self.event_threshold:
            raise ConfigError("--event-hysteresis must be at least 0 and below --event-threshold")
        if self.ring_slots < 4 * self.pose_every:
            raise ConfigError(f"--ring-slots {self.ring_slots} is too small for --pose-every {self.pose_every}: "
                              f"give at least {4 * self.pose_every} slots")
        if self.max_height < 16 or self.max_width < 16:
            raise ConfigError("--max-size must be at least 16x16 pixels")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"--duration must be positive, got {self.duration_s}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"--max-windows must be at least 1, got {self.max_windows}")
        if self.heartbeat_s <= 0 or self.sndhwm < 1:
            raise ConfigError("--heartbeat must be positive and --hwm at least 1")
        if self.curve_allow_dir and not self.curve_secret_key:
            raise ConfigError("--curve-allow needs --curve-secret (the server's secret key file)")
        check_endpoint(self.endpoint, self.allow_remote)
        return self


def check_endpoint(endpoint: str, allow_remote: bool) -> bool:
    """Raise ``ConfigError`` for a malformed endpoint or a non-loopback bind without ``allow_remote``.

    Returns True when the endpoint is reachable from other machines (the caller logs that).
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return False
    u = urlparse(endpoint)
    if u.scheme != "tcp" or not u.hostname or u.port is None:
        raise ConfigError(f"endpoint {endpoint!r} is not of the form tcp://HOST:PORT (e.g. {DEFAULT_ENDPOINT})")
    host = u.hostname
    if host == "localhost":
        return False
    try:
        loop = ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or host name: not loopback by construction
        loop = False
    if not loop and not allow_remote:
        raise ConfigError(f"endpoint {endpoint} is not a loopback address; other machines could subscribe. "
                          f"Pass --allow-remote to bind it on purpose (and consider --curve-secret)")
    return not loop
