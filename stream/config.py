"""``StreamConfig``: every setting of the live recognizer in one frozen dataclass, and the command line.

The supervisor builds it from the command line (``build_parser`` + ``config_from_args``); the
worker receives it as its first argument (it pickles, so it crosses the ``spawn`` boundary as is).
``validate()`` turns every bad combination into one ``ConfigError`` sentence that says what to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from clipmg.model.config import BACKGROUND_LABELS
from clipmg.model.errors import ClipmgError

from .messages import STREAM_ID_PATTERN

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
POSE_BACKENDS: Tuple[str, ...] = ("synthetic", "mediapipe", "openpose", "replay")
FORMATS: Tuple[str, ...] = ("json", "msgpack")
NO_PERSON_POLICIES: Tuple[str, ...] = ("answer", "none")
RGB_BATCHES: Tuple[str, ...] = ("window", "each")  # --rgb-batch: when the worker encodes a window's new frames
STREAM_ID = re.compile(STREAM_ID_PATTERN)
DEMO_DURATION_S = 20.0  # the demo stops by itself after this long
DEMO_RECORD = "clipmg-demo.mp4"  # the demo's annotated video
# --source-option keys the capture process takes as seconds (stream/capture.py: capture_main)
TIMING_SOURCE_OPTIONS = ("open_timeout_s", "read_timeout_s", "initial_backoff_s", "max_backoff_s",
                         "frozen_timeout_s", "stats_interval_s")
MAX_SIDE = 8192  # --max-size: the largest frame side the ring is made for
MAX_FPS = 1000.0  # --source-option fps=: the largest frame rate a source may be given (the capture's own limit)
ENDPOINT_SCHEMES = ("tcp", "ipc", "inproc")  # ZeroMQ transports --endpoint may name
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")  # how a boolean option may be written
# --source-option keys by source kind (stream/sources.py open_source, stream/capture.py capture_main): the
# capture's own keys apply to every source; each kind adds the keys its source class takes.
CAPTURE_SOURCE_OPTIONS = (*TIMING_SOURCE_OPTIONS, "pace", "max_frames")
SOURCE_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "synthetic": ("fps", "width", "height", "keypoints", "clip_frames", "gap_frames", "noise_px", "dropout",
                  "classes"),
    "webcam": ("fps", "width", "height", "api"),
    "stream": ("ffmpeg_options", "api"),
    "folder": ("fps", "loop"),
    "file": ("fps", "loop", "api"),
}


class ConfigError(ClipmgError, ValueError):
    """A configuration that cannot run; the message is one sentence saying what to change."""


PRECISIONS = ("auto", "fp32", "int8")  # --precision; int8 and fp32 apply to exported ONNX engines


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
    threads: Optional[int] = None  # CPU threads for the engine; None = half the cores (1 on a 2-core machine)
    precision: str = "auto"  # ONNX Runtime engines: auto (int8 encoder where the export validated it), fp32, int8
    demo: bool = False  # True when the engine is the synthetic demo model (said plainly on start)
    pose_thread: bool = True  # pose in its own thread, ahead of and alongside the engine (worker.PoseAhead)
    pose_workers: int = 1  # pose threads, each with its own pose backend, taking samples in turn
    pose_cache: bool = True  # each group's share of the pose branch computed once (engines that can)
    rgb_batch: str = "each"  # 'each': every RGB frame encoded as soon as it is posed; 'window': a window's new frames in one call
    verbose: bool = False  # let MediaPipe/TFLite/absl start-up messages through

    # --- decisions -------------------------------------------------------------------------------
    top_k: int = 3  # labels with probabilities in each window message
    threshold: float = 0.0  # decided label only when its probability reaches this (else null)
    background: Tuple[str, ...] = BACKGROUND_LABELS  # labels never decided
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

    @property
    def engine_threads(self) -> int:
        """CPU threads the engine may use. Half the cores by default: on a small shared CPU a
        multi-threaded kernel waits for every thread to be scheduled, which costs far more latency
        than it saves, and the capture and pose need a core too."""
        import os

        return self.threads or max(1, min(8, (os.cpu_count() or 2) // 2))

    def replace(self, **changes: Any) -> "StreamConfig":
        return dataclasses.replace(self, **changes)

    def validate(self, group: int = 4, pose_frames: int = 32) -> "StreamConfig":
        """Raise ``ConfigError`` (one sentence) for a configuration that cannot run; return self."""
        _check_numbers(self)
        if not all(isinstance(v, int) and 16 <= v <= MAX_SIDE for v in (self.max_width, self.max_height)):
            raise ConfigError(f"--max-size {self.max_width}x{self.max_height} is not allowed: give WIDTHxHEIGHT of "
                              f"at least 16x16 and at most {MAX_SIDE}x{MAX_SIDE} pixels")
        if not STREAM_ID.match(self.stream_id):
            raise ConfigError(f"stream id {self.stream_id!r} must be 1-64 letters, digits, '_' or '-' "
                              f"(it becomes part of the topic mg.window.<stream>)")
        if self.stride < group or self.stride % group:
            raise ConfigError(f"--stride {self.stride} must be a positive multiple of {group} (the pose samples "
                              f"per RGB frame), e.g. 4, 8 or 16")
        if self.stride > pose_frames:
            raise ConfigError(f"--stride {self.stride} is larger than the {pose_frames}-sample window: "
                              f"samples between windows would never be used; choose at most {pose_frames}")
        if self.pose_backend not in POSE_BACKENDS:
            raise ConfigError(f"unknown pose backend {self.pose_backend!r}; choose one of {', '.join(POSE_BACKENDS)}")
        if self.fmt not in FORMATS:
            raise ConfigError(f"unknown format {self.fmt!r}; choose json or msgpack")
        if self.rgb_batch not in RGB_BATCHES:
            raise ConfigError(f"unknown --rgb-batch {self.rgb_batch!r}; choose one of {', '.join(RGB_BATCHES)}")
        if self.no_person not in NO_PERSON_POLICIES:
            raise ConfigError(f"unknown no-person policy {self.no_person!r}; choose 'answer' or 'none'")
        if not self.event_hysteresis < self.event_threshold:
            raise ConfigError(f"--event-hysteresis {self.event_hysteresis:g} must be below --event-threshold "
                              f"{self.event_threshold:g} (a gesture ends at threshold - hysteresis)")
        if self.ring_slots < 4 * self.pose_every:
            raise ConfigError(f"--ring-slots {self.ring_slots} is too small for --pose-every {self.pose_every}: "
                              f"give at least {4 * self.pose_every} slots")
        if self.pose_workers > 1 and not self.pose_thread:
            raise ConfigError(f"--pose-workers {self.pose_workers} needs the pose thread: drop --no-pose-thread")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.curve_allow_dir and not self.curve_secret_key:
            raise ConfigError("--curve-allow needs --curve-secret (the server's secret key file)")
        normalize_source_options(self.source, self.source_options)
        check_endpoint(self.endpoint, self.allow_remote)
        return self


# Every numeric StreamConfig field: (flag, smallest, smallest allowed?, largest, kind). None: no bound;
# kind "int" refuses non-integers. Optional fields (None) are not checked.
NUMERIC_FIELDS: Dict[str, Tuple[str, float, bool, Optional[float], str]] = {
    "ring_slots": ("--ring-slots", 4, True, 100_000, "int"),
    "open_timeout_s": ("open_timeout_s", 0, False, None, "float"),
    "read_timeout_s": ("read_timeout_s", 0, False, None, "float"),
    "stride": ("--stride", 1, True, None, "int"),
    "pose_every": ("--pose-every", 1, True, 1000, "int"),
    "pose_workers": ("--pose-workers", 1, True, 8, "int"),
    "threads": ("--threads", 1, True, 1024, "int"),
    "top_k": ("--top-k", 1, True, None, "int"),
    "threshold": ("--threshold", 0, True, 1, "float"),
    "event_threshold": ("--event-threshold", 0, False, 1, "float"),
    "event_hysteresis": ("--event-hysteresis", 0, True, 1, "float"),
    "event_min_duration_s": ("--event-min-duration", 0, True, 3600, "float"),
    "event_release_s": ("event_release_s", 0, True, 3600, "float"),
    "sndhwm": ("--hwm", 1, True, None, "int"),
    "heartbeat_s": ("--heartbeat", 0, False, 3600, "float"),
    "duration_s": ("--duration", 0, False, None, "float"),
    "max_windows": ("--max-windows", 1, True, None, "int"),
    "restart_backoff_s": ("restart_backoff_s", 0, False, 3600, "float"),
    "restart_backoff_max_s": ("restart_backoff_max_s", 0, False, 3600, "float"),
    "max_restarts": ("max_restarts", 0, True, None, "int"),
}


def check_number(flag: str, value: Any, lo: float, lo_closed: bool, hi: Optional[float], kind: str) -> None:
    """Raise ``ConfigError`` naming ``flag`` and its allowed range when ``value`` lies outside it (or is
    NaN, infinite, or not an integer where one is needed)."""
    if hi is None:
        rng = f"{'of at least' if lo_closed else 'above'} {lo:g}"
    else:
        rng = f"in {'[' if lo_closed else '('}{lo:g}, {hi:g}]"
    what = "an integer" if kind == "int" else "a number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and kind == "int":
        ok = float(value).is_integer()
    if ok:
        ok = (value >= lo if lo_closed else value > lo) and (hi is None or value <= hi)
    if not ok:
        raise ConfigError(f"{flag} {value!r} is not allowed: give {what} {rng}")


def _check_numbers(cfg: "StreamConfig") -> None:
    for name, (flag, lo, lo_closed, hi, kind) in NUMERIC_FIELDS.items():
        value = getattr(cfg, name)
        if value is not None:
            check_number(flag, value, lo, lo_closed, hi, kind)


def source_kind(source: str) -> str:
    """``synthetic``, ``webcam``, ``stream`` (a network URL), ``folder`` or ``file``: which options apply."""
    s = source.strip()
    if s == "synthetic" or s.startswith("synthetic:"):
        return "synthetic"
    if s.isdigit() or s.startswith("/dev/video"):
        return "webcam"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", s) and not s.startswith("file://"):
        return "stream"
    s = s[len("file://"):] if s.startswith("file://") else s
    return "folder" if Path(s).expanduser().is_dir() else "file"


def _bool_option(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ConfigError(f"--source-option {key}={value!r} is not a boolean: give one of "
                      f"{', '.join(TRUE_WORDS + FALSE_WORDS)}")


def normalize_source_options(source: str, options: Any) -> Tuple[Tuple[str, Any], ...]:
    """``--source-option`` pairs checked against the source's kind and typed (booleans from
    true/false/1/0/yes/no); ``ConfigError`` for an unknown key (listing the known ones) or a value
    that cannot work."""
    kind = source_kind(source)
    known = CAPTURE_SOURCE_OPTIONS + SOURCE_OPTIONS[kind]
    out = []
    for key, value in options:
        if key not in known:
            raise ConfigError(f"--source-option {key}: not an option of a {kind} source; its options are "
                              f"{', '.join(known)} (docs/capture.md)")
        if key in ("loop", "pace"):
            value = _bool_option(key, value)
        elif key in TIMING_SOURCE_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ConfigError(f"--source-option {key}={value!r}: expected a positive number of seconds")
        elif key == "fps":
            lo, hi = (1.0, 120.0) if kind == "synthetic" else (0.0, MAX_FPS)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not (lo <= value <= hi if kind == "synthetic" else lo < value <= hi):
                rng = f"[{lo:g}, {hi:g}]" if kind == "synthetic" else f"(0, {hi:g}]"
                raise ConfigError(f"--source-option fps={value!r} is not allowed: give frames per second in {rng}"
                                  + (" for the synthetic source" if kind == "synthetic" else ""))
        elif key in ("width", "height", "max_frames", "api"):
            lo = 0 if key == "api" else (64 if kind == "synthetic" else 1)
            hi = {"width": 1920 if kind == "synthetic" else MAX_SIDE,
                  "height": 1080 if kind == "synthetic" else MAX_SIDE}.get(key)
            check_number(f"--source-option {key}", value, lo, True, hi, "int")
            value = int(value)
        elif key == "keypoints" and value not in ("exact", "observed"):
            raise ConfigError(f"--source-option keypoints={value!r}: give exact or observed")
        elif key == "ffmpeg_options" and not isinstance(value, str):
            raise ConfigError(f"--source-option ffmpeg_options={value!r}: give KEY;VALUE|KEY;VALUE text")
        out.append((key, value))
    if kind == "synthetic":
        _check_synthetic_options(dict(out))
    return tuple(out)


def _check_synthetic_options(opts: Dict[str, Any]) -> None:
    """The synthetic generator's own check of its options (frame size, clip lengths, classes)."""
    from clipmg.model import synthetic as synth

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()
              if k in synth.SynthConfig.__dataclass_fields__}
    try:
        synth.SynthConfig(**fields)
    except (TypeError, ValueError) as e:
        given = " ".join(f"{k}={v!r}" for k, v in fields.items())
        raise ConfigError(f"--source-option {given} for the synthetic source: {e}") from None


