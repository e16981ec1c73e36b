"""The versioned ZeroMQ payloads: window, event and status messages (docs/zmq.md describes them).

Each message kind is declared once, as a ``msgspec.Struct`` (``WindowMessage``, ``EventMessage``,
``StatusMessage`` and the structs they nest), and everything else comes from that declaration:
the JSON and msgpack encoding (``encode``), the validating decoder (``decode``) and the JSON Schema
(``json_schema()``; ``docs/zmq-schema.json`` is a copy of it:
``python -m clipmg.stream.messages > docs/zmq-schema.json``).

Every payload is a map with a ``schema`` field, ``"clipmg.<kind>/<version>"`` (the structs' tag);
a client checks the kind and the major version and ignores fields it does not know (new fields
never bump the version; removing or changing one does), which is what ``decode`` does. Payloads
are JSON (UTF-8) by default, msgpack on request; ``decode`` recognises both.
"""

from __future__ import annotations

import json
import math
import operator
import sys
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    get_args,
)

import msgspec
import msgspec.inspect

if TYPE_CHECKING:
    import numpy as np
from msgspec import UNSET, Meta, UnsetType

STREAM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # a stream id: part of the topic mg.window.<stream>
WINDOW_SCHEMA = "clipmg.window/1"
EVENT_SCHEMA = "clipmg.event/1"
STATUS_SCHEMA = "clipmg.status/1"
TOPIC_PREFIXES = {"window": "mg.window", "event": "mg.event", "status": "mg.status"}

Sampling = Literal["stream", "whole_clip"]  # how a window's frames were chosen
State = Literal["starting", "running", "restarting", "stopping", "stopped", "failed"]
SourceState = Literal["unknown", "opening", "streaming", "stalled", "reconnecting", "ended", "failed", "stopped"]
SAMPLINGS: Tuple[str, ...] = get_args(Sampling)
STATES: Tuple[str, ...] = get_args(State)
SOURCE_STATES: Tuple[str, ...] = get_args(SourceState)


class MessageError(ValueError):
    """A payload that cannot be decoded or is not a clipmg message."""


def topic(kind: str, stream: str) -> bytes:
    """The topic frame of a message kind ('window', 'event', 'status') for a stream."""
    return f"{TOPIC_PREFIXES[kind]}.{stream}".encode()


# ------------------------------------------------------------------------------------ field types
Count = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]
Probability = Annotated[float, Meta(ge=0, le=1)]
NonNegative = Annotated[float, Meta(ge=0)]
StreamId = Annotated[str, Meta(pattern=STREAM_ID_PATTERN)]


def _doc(text: str, **extra: Any) -> Meta:
    """A field's description (and extra JSON Schema keywords) for the generated schema."""
    return Meta(description=text, extra_json_schema=extra or None)


# ------------------------------------------------------------------------------------ the window
class Frames(msgspec.Struct, kw_only=True):
    """Which capture frames a window used."""

    first_seq: Count
    last_seq: Count
    pose_seqs: Annotated[List[Count], Meta(min_length=1), _doc("capture frame numbers of the pose samples")]
    rgb_seqs: Annotated[List[Count], Meta(min_length=1), _doc("capture frame numbers of the RGB samples")]
    t_first: Annotated[float, _doc("capture wall-clock time of the first pose sample (s)")]
    t_last: Annotated[float, _doc("capture wall-clock time of the last pose sample (s)")]
    # always written; optional in the schema since messages of earlier releases lack it
    max_gap_s: Annotated[
        Union[float, UnsetType],
        _doc("largest capture-time step between consecutive pose samples (s): large when the window spans an outage"),
    ] = UNSET
    stride: Positive
    pose_every: Positive
    sampling: Annotated[
        Union[Sampling, UnsetType],
        _doc(
            "absent or 'stream': the live frame clock (pose every Δp-th frame, a window every S samples); "
            "'whole_clip': a file shorter than one window, sampled as evaluation samples a clip "
            "(clip_samples: frame numbers may repeat)"
        ),
    ] = UNSET


