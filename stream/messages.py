"""The versioned ZeroMQ payloads: window, event and status messages (docs/zmq.md describes them).

Every payload is a map with a ``schema`` field, ``"clipmg.<kind>/<version>"``; a client checks the
kind and the major version and ignores fields it does not know (new fields never bump the
version; removing or changing one does). Payloads are JSON (UTF-8) by default, msgpack on request;
``decode`` recognises both. ``SCHEMA`` is the JSON Schema all three kinds satisfy;
``docs/zmq-schema.json`` is a copy of it (``python -m clipmg.stream.messages > docs/zmq-schema.json``).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

STREAM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # a stream id: part of the topic mg.window.<stream>
WINDOW_SCHEMA = "clipmg.window/1"
SAMPLINGS = ("stream", "whole_clip")  # how a window's frames were chosen
EVENT_SCHEMA = "clipmg.event/1"
STATUS_SCHEMA = "clipmg.status/1"
TOPIC_PREFIXES = {"window": "mg.window", "event": "mg.event", "status": "mg.status"}

STATES = ("starting", "running", "restarting", "stopping", "stopped", "failed")
SOURCE_STATES = ("unknown", "opening", "streaming", "stalled", "reconnecting", "ended", "failed", "stopped")


class MessageError(ValueError):
    """A payload that cannot be decoded or is not a clipmg message."""


def topic(kind: str, stream: str) -> bytes:
    """The topic frame of a message kind ('window', 'event', 'status') for a stream."""
    return f"{TOPIC_PREFIXES[kind]}.{stream}".encode()


# ------------------------------------------------------------------------------------ encoding
def encode(msg: Mapping[str, Any], fmt: str = "json") -> bytes:
    """A message map -> payload bytes (``fmt``: 'json' or 'msgpack').

    Raises ``MessageError`` (a ``ValueError``) for a message the format cannot hold (NaN or infinity
    in JSON, a value of another type, an integer beyond 64 bits in msgpack) or an unknown format.
    """
    try:
        if fmt == "json":
            return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        if fmt == "msgpack":
            import msgpack

            return msgpack.packb(msg, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, RecursionError, UnicodeEncodeError) as e:
        raise MessageError(f"cannot encode the message as {fmt}: {type(e).__name__}: {e}") from e
    raise MessageError(f"unknown payload format {fmt!r}; choose json or msgpack")


def decode(payload: bytes, fmt: Optional[str] = None) -> Dict[str, Any]:
    """Payload bytes -> message map; ``fmt=None`` recognises JSON (starts with '{') or msgpack."""
    if not payload:
        raise MessageError("empty payload")
    if fmt is None:
        fmt = "json" if payload[:1] == b"{" else "msgpack"
    try:
        if fmt == "json":
            msg = json.loads(payload.decode("utf-8"))
        elif fmt == "msgpack":
            import msgpack

            msg = msgpack.unpackb(payload, raw=False)
        else:
            raise ValueError(f"unknown payload format {fmt!r}; choose json or msgpack")
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise MessageError(f"payload is not valid {fmt} ({e})") from e
    except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated types for bad input
        raise MessageError(f"payload is not valid {fmt} ({type(e).__name__}: {e})") from e
    if not isinstance(msg, dict) or not isinstance(msg.get("schema"), str):
        raise MessageError("payload is not a clipmg message (a map with a 'schema' field)")
    return msg


def _f(x: float, nd: int = 6) -> float:
    """A finite Python float (JSON has no NaN): non-finite values become -1."""
    x = float(x)
    return round(x, nd) if math.isfinite(x) else -1.0


# ------------------------------------------------------------------------------------ builders
def topk_entries(topk: Sequence[tuple]) -> List[Dict[str, Any]]:
    """``(index, label, probability)`` best first -> the ``topk`` list of a window message."""
    return [{"index": int(i), "label": str(n), "p": _f(q)} for i, n, q in topk]


def window_message(
    *,
    stream: str,
    window: int,
    pose_seqs: Sequence[int],
    rgb_seqs: Sequence[int],
    t_wall: Sequence[float],
    stride: int,
    pose_every: int,
    t_publish: float,
    latency_ms: Mapping[str, float],
    computed: Mapping[str, int],
    person: bool,
    person_fraction: float,
    topk: Sequence[tuple],
    label: Optional[str],
    p: Optional[float],
    model: Mapping[str, str],
    skipped: int,
    answered: bool = True,
    logits: Optional[Sequence[float]] = None,
    sampling: str = "stream",
) -> Dict[str, Any]:
    """A ``clipmg.window/1`` message. ``topk``: ``(index, label, probability)`` best first;
    ``t_wall``: capture wall-clock times of the pose samples (s); ``sampling``: ``stream`` (the
    frame clock; not written, the default) or ``whole_clip``."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    msg: Dict[str, Any] = {
        "schema": WINDOW_SCHEMA,
        "stream": stream,
        "window": int(window),
        "frames": {
            "first_seq": int(pose_seqs[0]),
            "last_seq": int(pose_seqs[-1]),
            "pose_seqs": [int(s) for s in pose_seqs],
            "rgb_seqs": [int(s) for s in rgb_seqs],
            "t_first": _f(t_wall[0]),
            "t_last": _f(t_wall[-1]),
            # largest capture-time step between consecutive pose samples: a window that spans a
            # source outage says so (its frames are numbered consecutively across the outage)
            "max_gap_s": _f(max((b - a for a, b in zip(t_wall, t_wall[1:])), default=0.0), 4),
            "stride": int(stride),
            "pose_every": int(pose_every),
        },
        "t_publish": _f(t_publish),
        "latency_ms": {k: _f(v, 3) for k, v in latency_ms.items()},
        "computed": {k: int(v) for k, v in computed.items()},
        "person": bool(person),
        "person_fraction": _f(person_fraction, 4),
        "answered": bool(answered),
        "topk": topk_entries(topk),
        "label": label,
        "p": None if p is None else _f(p),
        "model": {k: str(v) for k, v in model.items()},
        "skipped": int(skipped),
    }
    if sampling != "stream":
        msg["frames"]["sampling"] = sampling
    if logits is not None:
        msg["logits"] = [float(x) for x in logits]  # full precision: equality checks use it
    return msg


