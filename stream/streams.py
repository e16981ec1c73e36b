"""Several streams in one ``clipmg-live``: ``--source`` given more than once, or a ``--streams`` file.

Every stream gets a ``StreamConfig`` of its own: the command line's settings, with the stream's id,
source and the few settings a stream may set for itself (its pose backend, Δp, stride, ...). The
engine, the publishing endpoint, the web view and the run control are the command line's, shared by
all. A streams file is TOML (docs/streams.md)::

    [[stream]]
    id = "lobby"
    source_env = "LOBBY_URL"          # or source = "rtsp://...", source_file = "lobby.url"
    pose = "mediapipe"
    pose_every = 2
    source_options = { read_timeout_s = 2 }

    [[stream]]
    id = "desk"
    source = "0"
    stride = 16
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI (pyproject.toml)
    import tomli as tomllib

from clipmg.model.config import ConfigError

from .config import StreamConfig, normalize_source_options, resolve_sources, secret_from

MAX_STREAMS = 64  # streams one worker serves, at most
DEFAULT_STREAM_ID = "cam0"
# the keys a [[stream]] table may have: the StreamConfig field each sets and the type its value must have
STREAM_KEYS: Dict[str, Tuple[str, type]] = {
    "id": ("stream_id", str),
    "source": ("source", str),
    "source_env": ("source", str),
    "source_file": ("source", str),
    "source_options": ("source_options", dict),
    "pose": ("pose", str),
    "pose_options": ("pose_options", dict),
    "pose_every": ("pose_every", int),
    "stride": ("stride", int),
    "pose_workers": ("pose_workers", int),
    "record": ("record", str),
    "max_windows": ("max_windows", int),
    "threshold": ("threshold", float),
}


def stream_configs(base: StreamConfig, args: argparse.Namespace) -> List[StreamConfig]:
    """One validated ``StreamConfig`` per stream: ``[base]`` for one source; ``ConfigError`` (one
    sentence naming the stream) for anything that cannot run."""
    if base.streams_file:
        if args.source or args.source_env or args.source_file:
            raise ConfigError(f"give the streams either with --source or in --streams {base.streams_file}, not both")
        tables = load_streams_file(base.streams_file)
        return _finish(base, [_from_table(base, t, i, base.streams_file) for i, t in enumerate(tables)])
    sources = resolve_sources(args)
    if len(sources) == 1:
        return [base]
    if base.stream_id != DEFAULT_STREAM_ID:
        raise ConfigError(
            f"--stream-id {base.stream_id} names one stream, and {len(sources)} sources were given: they are named "
            f"cam0 ... cam{len(sources) - 1}; name them yourself in a --streams file"
        )
    cfgs = [
        base.replace(
            stream_id=f"cam{i}",
            source=src,
            source_options=normalize_source_options(src, list(args.source_option or [])),
        )
        for i, src in enumerate(sources)
    ]
    return _finish(base, cfgs)


def many_stream_threads() -> int:
    """The engine's CPU threads when one worker serves several streams (``--threads`` unset): every core
    (at most 8). One engine does the work N one-camera processes would do on all the cores between them;
    its calls of different kinds (a stream's frame encoding, another's window head) run side by side
    (docs/streams.md)."""
    return max(1, min(8, os.cpu_count() or 2))


def load_streams_file(path: str) -> List[Dict[str, Any]]:
    """The ``[[stream]]`` tables of a streams file; ``ConfigError`` for a file that cannot be one."""
    p = Path(path).expanduser()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--streams {path}: cannot read it ({e.strerror or e.__class__.__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--streams {path}: not a text file (a TOML file of [[stream]] tables)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--streams {path}: not valid TOML ({e})") from None
    extra = sorted(set(data) - {"stream"})
    if extra:
        raise ConfigError(
            f"--streams {path}: unknown top-level key {extra[0]!r}; the file holds [[stream]] tables only"
        )
    tables = data.get("stream")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"--streams {path}: no streams; give one [[stream]] table (id, source, ...) per stream")
    return tables


def _from_table(base: StreamConfig, table: Dict[str, Any], index: int, path: str) -> StreamConfig:
    name = str(table.get("id", f"#{index + 1}"))
    where = f"--streams {path}, stream {name}"
    unknown = sorted(set(table) - set(STREAM_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a stream may set {', '.join(STREAM_KEYS)}")
    if "id" not in table:
        raise ConfigError(f"{where}: give it an id (letters, digits, '_' or '-'), e.g. id = \"lobby\"")
    for key, value in table.items():
        want = STREAM_KEYS[key][1]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            kind = {str: "a string", int: "an integer", float: "a number", dict: "a table such as { key = 1 }"}[want]
            raise ConfigError(f"{where}: {key} = {value!r} must be {kind}")
    given = [k for k in ("source", "source_env", "source_file") if k in table]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of source, source_env or source_file")
    try:
        source = table.get("source") or secret_from(
            "source_env", table.get("source_env"), "source_file", table.get("source_file"), "source"
        )
        changes: Dict[str, Any] = {"stream_id": table["id"], "source": source}
        for key, value in table.items():
            field = STREAM_KEYS[key][0]
            if field in ("stream_id", "source"):
                continue
            if key == "source_options":
                value = normalize_source_options(str(source), list(value.items()))
            elif key == "pose_options":
                value = tuple(value.items())
            changes[field] = value
        if "source_options" not in table:
            changes["source_options"] = normalize_source_options(str(source), [])
        return base.replace(**changes)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _finish(base: StreamConfig, cfgs: Sequence[StreamConfig]) -> List[StreamConfig]:
    """Check the streams together, give each its own recording, validate each."""
    if len(cfgs) > MAX_STREAMS:
        raise ConfigError(f"{len(cfgs)} streams: one worker serves at most {MAX_STREAMS}; run several clipmg-live")
    ids = [c.stream_id for c in cfgs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"stream id {twice[0]!r} is given twice: every stream needs its own id")
    if base.display and len(cfgs) > 1:
        raise ConfigError("--display shows one stream; with several streams watch them with --web [HOST:]PORT")
    out = []
    for c in cfgs:
        if len(cfgs) > 1 and base.threads is None:  # the one engine of the machine: it gets every core
            c = c.replace(threads=many_stream_threads())
        if base.record and c.record == base.record and len(cfgs) > 1:  # one video per stream
            p = Path(base.record)
            c = c.replace(record=str(p.with_name(f"{p.stem}.{c.stream_id}{p.suffix}")))
        try:
            out.append(c.validate())
        except ConfigError as e:
            raise ConfigError(f"stream {c.stream_id}: {e}") from None
    records = [c.record for c in out if c.record]
    if len(set(records)) != len(records):
        raise ConfigError('two streams record to the same file: give each stream its own record = "..."')
    return out