class Latency(msgspec.Struct, kw_only=True):
    """Milliseconds a window's stages took."""

    pose: float
    encode: float
    head: float
    publish: float
    capture_to_publish: float


class Computed(msgspec.Struct, kw_only=True):
    """Samples a window had to compute."""

    pose_samples: Count
    rgb_encoded: Count
    pose_stage_inputs: Union[Count, UnsetType] = UNSET  # only when the pose-branch cache runs


class TopK(msgspec.Struct, kw_only=True):
    """One of the most probable classes."""

    index: Count
    label: str
    p: Probability


class ModelInfo(msgspec.Struct, kw_only=True):
    """Which model produced a window (``Engine.identity``)."""

    checkpoint_sha256: str
    backend: str
    precision: str
    preset: Union[str, UnsetType] = UNSET
    variant: Union[str, UnsetType] = UNSET


class WindowMessage(msgspec.Struct, tag_field="schema", tag=WINDOW_SCHEMA, kw_only=True):
    """One sliding window's result (topic mg.window.<stream>)."""

    stream: StreamId
    window: Annotated[Count, _doc("window number w: pose samples w*stride .. w*stride+31")]
    frames: Frames
    t_publish: Annotated[float, _doc("wall-clock time the message was built (s since epoch)")]
    latency_ms: Annotated[
        Latency,
        _doc(
            "pose/encode: time spent on this window's new samples; head; publish: deciding and "
            "serialising; capture_to_publish: last frame captured -> sent",
            additionalProperties={"type": "number"},
        ),
    ]
    computed: Annotated[
        Computed,
        _doc(
            "samples this window had to compute (the rest came from the cache)",
            additionalProperties={"type": "integer", "minimum": 0},
        ),
    ]
    person: Annotated[bool, _doc("a person was found in at least half the pose samples")]
    person_fraction: Probability
    answered: Annotated[bool, _doc("false: no person and the policy is 'none'")]
    topk: List[TopK]
    label: Annotated[Optional[str], _doc("the decided label, or null")]
    p: Annotated[Optional[float], _doc("probability of the most probable class")]
    model: Annotated[ModelInfo, Meta(extra_json_schema={"additionalProperties": {"type": "string"}})]
    skipped: Annotated[Count, _doc("windows this worker skipped so far because it was late")]
    logits: Annotated[Union[List[float], UnsetType], _doc("optional raw logits")] = UNSET


# ------------------------------------------------------------------------------------ events, status
class EventMessage(msgspec.Struct, tag_field="schema", tag=EVENT_SCHEMA, kw_only=True):
    """A debounced gesture start or end (topic mg.event.<stream>)."""

    stream: StreamId
    event: Literal["start", "end"]
    label: str
    window: Count
    window_start: Count
    t: Annotated[float, _doc("capture time of the window that triggered the event (s)")]
    t_start: Annotated[float, _doc("capture time of the gesture's first window (s)")]
    duration_s: NonNegative
    confidence: Probability
    reason: Annotated[str, _doc("end events: released, replaced or stopped")] = ""
    t_publish: float


class Source(msgspec.Struct, kw_only=True):
    """The capture's state and its (credential-free) description."""

    state: SourceState
    spec: Union[str, UnsetType] = UNSET


class StatusMessage(msgspec.Struct, tag_field="schema", tag=STATUS_SCHEMA, kw_only=True):
    """Heartbeat and state changes (topic mg.status.<stream>); sent every heartbeat period, so a client
    that just connected learns the current state within one period."""

    stream: StreamId
    state: State
    t_publish: float
    source: Source
    fps_in: NonNegative
    fps_pose: NonNegative
    fps_out: NonNegative
    windows: Count
    skipped: Count
    dropped_frames: Count
    dropped_messages: Count
    restarts: Count
    worker: Dict[str, Any]
    model: Dict[str, Any] = msgspec.field(default_factory=dict)
    last_window: Optional[Dict[str, Any]]
    latency_ms: Dict[str, float] = msgspec.field(default_factory=dict)
    message: str
    restart_gap: Annotated[
        Union[Count, UnsetType],
        _doc("windows nobody computed while a crashed worker restarted (included in skipped)"),
    ] = UNSET


