"""``StreamConfig``: every setting of the live recognizer in one frozen dataclass, and the command line.

Each setting with a flag is declared once, on its field (``model/settings.py``'s ``setting``: help,
flag, allowed values, argument group); the supervisor builds the config from the command line
(``build_parser``, generated from the fields, + ``config_from_args``); the worker receives it as its
first argument (it pickles, so it crosses the ``spawn`` boundary as is). ``validate()`` checks every
value against its declaration and turns every bad combination into one ``ConfigError`` sentence that
says what to do.
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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from clipmg.engines.loader import checkpoint_route
from clipmg.model import settings
from clipmg.model import synthetic as synth
from clipmg.model.config import BACKGROUND_LABELS, ConfigError
from clipmg.model.settings import INF, NO_FLAG, Range, check_number, setting

from .messages import STREAM_ID_PATTERN
from .redact import redact_url

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
TIMING_SOURCE_OPTIONS = (
    "open_timeout_s",
    "read_timeout_s",
    "initial_backoff_s",
    "max_backoff_s",
    "frozen_timeout_s",
    "stats_interval_s",
)
MAX_SIDE = 8192  # --max-size: the largest frame side the ring is made for
MAX_SIZE = (1280, 720)  # --max-size default: the largest frame (width, height) the ring accepts
MAX_FPS = 1000.0  # --source-option fps=: the largest frame rate a source may be given (the capture's own limit)
ENDPOINT_SCHEMES = ("tcp", "ipc", "inproc")  # ZeroMQ transports --endpoint may name
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")  # how a boolean option may be written
# --source-option keys by source kind (stream/sources.py open_source, stream/capture.py capture_main): the
# capture's own keys apply to every source; each kind adds the keys its source class takes.
CAPTURE_SOURCE_OPTIONS = (*TIMING_SOURCE_OPTIONS, "pace", "max_frames")
SOURCE_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "synthetic": ("fps", "width", "height", "keypoints", "clip_frames", "gap_frames", "noise_px", "dropout", "classes"),
    "webcam": ("fps", "width", "height", "api"),
    "stream": ("ffmpeg_options", "api"),
    "folder": ("fps", "loop"),
    "file": ("fps", "loop", "api"),
}


ONNX_PRECISIONS = ("auto", "fp32", "int8")  # --precision of an exported ONNX engine
CUDA_PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # --precision of a checkpoint on the CUDA engine (--device cuda)
PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")


# The argument groups of clipmg-live --help, in order (each flagged field names its group).
SOURCE, MODEL, DECISIONS, PUBLISHING, RUN = "source", "model and pose", "windows and decisions", "publishing", "run"
WEB = "web view"
STREAMS = "many streams"
WEB_FPS = Range(0.5, 30)  # --web-fps: annotated frames a second sent to browsers, at most
MIN_TOKEN_CHARS = 16  # --web-token-env / --web-token-file: a shorter token is refused (guessable)


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


@dataclass(frozen=True)
class StreamConfig:
    """Settings of one live stream: capture, scheduling, engine, publishing, supervision.

    Each setting with a ``clipmg-live`` flag is declared with :func:`setting` (``model/settings.py``):
    its help, its flag where it is not the field name with dashes, its allowed values and its
    argument group; ``build_parser`` is generated from these declarations and ``validate`` checks
    every value against them. Fields are in the order of ``clipmg-live --help``."""

    # --- source (capture) -------------------------------------------------------------------------
    source: str = setting(
        "synthetic",
        "webcam index, RTSP/HTTP URL, video file, image folder or 'synthetic[:SEED]' (default: synthetic); "
        "repeat it for several streams, named cam0, cam1, ... (one worker serves them all: docs/streams.md)",
        group=SOURCE,
        action="append",
        flag_default=None,
        also=(
            (
                ("--source-env",),
                dict(
                    default=None,
                    metavar="VAR",
                    help=(
                        "read the source from this environment variable instead of --source, so that "
                        "a URL with credentials never appears in the process list"
                    ),
                ),
            ),
            (
                ("--source-file",),
                dict(
                    default=None,
                    metavar="PATH",
                    help=("read the source from the first line of this file (keep it private: chmod 600)"),
                ),
            ),
        ),
    )
    stream_id: str = setting("cam0", "stream name in topics and messages (default: %(default)s)", group=SOURCE)
    pace: bool = setting(
        True,
        "read files as fast as possible instead of at their fps",
        group=SOURCE,
        flag="--no-pace",
        action="store_true",
        flag_default=False,
    )  # files: play at their own fps
    source_options: Tuple[Tuple[str, Any], ...] = setting(
        (),
        "extra source option (repeatable): loop=true plays a file, folder or GIF again and again (windows "
        "then span the seam; true/false/yes/no/1/0); fps=15 paces a folder or file (at most "
        f"{MAX_FPS:g}); width=1280 height=720 ask a webcam for a size; read_timeout_s=2 ... (an unknown key "
        "is refused with the keys of that kind of source; docs/capture.md lists them all)",
        group=SOURCE,
        flag="--source-option",
        type=_kv,
        action="append",
        metavar="KEY=VALUE",
    )
    ring_slots: int = setting(64, "frames in the shared-memory ring", Range(4, 100_000), group=SOURCE)
    # --max-size WxH sets both (bigger frames are resized); validate() checks them together
    max_width: int = setting(
        MAX_SIZE[0],
        "largest frame kept; bigger frames are shrunk (default 1280x720)",
        group=SOURCE,
        flag="--max-size",
        type=_size,
        flag_default=MAX_SIZE,
        metavar="WxH",
    )
    max_height: int = MAX_SIZE[1]  # largest frame height the ring accepts
    open_timeout_s: float = setting(
        5.0, "capture: give up opening a source after this long", Range(0, open="lo"), flag=NO_FLAG
    )
    read_timeout_s: float = setting(
        5.0, "capture: a read that blocks longer counts as a stall", Range(0, open="lo"), flag=NO_FLAG
    )

    # --- model and pose ---------------------------------------------------------------------------
    engine: Optional[str] = setting(
        None, "checkpoint (.safetensors) or exported engine directory; default: the synthetic demo model", group=MODEL
    )
    device: str = setting(
        "cpu",
        "where a checkpoint runs: cpu, cuda[:N] (the CUDA engine: autocast and CUDA graphs) or "
        "cuda[:N]:eager (plain PyTorch on that GPU) (default: %(default)s)",
        group=MODEL,
    )
    threads: Optional[int] = setting(
        None,
        "CPU threads for the engine (default: half the cores; all of them, at most 8, for several streams)",
        Range(1, 1024),
        group=MODEL,
    )
    precision: str = setting(
        "auto",
        "frame encoder precision: an exported ONNX engine runs fp32 or int8 (auto: its int8 encoder only "
        "where the export measured it safe); a checkpoint on the CUDA engine fp32, bf16 or fp16 (auto: bf16 "
        "where the GPU has it) (default: %(default)s)",
        PRECISIONS,
        group=MODEL,
    )
    # None: 'synthetic' for the synthetic source, else 'mediapipe' (pose_backend); validate() checks the name
    pose: Optional[str] = setting(
        None,
        "pose backend: synthetic, mediapipe, openpose or replay (default: synthetic "
        "for the synthetic source, mediapipe otherwise)",
        group=MODEL,
    )
    pose_options: Tuple[Tuple[str, Any], ...] = setting(
        (),
        "extra pose backend option, e.g. path=keypoints.npy for replay (repeatable)",
        group=MODEL,
        flag="--pose-option",
        type=_kv,
        action="append",
        metavar="KEY=VALUE",
    )
    pose_cache: bool = setting(
        True,
        "compute each pose group's share of the skeleton encoder once (default: on; "
        "engines without the pose-stage graphs run the whole head either way)",
        group=MODEL,
    )
    rgb_batch: str = setting(
        "each",
        "each: encode every RGB frame as soon as it is posed (default: the lowest "
        "latency); window: encode a window's new RGB frames in one call once the last of them "
        "is posed (less CPU a window, later answers; docs/benchmarks.md)",
        RGB_BATCHES,
        group=MODEL,
    )
    pose_thread: bool = setting(
        True,
        "run pose in its own thread, alongside the engine (default: on; "
        "--no-pose-thread runs pose and engine in turn in one thread)",
        group=MODEL,
    )
    pose_workers: int = setting(
        1,
        "pose threads, each with its own pose backend, estimating samples side by side: "
        "2 lets MediaPipe keep up at --pose-every 2 on a 2-core CPU, where one instance is "
        "busy all the time and falls behind (docs/benchmarks.md); needs --pose-thread "
        "(default: %(default)s)",
        Range(1, 8),
        group=MODEL,
        metavar="N",
    )
    demo: bool = False  # True when the engine is the synthetic demo model (said plainly on start)

    # --- many streams (docs/streams.md) -------------------------------------------------------------
    streams_file: Optional[str] = setting(
        None,
        "a TOML file of streams ([[stream]] tables: id, source, pose, pose_every, stride, ...), served by "
        "one worker; the other flags apply to every stream",
        group=STREAMS,
        flag="--streams",
        metavar="FILE.toml",
    )
    batch_budget_ms: float = setting(
        0.0,
        "several streams: the longest an engine call waits for other streams' calls to join its batch "
        "(0: no waiting; calls that arrive while the engine runs a batch form the next one; a GPU, where "
        "a bigger batch costs little more, may gain from a few ms; default: %(default)s)",
        Range(0, 1000),
        group=STREAMS,
        metavar="MS",
    )
    max_batch: int = setting(
        32,
        "several streams: the most frames or windows in one engine call (default: %(default)s)",
        Range(1, 1024),
        group=STREAMS,
        metavar="N",
    )
    pose_pool: Optional[int] = setting(
        None,
        "pose estimations running at once, across all streams (default: the CPU cores)",
        Range(1, 256),
        group=STREAMS,
        metavar="N",
    )

    # --- windows and decisions (streaming.md "Frame clock and windows") ----------------------------
    stride: int = setting(
        8, "S: pose samples between windows, a multiple of 4 (default: %(default)s)", Range(1), group=DECISIONS
    )
    pose_every: int = setting(
        1, "Δp: pose on every Δp-th frame (default: %(default)s)", Range(1, 1000), group=DECISIONS
    )
    top_k: int = setting(3, "labels per window message (default: %(default)s)", Range(1), group=DECISIONS)
    threshold: float = setting(0.0, "decide a label only at this probability", Range(0, 1), group=DECISIONS)
    no_person: str = setting(
        "answer",
        "windows without a person: publish the model's answer or none (default: %(default)s)",
        NO_PERSON_POLICIES,
        group=DECISIONS,
    )
    event_threshold: float = setting(0.6, "gesture start probability", Range(0, 1, "lo"), group=DECISIONS)
    event_hysteresis: float = setting(0.15, "gesture end = threshold - this", Range(0, 1), group=DECISIONS)
    event_min_duration_s: float = setting(
        0.3, "seconds above threshold", Range(0, 3600), group=DECISIONS, flag="--event-min-duration"
    )
    event_release_s: float = setting(
        0.0,
        "seconds below threshold - hysteresis before a gesture ends (default: %(default)s)",
        Range(0, 3600),
        group=DECISIONS,
        flag="--event-release",
    )
    include_logits: bool = setting(False, "add raw logits to window messages", group=DECISIONS, flag="--logits")
    background: Tuple[str, ...] = BACKGROUND_LABELS  # labels never decided

    # --- publishing ---------------------------------------------------------------------------------
    endpoint: str = setting(DEFAULT_ENDPOINT, f"PUB endpoint (default: {DEFAULT_ENDPOINT})", group=PUBLISHING)
    allow_remote: bool = setting(False, "allow binding a non-loopback interface", group=PUBLISHING)
    fmt: str = setting("json", "payload encoding", FORMATS, group=PUBLISHING, flag="--format", dest="fmt")
    sndhwm: int = setting(
        100, "messages queued per subscriber before dropping", Range(1), group=PUBLISHING, flag="--hwm"
    )
    heartbeat_s: float = setting(
        1.0, "status message period in seconds", Range(0, 3600, "lo"), group=PUBLISHING, flag="--heartbeat"
    )
    curve_secret_key: Optional[str] = setting(
        None, "CURVE: the server's secret certificate file", group=PUBLISHING, flag="--curve-secret"
    )
    curve_allow_dir: Optional[str] = setting(
        None, "CURVE: folder of allowed client public certificates", group=PUBLISHING, flag="--curve-allow"
    )

    # --- web view (stream/web.py, docs/web.md) -------------------------------------------------------
    web: Optional[str] = setting(
        None,
        "serve the live view to browsers on [HOST:]PORT (HOST: 127.0.0.1 unless given; another interface "
        "needs --allow-remote and a token; PORT 0: any free port)",
        group=WEB,
        metavar="[HOST:]PORT",
        also=(
            (
                ("--web-token-env",),
                dict(
                    default=None,
                    metavar="VAR",
                    help="require the token in this environment variable on every request (never on the command line)",
                ),
            ),
            (
                ("--web-token-file",),
                dict(
                    default=None,
                    metavar="PATH",
                    help="require the token on the first line of this file (keep it private: chmod 600)",
                ),
            ),
        ),
    )
    web_fps: float = setting(
        5.0,
        "annotated frames per second sent to the browser, at most; a slow browser gets fewer (default: %(default)s)",
        WEB_FPS,
        group=WEB,
        metavar="FPS",
    )
    # the secret browsers must present (from --web-token-env / --web-token-file); kept out of repr
    web_token: Optional[str] = dataclasses.field(default=None, repr=False)

    # --- run control and supervision ----------------------------------------------------------------
    duration_s: Optional[float] = setting(
        None,
        "stop after this many seconds of recognition (0: run until stopped; demo default 20)",
        Range(0, open="lo"),
        group=RUN,
        flag="--duration",
    )
    max_windows: Optional[int] = setting(None, "stop after this many windows", Range(1), group=RUN)
    display: bool = setting(False, "show an OpenCV window (frame, skeleton, top-3, fps, latency)", group=RUN)
    record: Optional[str] = setting(
        None,
        f"write the annotated video (demo default {DEMO_RECORD})",
        group=RUN,
        metavar="OUT.mp4",
        also=((("--no-record",), dict(action="store_true", help="do not write the demo's video")),),
    )
    listen: bool = setting(
        False,
        "start a listener printing the messages (demo default)",
        group=RUN,
        action="store_true",
        flag_default=None,
        exclusive=True,
        also=((("--no-listen",), dict(dest="listen", action="store_false", help="no listener")),),
    )
    verbose: bool = setting(
        False,
        "also show the pose library's own start-up messages (MediaPipe, TensorFlow Lite, absl)",
        group=RUN,
        flag=("-v", "--verbose"),
    )
    restart_backoff_s: float = setting(
        0.5, "first delay before restarting a crashed worker (doubles each time)", Range(0, 3600, "lo"), flag=NO_FLAG
    )
    restart_backoff_max_s: float = setting(10.0, "cap of the restart delay", Range(0, 3600, "lo"), flag=NO_FLAG)
    max_restarts: int = setting(20, "give up (exit non-zero) after this many worker restarts", Range(0), flag=NO_FLAG)

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

        return self.threads or max(1, min(8, (os.cpu_count() or 2) // 2))

    def replace(self, **changes: Any) -> "StreamConfig":
        return dataclasses.replace(self, **changes)

    def validate(self, group: int = 4, pose_frames: int = 32) -> "StreamConfig":
        """Raise ``ConfigError`` (one sentence) for a configuration that cannot run; return self."""
        settings.check_fields(self, terse=True)  # every range and name declared on the fields
        if not all(isinstance(v, int) and 16 <= v <= MAX_SIDE for v in (self.max_width, self.max_height)):
            raise ConfigError(
                f"--max-size {self.max_width}x{self.max_height} is not allowed: give WIDTHxHEIGHT of "
                f"at least 16x16 and at most {MAX_SIDE}x{MAX_SIDE} pixels"
            )
        if not STREAM_ID.match(self.stream_id):
            raise ConfigError(
                f"stream id {self.stream_id!r} must be 1-64 letters, digits, '_' or '-' "
                f"(it becomes part of the topic mg.window.<stream>)"
            )
        if self.stride < group or self.stride % group:
            raise ConfigError(
                f"--stride {self.stride} must be a positive multiple of {group} (the pose samples "
                f"per RGB frame), e.g. 4, 8 or 16"
            )
        if self.stride > pose_frames:
            raise ConfigError(
                f"--stride {self.stride} is larger than the {pose_frames}-sample window: "
                f"samples between windows would never be used; choose at most {pose_frames}"
            )
        if self.pose_backend not in POSE_BACKENDS:
            raise ConfigError(f"unknown pose backend {self.pose_backend!r}; choose one of {', '.join(POSE_BACKENDS)}")
        if not self.event_hysteresis < self.event_threshold:
            raise ConfigError(
                f"--event-hysteresis {self.event_hysteresis:g} must be below --event-threshold "
                f"{self.event_threshold:g} (a gesture ends at threshold - hysteresis)"
            )
        if self.ring_slots < 4 * self.pose_every:
            raise ConfigError(
                f"--ring-slots {self.ring_slots} is too small for --pose-every {self.pose_every}: "
                f"give at least {4 * self.pose_every} slots"
            )
        if self.pose_workers > 1 and not self.pose_thread:
            raise ConfigError(f"--pose-workers {self.pose_workers} needs the pose thread: drop --no-pose-thread")
        if self.curve_allow_dir and not self.curve_secret_key:
            raise ConfigError("--curve-allow needs --curve-secret (the server's secret key file)")
        normalize_source_options(self.source, self.source_options)
        check_endpoint(self.endpoint, self.allow_remote)
        if self.web is not None:
            check_web(self.web, self.allow_remote, self.web_token, self.endpoint)
        return self


def source_kind(source: str) -> str:
    """``synthetic``, ``webcam``, ``stream`` (a network URL), ``folder`` or ``file``: which options apply."""
    s = source.strip()
    if s == "synthetic" or s.startswith("synthetic:"):
        return "synthetic"
    if s.isdigit() or s.startswith("/dev/video"):
        return "webcam"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", s) and not s.startswith("file://"):
        return "stream"
    s = s[len("file://") :] if s.startswith("file://") else s
    return "folder" if Path(s).expanduser().is_dir() else "file"


def _bool_option(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ConfigError(
        f"--source-option {key}={value!r} is not a boolean: give one of {', '.join(TRUE_WORDS + FALSE_WORDS)}"
    )


def normalize_source_options(source: str, options: Any) -> Tuple[Tuple[str, Any], ...]:
    """``--source-option`` pairs checked against the source's kind and typed (booleans from
    true/false/1/0/yes/no); ``ConfigError`` for an unknown key (listing the known ones) or a value
    that cannot work."""
    kind = source_kind(source)
    known = CAPTURE_SOURCE_OPTIONS + SOURCE_OPTIONS[kind]
    out = []
    for key, value in options:
        if key not in known:
            raise ConfigError(
                f"--source-option {key}: not an option of a {kind} source; its options are "
                f"{', '.join(known)} (docs/capture.md)"
            )
        if key in ("loop", "pace"):
            value = _bool_option(key, value)
        elif key in TIMING_SOURCE_OPTIONS:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value > 0)
            ):
                raise ConfigError(f"--source-option {key}={value!r}: expected a positive number of seconds")
        elif key == "fps":
            lo, hi = (1.0, 120.0) if kind == "synthetic" else (0.0, MAX_FPS)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not (lo <= value <= hi if kind == "synthetic" else lo < value <= hi):
                rng = f"[{lo:g}, {hi:g}]" if kind == "synthetic" else f"(0, {hi:g}]"
                raise ConfigError(
                    f"--source-option fps={value!r} is not allowed: give frames per second in {rng}"
                    + (" for the synthetic source" if kind == "synthetic" else "")
                )
        elif key in ("width", "height", "max_frames", "api"):
            lo = 0 if key == "api" else (64 if kind == "synthetic" else 1)
            top = {
                "width": 1920 if kind == "synthetic" else MAX_SIDE,
                "height": 1080 if kind == "synthetic" else MAX_SIDE,
            }.get(key)
            check_number(f"--source-option {key}", value, Range(lo, INF if top is None else top), integer=True)
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

    fields = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in opts.items()
        if k in synth.SynthConfig.__dataclass_fields__
    }
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
        raise ConfigError(
            f"endpoint {endpoint} is not a loopback address; other machines could subscribe. "
            f"Pass --allow-remote to bind it on purpose (and consider --curve-secret)"
        )
    return not loop


def parse_web_address(text: str) -> Tuple[str, int]:
    """``(host, port)`` of ``--web [HOST:]PORT`` (host 127.0.0.1 when only a port is given; ``[::1]:8080``
    for IPv6); ``ConfigError`` naming what is wrong."""
    text = str(text).strip()
    form = "give PORT (e.g. 8080, served on 127.0.0.1) or HOST:PORT (e.g. 127.0.0.1:8080)"
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "127.0.0.1", text
    if not host or any(c in host for c in "/@ ?#"):
        raise ConfigError(f"--web {text!r} is not [HOST:]PORT: {form}")
    if not (port.isdigit() and 0 <= int(port) <= 65535):
        raise ConfigError(f"--web {text!r}: the port must be a number between 0 and 65535 (0: any free port)")
    return host, int(port)


def web_is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface or host name, 0.0.0.0 ...: other machines may reach it
        return False


def check_web(web: str, allow_remote: bool, token: Optional[str], endpoint: str) -> None:
    """Refuse a ``--web`` address that is malformed, reachable from other machines without
    ``--allow-remote`` and a token, or a ZeroMQ endpoint the web view cannot subscribe to."""
    host, _ = parse_web_address(web)
    if not web_is_loopback(host):
        if not allow_remote:
            raise ConfigError(
                f"--web {web} is not a loopback address; other machines could watch. Pass --allow-remote "
                f"to serve it on purpose (with --web-token-env or --web-token-file)"
            )
        if not token:
            raise ConfigError(
                f"--web {web} is reachable from other machines: give a token with --web-token-env VAR or "
                f"--web-token-file PATH (at least {MIN_TOKEN_CHARS} characters)"
            )
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token):
        raise ConfigError(
            f"the web token must be at least {MIN_TOKEN_CHARS} printable characters without spaces "
            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if parse_endpoint(endpoint)[0] == "inproc":
        raise ConfigError(
            f"--web needs a tcp:// or ipc:// --endpoint to subscribe to; {endpoint} is reachable only "
            f"inside the supervisor's own ZeroMQ context"
        )


def secret_from(flag_env: str, env: Optional[str], flag_file: str, file: Optional[str], what: str) -> Optional[str]:
    """A value kept out of the command line (``ps`` shows every local user a process's arguments, not
    its environment or the files it reads): from the environment variable ``env`` or the first line
    of ``file``; ``None`` when neither is given."""
    if env and file:
        raise ConfigError(f"give the {what} once: {flag_env} or {flag_file}, not both")
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"{flag_env} {env}: that environment variable is unset or empty")
        return value
    if file:
        path = Path(file).expanduser()
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{flag_file} {path}: cannot read it ({e.__class__.__name__})") from None
        if not lines:
            raise ConfigError(f"{flag_file} {path}: the file is empty; put the {what} on its first line")
        if path.stat().st_mode & 0o077:
            log.warning("%s %s can be read by other users; chmod 600 it if it holds credentials", flag_file, path)
        return lines[0]
    return None


# ---------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """``clipmg-live``'s command line: one flag per flagged ``StreamConfig`` field (and the flags that
    feed one: ``--source-env``, ``--source-file``, ``--no-record``, ``--no-listen``), plus ``--quiet``."""
    ap = argparse.ArgumentParser(
        prog="clipmg-live",
        description="Live micro-gesture recognition: capture -> pose -> CLIP-MG -> ZeroMQ. "
        "With no --engine: the built-in synthetic demo (stops by itself after 20 s).",
    )
    settings.add_arguments(ap, StreamConfig)
    run = next(g for g in ap._action_groups if g.title == RUN)
    run.add_argument("-q", "--quiet", action="store_true", help="no live summary lines")  # the supervisor's
    return ap


def resolve_sources(args: argparse.Namespace) -> List[str]:
    """The source strings: each ``--source``, or the one kept out of the command line with
    ``--source-env`` or ``--source-file`` (``ps`` shows every local user a process's arguments, not
    its environment or the files it reads); ``synthetic`` when none is given."""
    value = secret_from("--source-env", args.source_env, "--source-file", args.source_file, "source")
    given = list(args.source or [])
    if value is not None:
        if given:
            raise ConfigError(
                "give the source once: --source, or --source-env / --source-file (several streams with "
                "credentials: a --streams file, whose streams may each have source_env or source_file)"
            )
        return [value]
    return given or ["synthetic"]


def resolve_source(args: argparse.Namespace) -> str:
    """The first (or only) source of ``resolve_sources``."""
    return resolve_sources(args)[0]


def config_from_args(args: argparse.Namespace) -> StreamConfig:
    """The ``StreamConfig`` of a parsed command line (demo defaults when no ``--engine``): every flagged
    field as parsed, then the ones a flag does not give as such."""
    demo = args.engine is None
    duration = args.duration
    if duration is None and demo and args.max_windows is None:
        duration = DEMO_DURATION_S
    if args.streams and args.source_option:
        raise ConfigError(
            "--source-option applies to --source; in a --streams file give each stream its own source_options"
        )
    source = resolve_source(args)
    width, height = args.max_size
    return StreamConfig(
        **{
            **settings.values_from_args(StreamConfig, args),
            "source": source,
            "source_options": normalize_source_options(source, args.source_option),
            "pace": not args.no_pace,
            "max_width": width,
            "max_height": height,
            "pose_options": tuple(args.pose_option),
            "demo": demo,
            "duration_s": duration or None,  # --duration 0: run until stopped
            "record": None if args.no_record else (args.record or (DEMO_RECORD if demo else None)),
            "listen": args.listen if args.listen is not None else demo,
            "web_token": secret_from(
                "--web-token-env", args.web_token_env, "--web-token-file", args.web_token_file, "token"
            ),
        }
    )


def check_source(cfg: StreamConfig) -> None:
    """Fail fast on a source that is obviously wrong (a missing file); cameras and URLs are tried live."""

    s = cfg.source
    if "://" in s and not s.startswith("file://"):
        check_source_url(s)
        return
    if s.startswith("synthetic") or s.isdigit() or s.startswith("/dev/video"):
        if s.startswith("synthetic:") and not s.partition(":")[2].isdigit():
            raise ConfigError(f"synthetic source seed must be an integer, got {s!r}")
        return
    s = s[len("file://") :] if s.startswith("file://") else s
    if not Path(s).expanduser().exists():
        raise ConfigError(
            f"--source {redact_url(s)}: no such file or folder (give a webcam index, a URL, a video "
            f"file, an image folder or 'synthetic')"
        )


def check_source_url(url: str) -> None:
    """Refuse a stream URL that cannot be opened whatever the network does (no scheme, no host, a
    port that is not a number in 1-65535), with the credentials masked. A well-formed URL whose
    camera is unreachable is not an error: the capture keeps retrying it (streaming.md)."""

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


def check_rings_fit(cfgs: Sequence[StreamConfig]) -> None:
    """Refuse rings (one a stream) bigger than the free shared memory: tmpfs allocates lazily, so an
    oversized ring would only fail later, with SIGBUS in the middle of a write."""

    need = sum(c.ring_slots * (c.max_height * c.max_width * 3 + 2048) for c in cfgs)
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:  # no /dev/shm (not Linux): let the operating system decide
        return
    if need > 0.8 * free:
        c = cfgs[0]
        many = f"{len(cfgs)} rings of " if len(cfgs) > 1 else ""
        raise ConfigError(
            f"{many}{c.ring_slots} slots of {c.max_width}x{c.max_height} need {need / 2**20:.0f} MiB but "
            f"/dev/shm has {free / 2**20:.0f} MiB free; lower --ring-slots or --max-size"
        )


def check_precision(kind: str, cfg: StreamConfig) -> None:
    """Refuse a ``--precision`` the engine cannot run: ``kind`` is what ``--engine`` is (``onnx``,
    ``checkpoint``, ``tensorrt``; ``engines/artifacts.py``)."""
    p = cfg.precision
    if p == "auto":
        return
    if kind == "onnx" and p in ONNX_PRECISIONS:
        return
    if kind == "checkpoint" and checkpoint_route(cfg.device)[0] == "cuda" and p in CUDA_PRECISIONS:
        return
    raise ConfigError(
        f"--precision {p} applies to an exported ONNX engine ({', '.join(ONNX_PRECISIONS[1:])}) or to a "
        f"checkpoint on the CUDA engine (--device cuda: {', '.join(CUDA_PRECISIONS[1:])}); {cfg.engine} is a "
        f"{kind}"
        + ("" if kind == "onnx" else f" on --device {cfg.device}")
        + ", which cannot run it"
        + (" (export a checkpoint with clipmg-export --int8)" if p == "int8" else "")
    )