def event_message(
    *,
    stream: str,
    kind: str,
    label: str,
    window: int,
    window_start: int,
    t: float,
    t_start: float,
    confidence: float,
    t_publish: float,
    reason: str = "",
) -> Dict[str, Any]:
    """A ``clipmg.event/1`` message: a debounced gesture 'start' or 'end'."""
    return {
        "schema": EVENT_SCHEMA,
        "stream": stream,
        "event": kind,
        "label": label,
        "window": int(window),
        "window_start": int(window_start),
        "t": _f(t),
        "t_start": _f(t_start),
        "duration_s": _f(max(t - t_start, 0.0), 4),
        "confidence": _f(confidence),
        "reason": reason,
        "t_publish": _f(t_publish),
    }


def status_message(
    *,
    stream: str,
    state: str,
    t_publish: float,
    source: Mapping[str, Any],
    fps_in: float = 0.0,
    fps_pose: float = 0.0,
    fps_out: float = 0.0,
    windows: int = 0,
    skipped: int = 0,
    dropped_frames: int = 0,
    dropped_messages: int = 0,
    restarts: int = 0,
    worker: Optional[Mapping[str, Any]] = None,
    model: Optional[Mapping[str, str]] = None,
    last_window: Optional[Mapping[str, Any]] = None,
    latency_ms: Optional[Mapping[str, float]] = None,
    message: str = "",
) -> Dict[str, Any]:
    """A ``clipmg.status/1`` heartbeat (also sent on every state change)."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
    return {
        "schema": STATUS_SCHEMA,
        "stream": stream,
        "state": state,
        "t_publish": _f(t_publish),
        "source": dict(source),
        "fps_in": _f(fps_in, 2),
        "fps_pose": _f(fps_pose, 2),
        "fps_out": _f(fps_out, 3),
        "windows": int(windows),
        "skipped": int(skipped),
        "dropped_frames": int(dropped_frames),
        "dropped_messages": int(dropped_messages),
        "restarts": int(restarts),
        "worker": dict(worker or {}),
        "model": dict(model or {}),
        "last_window": dict(last_window) if last_window else None,
        "latency_ms": {k: _f(v, 3) for k, v in (latency_ms or {}).items()},
        "message": message,
    }


# ------------------------------------------------------------------------------------ schema
def _num(minimum: Optional[float] = None) -> Dict[str, Any]:
    return {"type": "number", **({"minimum": minimum} if minimum is not None else {})}


_INT0 = {"type": "integer", "minimum": 0}
_STREAM = {"type": "string", "pattern": STREAM_ID_PATTERN}
_MODEL = {
    "type": "object",
    "required": ["checkpoint_sha256", "backend", "precision"],
    "properties": {
        "checkpoint_sha256": {"type": "string"},
        "backend": {"type": "string"},
        "precision": {"type": "string"},
        "preset": {"type": "string"},
        "variant": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}

SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:clipmg:zmq-schema:1",
    "title": "clipmg ZeroMQ payloads",
    "description": "Payloads published on mg.window.<stream>, mg.event.<stream> and mg.status.<stream>. "
    "Clients must ignore properties they do not know.",
    "oneOf": [{"$ref": "#/$defs/window"}, {"$ref": "#/$defs/event"}, {"$ref": "#/$defs/status"}],
    "$defs": {
        "window": {
            "type": "object",
            "description": "One sliding window's result (topic mg.window.<stream>).",
            "required": [
                "schema",
                "stream",
                "window",
                "frames",
                "t_publish",
                "latency_ms",
                "computed",
                "person",
                "person_fraction",
                "answered",
                "topk",
                "label",
                "p",
                "model",
                "skipped",
            ],
            "properties": {
                "schema": {"const": WINDOW_SCHEMA},
                "stream": _STREAM,
                "window": {**_INT0, "description": "window number w: pose samples w*stride .. w*stride+31"},
                "frames": {
                    "type": "object",
                    "required": [
                        "first_seq",
                        "last_seq",
                        "pose_seqs",
                        "rgb_seqs",
                        "t_first",
                        "t_last",
                        "stride",
                        "pose_every",
                    ],
                    "properties": {
                        "first_seq": _INT0,
                        "last_seq": _INT0,
                        "pose_seqs": {
                            "type": "array",
                            "items": _INT0,
                            "minItems": 1,
                            "description": "capture frame numbers of the pose samples",
                        },
                        "rgb_seqs": {
                            "type": "array",
                            "items": _INT0,
                            "minItems": 1,
                            "description": "capture frame numbers of the RGB samples",
                        },
                        "t_first": {**_num(), "description": "capture wall-clock time of the first pose sample (s)"},
                        "t_last": {**_num(), "description": "capture wall-clock time of the last pose sample (s)"},
                        "max_gap_s": {
                            **_num(),
                            "description": "largest capture-time step between consecutive pose "
                            "samples (s): large when the window spans an outage",
                        },
                        "stride": {"type": "integer", "minimum": 1},
                        "pose_every": {"type": "integer", "minimum": 1},
                        "sampling": {
                            "enum": list(SAMPLINGS),
                            "description": "absent or 'stream': the live frame clock (pose every Δp-th frame, "
                            "a window every S samples); 'whole_clip': a file shorter than one "
                            "window, sampled as evaluation samples a clip (clip_samples: frame "
                            "numbers may repeat)",
                        },
                    },
                },
                "t_publish": {**_num(), "description": "wall-clock time the message was built (s since epoch)"},
                "latency_ms": {
                    "type": "object",
                    "required": ["pose", "encode", "head", "publish", "capture_to_publish"],
                    "additionalProperties": {"type": "number"},
                    "description": "pose/encode: time spent on this window's new samples; head; publish: "
                    "deciding and serialising; capture_to_publish: last frame captured -> sent",
                },
                "computed": {
                    "type": "object",
                    "required": ["pose_samples", "rgb_encoded"],
                    "additionalProperties": {"type": "integer", "minimum": 0},
                    "description": "samples this window had to compute (the rest came from the cache)",
                },
                "person": {"type": "boolean", "description": "a person was found in at least half the pose samples"},
                "person_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "answered": {"type": "boolean", "description": "false: no person and the policy is 'none'"},
                "topk": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "label", "p"],
                        "properties": {
                            "index": _INT0,
                            "label": {"type": "string"},
                            "p": {"type": "number", "minimum": 0, "maximum": 1},
                        },
                    },
                },
                "label": {"type": ["string", "null"], "description": "the decided label, or null"},
                "p": {"type": ["number", "null"], "description": "probability of the most probable class"},
                "model": _MODEL,
                "skipped": {**_INT0, "description": "windows this worker skipped so far because it was late"},
                "logits": {"type": "array", "items": {"type": "number"}, "description": "optional raw logits"},
            },
        },
        "event": {
            "type": "object",
            "description": "A debounced gesture start or end (topic mg.event.<stream>).",
            "required": [
                "schema",
                "stream",
                "event",
                "label",
                "window",
                "window_start",
                "t",
                "t_start",
                "duration_s",
                "confidence",
                "t_publish",
            ],
            "properties": {
                "schema": {"const": EVENT_SCHEMA},
                "stream": _STREAM,
                "event": {"enum": ["start", "end"]},
                "label": {"type": "string"},
                "window": _INT0,
                "window_start": _INT0,
                "t": {**_num(), "description": "capture time of the window that triggered the event (s)"},
                "t_start": {**_num(), "description": "capture time of the gesture's first window (s)"},
                "duration_s": _num(0),
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "reason": {"type": "string", "description": "end events: released, replaced or stopped"},
                "t_publish": _num(),
            },
        },
        "status": {
            "type": "object",
            "description": "Heartbeat and state changes (topic mg.status.<stream>); sent every heartbeat period, "
            "so a client that just connected learns the current state within one period.",
            "required": [
                "schema",
                "stream",
                "state",
                "t_publish",
                "source",
                "fps_in",
                "fps_pose",
                "fps_out",
                "windows",
                "skipped",
                "dropped_frames",
                "dropped_messages",
                "restarts",
                "worker",
                "last_window",
                "message",
            ],
            "properties": {
                "schema": {"const": STATUS_SCHEMA},
                "stream": _STREAM,
                "state": {"enum": list(STATES)},
                "t_publish": _num(),
                "source": {
                    "type": "object",
                    "required": ["state"],
                    "properties": {"state": {"enum": list(SOURCE_STATES)}, "spec": {"type": "string"}},
                },
                "fps_in": _num(0),
                "fps_pose": _num(0),
                "fps_out": _num(0),
                "windows": _INT0,
                "skipped": _INT0,
                "dropped_frames": _INT0,
                "dropped_messages": _INT0,
                "restarts": _INT0,
                "restart_gap": {
                    **_INT0,
                    "description": "windows nobody computed while a crashed worker restarted (included in skipped)",
                },
                "worker": {"type": "object"},
                "model": {"type": "object"},
                "last_window": {"type": ["object", "null"]},
                "latency_ms": {"type": "object", "additionalProperties": {"type": "number"}},
                "message": {"type": "string"},
            },
        },
    },
}


def validate(msg: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``msg`` satisfies ``SCHEMA``."""
    import jsonschema

    jsonschema.validate(dict(msg), SCHEMA)