Message = Union[WindowMessage, EventMessage, StatusMessage]
KINDS: Tuple[type, ...] = get_args(Message)


# ------------------------------------------------------------------------------------ encoding
_ENCODERS: Dict[str, Union[msgspec.json.Encoder, msgspec.msgpack.Encoder]] = {
    "json": msgspec.json.Encoder(),
    "msgpack": msgspec.msgpack.Encoder(),
}
_DECODERS: Dict[str, Union[msgspec.json.Decoder[Message], msgspec.msgpack.Decoder[Message]]] = {
    "json": msgspec.json.Decoder(Message),
    "msgpack": msgspec.msgpack.Decoder(Message),
}
_PLAIN: Dict[str, Union[msgspec.json.Decoder[Any], msgspec.msgpack.Decoder[Any]]] = {
    "json": msgspec.json.Decoder(),
    "msgpack": msgspec.msgpack.Decoder(),
}


def encode(msg: Union[Message, Mapping[str, Any]], fmt: str = "json") -> bytes:
    """A message (or any map) -> payload bytes (``fmt``: 'json' or 'msgpack').

    Raises ``MessageError`` (a ``ValueError``) for a message the format cannot hold (NaN or infinity
    in JSON, which msgspec would write as null; a value of another type; an integer beyond 64 bits
    in msgpack) or an unknown format.
    """
    enc = _ENCODERS.get(fmt)
    if enc is None:
        raise MessageError(f"unknown payload format {fmt!r}; choose json or msgpack")
    if fmt == "json" and not _finite(msg):
        raise MessageError("cannot encode the message as json: it holds NaN or infinity, which JSON has no number for")
    try:
        return enc.encode(msg)
    except (TypeError, ValueError, OverflowError, RecursionError, UnicodeEncodeError) as e:
        raise MessageError(f"cannot encode the message as {fmt}: {type(e).__name__}: {e}") from e


def _finite(x: Any) -> bool:
    """No NaN or infinity anywhere in ``x`` (a message, or the builtins it holds). Of a struct only
    the fields whose declared type can hold a float are looked at. Values are summed in C first:
    a finite sum means every number is finite; anything else is looked at one by one (a sum can
    also overflow, or meet a struct, a list or None)."""
    t = type(x)
    if t is float:
        return math.isfinite(x)
    if isinstance(x, msgspec.Struct):
        values: Any = _float_values(t)(x)
    elif t is list or t is tuple:
        values = x
    elif isinstance(x, Mapping):
        values = list(x.values())
    elif isinstance(x, float):  # a float subclass (numpy's float64)
        return math.isfinite(x)
    else:
        return True  # int, str, bool, None, UNSET, bytes: nothing to check
    try:
        if math.isfinite(sum(values)):
            return True
    except (TypeError, OverflowError):
        pass
    return all(_finite(v) for v in values)


def _float_values(cls: type) -> Callable[[Any], Tuple[Any, ...]]:
    """A getter of the fields of struct ``cls`` whose declared type can hold a float (read off the
    declaration once)."""
    get = _FLOAT_VALUES.get(cls)
    if get is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        names = [f.name for f in info.fields if _may_hold_float(f.type, set())]
        # the first name twice: attrgetter returns a tuple only for two names or more
        get = _FLOAT_VALUES[cls] = operator.attrgetter(*names, *names[:1]) if names else (lambda _: ())
    return get


_FLOAT_VALUES: Dict[type, Callable[[Any], Tuple[Any, ...]]] = {}


def _may_hold_float(t: msgspec.inspect.Type, seen: set) -> bool:
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):  # a type with a description or extra schema keywords
        return _may_hold_float(t.type, seen)
    if isinstance(t, (mi.FloatType, mi.AnyType)):
        return True
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return _may_hold_float(t.item_type, seen)
    if isinstance(t, mi.DictType):
        return _may_hold_float(t.value_type, seen)
    if isinstance(t, mi.UnionType):
        return any(_may_hold_float(u, seen) for u in t.types)
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return False
        seen.add(t.cls)
        return any(_may_hold_float(f.type, seen) for f in t.fields)
    return False