def parse_endpoint(endpoint: str) -> Tuple[str, str, Optional[int]]:
    """``(scheme, host or path, port)`` of a ZeroMQ endpoint; ``ConfigError`` naming what is wrong:
    a scheme other than tcp/ipc/inproc, a tcp endpoint without host or with a port outside 1-65535,
    an ipc/inproc endpoint without a path or name."""
    scheme, sep, rest = str(endpoint).partition("://")
    form = f"give tcp://HOST:PORT (e.g. {DEFAULT_ENDPOINT}), ipc://PATH or inproc://NAME"
    if not sep or scheme not in ENDPOINT_SCHEMES:
        raise ConfigError(f"endpoint {endpoint!r} is not of the form tcp://HOST:PORT: {form}")
    if scheme != "tcp":
        if not rest:
            raise ConfigError(f"endpoint {endpoint!r} names no {'path' if scheme == 'ipc' else 'name'}: {form}")
        return scheme, rest, None
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port or "/" in rest:
        raise ConfigError(f"endpoint {endpoint!r} is not of the form tcp://HOST:PORT (e.g. {DEFAULT_ENDPOINT})")
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"endpoint {endpoint!r}: port {port!r} is not a number between 1 and 65535")
    return scheme, host, int(port)


def check_endpoint(endpoint: str, allow_remote: bool) -> bool:
    """Raise ``ConfigError`` for a malformed endpoint or a non-loopback bind without ``allow_remote``.

    Returns True when the endpoint is reachable from other machines (the caller logs that).
    """
    scheme, host, _ = parse_endpoint(endpoint)
    if scheme != "tcp" or host == "localhost":
        return False
    try:
        loop = ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name, a host name or '*': not loopback by construction
        loop = False
    if not loop and not allow_remote:
        raise ConfigError(f"endpoint {endpoint} is not a loopback address; other machines could subscribe. "
                          f"Pass --allow-remote to bind it on purpose (and consider --curve-secret)")
    return not loop