def schema_json() -> str:
    return json.dumps(SCHEMA, indent=2) + "\n"


def summary(top: str, msg: Mapping[str, Any]) -> str:
    """One human-readable line for a message (what ``clipmg-listen`` prints). Never raises: a
    message whose fields are not what its schema says is shown as malformed, with its content."""
    try:
        return _summary(top, msg)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        text = json.dumps(msg, separators=(",", ":"), default=repr)
        return f"{top}  <malformed message ({type(e).__name__}: {e}): {text[:300]}>"


def _summary(top: str, msg: Mapping[str, Any]) -> str:
    kind = str(msg.get("schema", "?")).split("/")[0].split(".")[-1]
    if kind == "window":
        fr, lat = msg.get("frames", {}), msg.get("latency_ms", {})
        tk = ", ".join(f"{d['label']} {d['p']:.2f}" for d in msg.get("topk", [])[:3]) or "-"
        who = "" if msg.get("person", True) else "  [no person]"
        return (
            f"{top}  #{msg.get('window')}  frames {fr.get('first_seq')}-{fr.get('last_seq')}  "
            f"label={msg.get('label')}  top: {tk}  latency {lat.get('capture_to_publish', -1):.0f} ms  "
            f"skipped {msg.get('skipped')}{who}"
        )
    if kind == "event":
        return (
            f"{top}  {msg.get('event')} {msg.get('label')!r}  window {msg.get('window')}  "
            f"conf {msg.get('confidence', 0):.2f}  duration {msg.get('duration_s', 0):.2f} s"
        )
    if kind == "status":
        src = msg.get("source", {})
        text = f"  {msg['message']}" if msg.get("message") else ""
        return (
            f"{top}  {msg.get('state')}  source {src.get('state')}  in {msg.get('fps_in', 0):.1f} fps  "
            f"out {msg.get('fps_out', 0):.2f} win/s  windows {msg.get('windows')}  skipped {msg.get('skipped')}  "
            f"restarts {msg.get('restarts')}{text}"
        )
    return f"{top}  {msg}"


def main(argv: Optional[List[str]] = None) -> int:
    """Print the JSON Schema (``python -m clipmg.stream.messages > docs/zmq-schema.json``)."""
    sys.stdout.write(schema_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