def decode(payload: bytes, fmt: Optional[str] = None) -> Message:
    """Payload bytes -> the message it is, validated against its declaration; ``fmt=None``
    recognises JSON (starts with '{') or msgpack. Fields this version does not know are ignored.
    Raises ``MessageError`` with one sentence for anything else."""
    if not payload:
        raise MessageError("empty payload")
    if fmt is None:
        fmt = "json" if payload[:1] == b"{" else "msgpack"
    dec = _DECODERS.get(fmt)
    if dec is None:
        raise MessageError(f"unknown payload format {fmt!r}; choose json or msgpack")
    try:
        return dec.decode(payload)
    except msgspec.ValidationError as e:
        raise MessageError(f"payload is not a clipmg message this version knows: {e}") from e
    except (msgspec.DecodeError, RecursionError, ValueError) as e:
        raise MessageError(f"payload is not valid {fmt} ({e})") from e


def decode_plain(payload: bytes) -> Any:
    """A payload's content as plain maps and lists, every field kept (what ``clipmg-listen --raw``
    and ``--pretty`` print); ``MessageError`` if it is not valid JSON or msgpack."""
    fmt = "json" if payload[:1] == b"{" else "msgpack"
    try:
        return _PLAIN[fmt].decode(payload)
    except (msgspec.DecodeError, RecursionError, ValueError) as e:
        raise MessageError(f"payload is not valid {fmt} ({e})") from e


def to_dict(msg: Message) -> Dict[str, Any]:
    """A message as the plain map its JSON payload holds (``schema`` included)."""
    out: Dict[str, Any] = msgspec.to_builtins(msg)
    return out


def validate(msg: Mapping[str, Any]) -> Message:
    """The message a plain map is; ``MessageError`` unless it satisfies its declaration (the checks
    the JSON Schema states)."""
    try:
        return msgspec.convert(dict(msg), Message)
    except msgspec.ValidationError as e:
        raise MessageError(f"not a clipmg message this version knows: {e}") from e


def _f(x: float, nd: int = 6) -> float:
    """A finite Python float (JSON has no NaN): non-finite values become -1."""
    x = float(x)
    return round(x, nd) if math.isfinite(x) else -1.0


# ------------------------------------------------------------------------------------ builders
Numbers = Union[Sequence[float], "np.ndarray"]  # frame numbers, times: a list or a NumPy vector


def topk_entries(topk: Sequence[tuple]) -> List[TopK]:
    """``(index, label, probability)`` best first -> the ``topk`` list of a window message."""
    return [TopK(index=int(i), label=str(n), p=_f(q)) for i, n, q in topk]