# ---------------------------------------------------------------------------------- command line
def _kv(text: str) -> Tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _size(text: str) -> Tuple[int, int]:
    w, x, h = text.lower().partition("x")
    if not x or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}")
    return int(w), int(h)


def build_parser() -> argparse.ArgumentParser:
    d = StreamConfig()
    ap = argparse.ArgumentParser(
        prog="clipmg-live", description="Live micro-gesture recognition: capture -> pose -> CLIP-MG -> ZeroMQ. "
        "With no --engine: the built-in synthetic demo (stops by itself after 20 s).")
    g = ap.add_argument_group("source")
    g.add_argument("--source", default=d.source, help="webcam index, RTSP/HTTP URL, video file, image folder or "
                   "'synthetic[:SEED]' (default: %(default)s)")
    g.add_argument("--source-env", default=None, metavar="VAR",
                   help="read the source from this environment variable instead of --source, so that a URL "
                   "with credentials never appears in the process list")
    g.add_argument("--source-file", default=None, metavar="PATH",
                   help="read the source from the first line of this file (keep it private: chmod 600)")
    g.add_argument("--stream-id", default=d.stream_id, help="stream name in topics and messages (default: %(default)s)")
    g.add_argument("--no-pace", action="store_true", help="read files as fast as possible instead of at their fps")
    g.add_argument("--source-option", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="extra source option (repeatable): loop=true plays a file, folder or GIF again and again "
                   "(windows then span the seam; true/false/yes/no/1/0); fps=15 paces a folder or file (at most "
                   f"{MAX_FPS:g}); width=1280 height=720 ask a webcam for a size; read_timeout_s=2 ... (an unknown key "
                   "is refused with the keys of that kind of source; docs/capture.md lists them all)")
    g.add_argument("--ring-slots", type=int, default=d.ring_slots, help="frames in the shared-memory ring")
    g.add_argument("--max-size", type=_size, default=(d.max_width, d.max_height), metavar="WxH",
                   help="largest frame kept; bigger frames are shrunk (default 1280x720)")
    g = ap.add_argument_group("model and pose")
    g.add_argument("--engine", default=None, help="checkpoint (.safetensors) or exported engine directory; "
                   "default: the synthetic demo model")
    g.add_argument("--device", default=d.device, help="torch device for a checkpoint (default: %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for the engine (default: half the cores)")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="frame encoder precision of an exported ONNX engine: auto uses its int8 encoder only where "
                   "the export measured it safe (default: %(default)s)")
    g.add_argument("--pose", default=None, help="pose backend: synthetic, mediapipe, openpose or replay "
                   "(default: synthetic for the synthetic source, mediapipe otherwise)")
    g.add_argument("--pose-option", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="extra pose backend option, e.g. path=keypoints.npy for replay (repeatable)")
    g.add_argument("--pose-cache", action=argparse.BooleanOptionalAction, default=d.pose_cache,
                   help="compute each pose group's share of the skeleton encoder once (default: on; engines "
                   "without the pose-stage graphs run the whole head either way)")
    g.add_argument("--rgb-batch", choices=RGB_BATCHES, default=d.rgb_batch,
                   help="each: encode every RGB frame as soon as it is posed (default: the lowest latency); "
                   "window: encode a window's new RGB frames in one call once the last of them is posed (less "
                   "CPU a window, later answers; docs/benchmarks.md)")
    g.add_argument("--pose-thread", action=argparse.BooleanOptionalAction, default=d.pose_thread,
                   help="run pose in its own thread, alongside the engine (default: on; --no-pose-thread runs "
                   "pose and engine in turn in one thread)")
    g.add_argument("--pose-workers", type=int, default=d.pose_workers, metavar="N",
                   help="pose threads, each with its own pose backend, estimating samples side by side: 2 lets "
                   "MediaPipe keep up at --pose-every 2 on a 2-core CPU, where one instance is busy all the "
                   "time and falls behind (docs/benchmarks.md); needs --pose-thread (default: %(default)s)")
    g = ap.add_argument_group("windows and decisions")
    g.add_argument("--stride", type=int, default=d.stride, help="S: pose samples between windows, a multiple of 4 "
                   "(default: %(default)s)")
    g.add_argument("--pose-every", type=int, default=d.pose_every, help="Δp: pose on every Δp-th frame (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=d.top_k, help="labels per window message (default: %(default)s)")
    g.add_argument("--threshold", type=float, default=d.threshold, help="decide a label only at this probability")
    g.add_argument("--no-person", choices=("answer", "none"), default=d.no_person,
                   help="windows without a person: publish the model's answer or none (default: %(default)s)")
    g.add_argument("--event-threshold", type=float, default=d.event_threshold, help="gesture start probability")
    g.add_argument("--event-hysteresis", type=float, default=d.event_hysteresis, help="gesture end = threshold - this")
    g.add_argument("--event-min-duration", type=float, default=d.event_min_duration_s, help="seconds above threshold")
    g.add_argument("--logits", action="store_true", help="add raw logits to window messages")
    g = ap.add_argument_group("publishing")
    g.add_argument("--endpoint", default=d.endpoint, help=f"PUB endpoint (default: {DEFAULT_ENDPOINT})")
    g.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback interface")
    g.add_argument("--format", dest="fmt", choices=("json", "msgpack"), default=d.fmt, help="payload encoding")
    g.add_argument("--hwm", type=int, default=d.sndhwm, help="messages queued per subscriber before dropping")
    g.add_argument("--heartbeat", type=float, default=d.heartbeat_s, help="status message period in seconds")
    g.add_argument("--curve-secret", default=None, help="CURVE: the server's secret certificate file")
    g.add_argument("--curve-allow", default=None, help="CURVE: folder of allowed client public certificates")
    g = ap.add_argument_group("run")
    g.add_argument("--duration", type=float, default=None, help="stop after this many seconds of recognition "
                   "(0: run until stopped; demo default 20)")
    g.add_argument("--max-windows", type=int, default=None, help="stop after this many windows")
    g.add_argument("--display", action="store_true", help="show an OpenCV window (frame, skeleton, top-3, fps, latency)")
    g.add_argument("--record", default=None, metavar="OUT.mp4", help=f"write the annotated video (demo default {DEMO_RECORD})")
    g.add_argument("--no-record", action="store_true", help="do not write the demo's video")
    lg = g.add_mutually_exclusive_group()
    lg.add_argument("--listen", dest="listen", action="store_true", default=None,
                    help="start a listener printing the messages (demo default)")
    lg.add_argument("--no-listen", dest="listen", action="store_false", help="no listener")
    g.add_argument("-q", "--quiet", action="store_true", help="no live summary lines")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also show the pose library's own start-up messages (MediaPipe, TensorFlow Lite, absl)")
    return ap


def resolve_source(args: argparse.Namespace) -> str:
    """The source string: ``--source``, or the one kept out of the command line with ``--source-env``
    or ``--source-file`` (``ps`` shows every local user a process's arguments, not its environment
    or the files it reads)."""
    if args.source_env and args.source_file:
        raise ConfigError("give the source once: --source-env or --source-file, not both")
    if args.source_env:
        value = os.environ.get(args.source_env, "").strip()
        if not value:
            raise ConfigError(f"--source-env {args.source_env}: that environment variable is unset or empty")
        return value
    if args.source_file:
        path = Path(args.source_file).expanduser()
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--source-file {path}: cannot read it ({e.__class__.__name__})") from None
        if not lines:
            raise ConfigError(f"--source-file {path}: the file is empty; put the source on its first line")
        if path.stat().st_mode & 0o077:
            log.warning("--source-file %s can be read by other users; chmod 600 it if it holds credentials", path)
        return lines[0]
    return args.source


def config_from_args(args: argparse.Namespace) -> StreamConfig:
    """The ``StreamConfig`` of a parsed command line (demo defaults when no ``--engine``)."""
    demo = args.engine is None
    duration = args.duration
    if duration is None and demo and args.max_windows is None:
        duration = DEMO_DURATION_S
    record = None if args.no_record else (args.record or (DEMO_RECORD if demo else None))
    listen = args.listen if args.listen is not None else demo
    w, h = args.max_size
    source = resolve_source(args)
    return StreamConfig(
        source=source, stream_id=args.stream_id, pace=not args.no_pace, ring_slots=args.ring_slots,
        max_height=h, max_width=w, source_options=normalize_source_options(source, args.source_option),
        stride=args.stride,
        pose_every=args.pose_every, pose=args.pose, pose_options=tuple(args.pose_option), engine=args.engine,
        device=args.device, threads=args.threads, precision=args.precision, pose_thread=args.pose_thread,
        pose_workers=args.pose_workers, pose_cache=args.pose_cache, rgb_batch=args.rgb_batch, verbose=args.verbose, demo=demo, top_k=args.top_k,
        threshold=args.threshold, no_person=args.no_person, include_logits=args.logits, event_threshold=args.event_threshold,
        event_hysteresis=args.event_hysteresis, event_min_duration_s=args.event_min_duration,
        endpoint=args.endpoint, allow_remote=args.allow_remote, fmt=args.fmt, sndhwm=args.hwm,
        heartbeat_s=args.heartbeat, curve_secret_key=args.curve_secret, curve_allow_dir=args.curve_allow,
        duration_s=duration or None, max_windows=args.max_windows, display=args.display, record=record,
        listen=listen)


def check_source(cfg: StreamConfig) -> None:
    """Fail fast on a source that is obviously wrong (a missing file); cameras and URLs are tried live."""
    from .redact import redact_url

    s = cfg.source
    if "://" in s and not s.startswith("file://"):
        check_source_url(s)
        return
    if s.startswith("synthetic") or s.isdigit() or s.startswith("/dev/video"):
        if s.startswith("synthetic:") and not s.partition(":")[2].isdigit():
            raise ConfigError(f"synthetic source seed must be an integer, got {s!r}")
        return
    s = s[len("file://"):] if s.startswith("file://") else s
    if not Path(s).expanduser().exists():
        raise ConfigError(f"--source {redact_url(s)}: no such file or folder (give a webcam index, a URL, a video "
                          f"file, an image folder or 'synthetic')")


def check_source_url(url: str) -> None:
    """Refuse a stream URL that cannot be opened whatever the network does (no scheme, no host, a
    port that is not a number in 1-65535), with the credentials masked. A well-formed URL whose
    camera is unreachable is not an error: the capture keeps retrying it (streaming.md)."""
    from .redact import redact_url

    scheme, _, rest = url.partition("://")
    shown = redact_url(url)
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*$", scheme):
        raise ConfigError(f"--source {shown}: not a URL (expected SCHEME://HOST[:PORT]/..., e.g. rtsp://camera/stream)")
    # user info may itself contain '/' or '@' (redact.py treats everything up to the last '@' as user info)
    authority = rest.partition("?")[0].partition("#")[0].rpartition("@")[2].partition("/")[0]
    host, port = authority, ""
    if authority.startswith("["):  # [IPv6]:port
        host, _, tail = authority[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    if not host:
        raise ConfigError(f"--source {shown}: the URL names no host (expected {scheme}://HOST[:PORT]/...)")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"--source {shown}: port {port!r} is not a number between 1 and 65535")


def check_ring_fits(cfg: StreamConfig) -> None:
    """Refuse a ring bigger than the free shared memory: tmpfs allocates lazily, so an oversized
    ring would only fail later, with SIGBUS in the middle of a write."""
    import shutil

    need = cfg.ring_slots * (cfg.max_height * cfg.max_width * 3 + 2048)
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:  # no /dev/shm (not Linux): let the operating system decide
        return
    if need > 0.8 * free:
        raise ConfigError(f"{cfg.ring_slots} slots of {cfg.max_width}x{cfg.max_height} need {need / 2**20:.0f} MiB but "
                          f"/dev/shm has {free / 2**20:.0f} MiB free; lower --ring-slots or --max-size")