def window_message(
    *,
    stream: str,
    window: int,
    pose_seqs: Numbers,
    rgb_seqs: Numbers,
    t_wall: Numbers,
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
    model: Union[ModelInfo, Mapping[str, str]],
    skipped: int,
    answered: bool = True,
    logits: Optional[Sequence[float]] = None,
    sampling: str = "stream",
) -> WindowMessage:
    """A ``clipmg.window/1`` message from the worker's values (rounded; the frame range derived).
    ``topk``: ``(index, label, probability)`` best first; ``t_wall``: capture wall-clock times of
    the pose samples (s); ``sampling``: ``stream`` (the frame clock; not written, the default) or
    ``whole_clip``."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return WindowMessage(
        stream=stream,
        window=int(window),
        frames=Frames(
            first_seq=int(pose_seqs[0]),
            last_seq=int(pose_seqs[-1]),
            pose_seqs=[int(s) for s in pose_seqs],
            rgb_seqs=[int(s) for s in rgb_seqs],
            t_first=_f(t_wall[0]),
            t_last=_f(t_wall[-1]),
            # largest capture-time step between consecutive pose samples: a window that spans a
            # source outage says so (its frames are numbered consecutively across the outage)
            max_gap_s=_f(max((b - a for a, b in zip(t_wall, t_wall[1:])), default=0.0), 4),
            stride=int(stride),
            pose_every=int(pose_every),
            sampling=UNSET if sampling == "stream" else sampling,  # type: ignore[arg-type]
        ),
        t_publish=_f(t_publish),
        latency_ms=Latency(**{k: _f(v, 3) for k, v in latency_ms.items()}),
        computed=Computed(**{k: int(v) for k, v in computed.items()}),
        person=bool(person),
        person_fraction=_f(person_fraction, 4),
        answered=bool(answered),
        topk=topk_entries(topk),
        label=label,
        p=None if p is None else _f(p),
        model=model if isinstance(model, ModelInfo) else ModelInfo(**{k: str(v) for k, v in model.items()}),
        skipped=int(skipped),
        logits=UNSET if logits is None else [float(x) for x in logits],  # full precision: equality checks use it
    )


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
) -> EventMessage:
    """A ``clipmg.event/1`` message: a debounced gesture 'start' or 'end'."""
    return EventMessage(
        stream=stream,
        event=kind,  # type: ignore[arg-type]
        label=label,
        window=int(window),
        window_start=int(window_start),
        t=_f(t),
        t_start=_f(t_start),
        duration_s=_f(max(t - t_start, 0.0), 4),
        confidence=_f(confidence),
        reason=reason,
        t_publish=_f(t_publish),
    )


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
    restart_gap: Optional[int] = None,
) -> StatusMessage:
    """A ``clipmg.status/1`` heartbeat (also sent on every state change)."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
    return StatusMessage(
        stream=stream,
        state=state,  # type: ignore[arg-type]
        t_publish=_f(t_publish),
        source=Source(state=source["state"], spec=source.get("spec", UNSET)),
        fps_in=_f(fps_in, 2),
        fps_pose=_f(fps_pose, 2),
        fps_out=_f(fps_out, 3),
        windows=int(windows),
        skipped=int(skipped),
        dropped_frames=int(dropped_frames),
        dropped_messages=int(dropped_messages),
        restarts=int(restarts),
        worker=dict(worker or {}),
        model=dict(model or {}),
        last_window=dict(last_window) if last_window else None,
        latency_ms={k: _f(v, 3) for k, v in (latency_ms or {}).items()},
        message=message,
        restart_gap=UNSET if restart_gap is None else int(restart_gap),
    )


# ------------------------------------------------------------------------------------ schema
def json_schema() -> Dict[str, Any]:
    """The JSON Schema (2020-12) every payload satisfies, generated from the structs above."""
    refs, defs = msgspec.json.schema_components(KINDS, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:clipmg:zmq-schema:1",
        "title": "clipmg ZeroMQ payloads",
        "description": "Payloads published on mg.window.<stream>, mg.event.<stream> and mg.status.<stream>. "
        "Clients must ignore properties they do not know.",
        "oneOf": list(refs),
        "$defs": defs,
    }


def schema_json() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


# ------------------------------------------------------------------------------------ one line each
def summary(top: str, msg: Message) -> str:
    """One human-readable line for a message (what ``clipmg-listen`` prints)."""
    if isinstance(msg, WindowMessage):
        fr = msg.frames
        tk = ", ".join(f"{d.label} {d.p:.2f}" for d in msg.topk[:3]) or "-"
        who = "" if msg.person else "  [no person]"
        return (
            f"{top}  #{msg.window}  frames {fr.first_seq}-{fr.last_seq}  label={msg.label}  top: {tk}  "
            f"latency {msg.latency_ms.capture_to_publish:.0f} ms  skipped {msg.skipped}{who}"
        )
    if isinstance(msg, EventMessage):
        return (
            f"{top}  {msg.event} {msg.label!r}  window {msg.window}  conf {msg.confidence:.2f}  "
            f"duration {msg.duration_s:.2f} s"
        )
    text = f"  {msg.message}" if msg.message else ""
    return (
        f"{top}  {msg.state}  source {msg.source.state}  in {msg.fps_in:.1f} fps  out {msg.fps_out:.2f} win/s  "
        f"windows {msg.windows}  skipped {msg.skipped}  restarts {msg.restarts}{text}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Print the JSON Schema (``python -m clipmg.stream.messages > docs/zmq-schema.json``)."""
    sys.stdout.write(schema_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
