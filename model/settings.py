"""Settings declared once: a dataclass field carries its default, help text, allowed values, flag and
argument group, and everything else (the value check, the command-line flags, reading them back) is
derived from that declaration. ``TrainConfig`` and ``StreamConfig`` use it, and so do the options of
the other tools (``clipmg-export``, ``clipmg-build``, ``clipmg-predict``, ``clipmg-listen``). No PyTorch here.

A field declared with :func:`setting` gets a ``--flag`` (its name with dashes, unless it names its own
or ``flag=NO_FLAG``); a field with a plain default has none. ``add_arguments`` makes one argparse
argument per flagged field in one of two ways:

* ``layered=True`` (training: a config file, then flags on top): every flag defaults to ``None`` so
  that only the flags given override the file, booleans get ``--x/--no-x``, the help ends with the
  allowed names and the default, and the value is checked by the field's declaration (one sentence,
  the same for a file and a flag);
* ``layered=False`` (the live recognizer): a flag defaults to the field's default, allowed names become
  argparse ``choices``, a boolean that is off by default is a plain switch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple

from .config import ConfigError

INF = math.inf
NO_FLAG: Tuple[str, ...] = ()  # setting(..., flag=NO_FLAG): a checked field with no command-line flag


class Range(NamedTuple):
    """Allowed numbers: from ``lo`` to ``hi``; ``open`` names the excluded ends ("lo", "hi", "both").
    NaN and infinities are never allowed."""

    lo: float
    hi: float = INF
    open: str = ""

    def __contains__(self, v: object) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        above = v > self.lo if self.open in ("lo", "both") else v >= self.lo
        below = v < self.hi if self.open in ("hi", "both") else v <= self.hi
        return above and below

    def describe(self, integer: bool, terse: bool = False) -> str:
        """``a positive finite number``, ``an integer of at least 1``, ``a finite number in [0, 1)``...;
        ``terse`` (the live commands' wording): ``a number above 0``, ``a number in (0, 3600]``..."""
        kind = "an integer" if integer else "a number" if terse else "a finite number"
        lo_open = self.open in ("lo", "both")
        if self.hi == INF:
            if self.lo == 0 and lo_open and not terse:
                return "a positive integer" if integer else "a positive finite number"
            return f"{kind} {'above' if lo_open else 'of at least'} {_num(self.lo)}"
        left = "(" if lo_open else "["
        right = ")" if self.open in ("hi", "both") else "]"
        return f"{kind} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"


Allowed = Tuple[str, ...] | Range | None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def setting(
    default: Any,
    help: str,
    allowed: Allowed = None,
    *,
    flag: str | Tuple[str, ...] | None = None,
    group: str | None = None,
    also: Tuple[Tuple[Tuple[str, ...], Dict[str, Any]], ...] = (),
    exclusive: bool = False,
    flag_default: Any = dataclasses.MISSING,
    **argparse_options: Any,
) -> Any:
    """A settings field: its default, its one-line help and its allowed values (names, or a :class:`Range`).

    ``flag``: the option string(s) when not ``--`` + the name with dashes; ``NO_FLAG`` for none.
    ``group``: the argument group (its title) the flag is listed under.
    ``also``: further ``(option strings, argparse keywords)`` that feed this field (``--source-env``
    for ``source``), listed right after it; ``exclusive`` puts them and the flag in a mutually
    exclusive group. ``flag_default`` and ``argparse_options`` (``action``, ``type``, ``dest``,
    ``metavar``...) override what the field's default and type would give the flag.
    """
    flags = (flag,) if isinstance(flag, str) else flag
    if flag_default is not dataclasses.MISSING:
        argparse_options["default"] = flag_default
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "allowed": allowed,
            "flags": flags,
            "group": group,
            "also": also,
            "exclusive": exclusive,
            "argparse": argparse_options,
        },
    )


def allowed_of(cls: type, name: str) -> Allowed:
    """The allowed values declared on the field ``name`` of ``cls``: a tool that shares a setting with
    another (``clipmg-predict --top-k`` and ``clipmg-live --top-k``) declares its field with these."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["allowed"]


def _declared(f: dataclasses.Field) -> bool:
    return "help" in f.metadata


def flags_of(f: dataclasses.Field) -> Tuple[str, ...]:
    """The field's option strings (none for a plain field or ``flag=NO_FLAG``)."""
    if not _declared(f):
        return ()
    flags = f.metadata["flags"]
    return ("--" + f.name.replace("_", "-"),) if flags is None else flags


def flag_of(f: dataclasses.Field) -> str:
    """The name a message about the field uses: its long flag, or the field name when it has no flag."""
    return next((s for s in flags_of(f) if s.startswith("--")), f.name)


def dest_of(f: dataclasses.Field) -> str:
    """Where argparse keeps the flag's value (as argparse itself would name it, unless declared)."""
    return f.metadata["argparse"].get("dest") or flag_of(f).lstrip("-").replace("-", "_")


def base_type(f: dataclasses.Field) -> str:
    """``int``, ``float``, ``str``, ``bool``... of a field, ``Optional[...]`` / ``... | None`` unwrapped."""
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if t.startswith("Optional[") and t.endswith("]"):
        t = t[len("Optional[") : -1]
    return t.removesuffix(" | None")


def optional(f: dataclasses.Field) -> bool:
    t = f.type if isinstance(f.type, str) else str(f.type)
    return t.startswith("Optional[") or t.endswith("| None")


# ---------------------------------------------------------------------------------- checking values
def refusal(name: str, value: Any, allowed: str, terse: bool) -> ConfigError:
    """One sentence: ``--x must be <allowed>, got <value>`` or, ``terse``, ``--x <value> is not allowed:
    give <allowed>`` (the live and engine commands' wording)."""
    if terse:
        return ConfigError(f"{name} {value!r} is not allowed: give {allowed}")
    return ConfigError(f"{name} must be {allowed}, got {value!r}")


def check_number(name: str, value: Any, allowed: Range, integer: bool = False, terse: bool = True) -> None:
    """``ConfigError`` naming ``name`` and ``allowed`` when ``value`` is not a finite number in it (or
    not a whole number where ``integer``)."""
    if value not in allowed or (integer and not float(value).is_integer()):
        raise refusal(name, value, allowed.describe(integer, terse), terse)


def check_value(f: dataclasses.Field, v: Any, terse: bool = False) -> None:
    """Refuse, with one sentence, a value outside the field's allowed values. ``None`` is allowed for an
    ``Optional`` field. Not ``terse`` (settings read from files too): a value of the wrong type is
    refused first, and integers must be ``int``; ``terse`` (live settings, built in code or from flags
    argparse has typed): only numbers and names are checked, and an integral float is an integer."""
    typ, allowed, name = base_type(f), f.metadata.get("allowed"), flag_of(f)
    if v is None and optional(f):
        return
    if not terse:
        if typ == "bool" and not isinstance(v, bool):
            raise ConfigError(f"{name} must be true or false, got {v!r}")
        if typ == "int" and (not isinstance(v, int) or isinstance(v, bool)):
            raise ConfigError(f"{name} must be an integer, got {v!r}")
        if typ == "float" and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise ConfigError(f"{name} must be a number, got {v!r}")
        if typ == "str" and not isinstance(v, str):
            raise ConfigError(f"{name} must be a string, got {v!r}")
    if isinstance(allowed, Range):
        check_number(name, v, allowed, integer=typ == "int", terse=terse)
    elif isinstance(allowed, tuple) and v not in allowed:
        names = f"{', '.join(allowed[:-1])} or {allowed[-1]}" if terse and len(allowed) > 1 else ", ".join(allowed)
        raise refusal(name, v, names if terse else f"one of {names}", terse)


def check_fields(obj: Any, terse: bool = False) -> None:
    """:func:`check_value` on every declared field of the dataclass instance ``obj``."""
    for f in dataclasses.fields(obj):
        if _declared(f):
            check_value(f, getattr(obj, f.name), terse)


# ---------------------------------------------------------------------------------- the command line
def _layered_help(f: dataclasses.Field) -> str:
    allowed = f.metadata.get("allowed")
    text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
    if isinstance(allowed, tuple) and not isinstance(allowed, Range):
        text += f": {' | '.join(allowed)}"
    default = str(f.default).lower() if isinstance(f.default, bool) else repr(f.default)
    return f"{text} (default: {default})"


def argument(f: dataclasses.Field, layered: bool) -> Dict[str, Any]:
    """The ``add_argument`` keywords of a flagged field (see the module docstring for ``layered``)."""
    typ, allowed = base_type(f), f.metadata.get("allowed")
    kw: Dict[str, Any] = {"dest": dest_of(f), "help": f.metadata["help"]}
    if typ == "bool":
        kw["action"] = argparse.BooleanOptionalAction if layered or f.default is True else "store_true"
    else:
        kw["type"] = {"int": int, "float": float, "str": str if layered else None}.get(typ)
    if layered:
        kw.update(default=None, help=_layered_help(f))
        if kw.get("type") is str:
            kw["metavar"] = f.name.upper()
    else:
        kw["default"] = f.default
        if isinstance(allowed, tuple) and not isinstance(allowed, Range):
            kw["choices"] = allowed
    kw.update(f.metadata["argparse"])
    if kw.get("action") == "append" and kw["default"] is not None:  # argparse appends to a copy of a list
        kw["default"] = list(kw["default"])  # default, never to a tuple (None: nothing given, a list then)
    return {k: v for k, v in kw.items() if v is not None or k == "default"}


def add_arguments(ap: argparse.ArgumentParser, cls: type, layered: bool = False) -> None:
    """One argument per flagged field of the dataclass ``cls``, in declaration order, under its group
    (groups in the order they first appear; none: the parser's own options)."""
    groups: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not flags_of(f):
            continue
        title = f.metadata["group"]
        if title is not None and title not in groups:
            groups[title] = ap.add_argument_group(title)
        where: Any = ap if title is None else groups[title]
        if f.metadata["exclusive"]:
            where = where.add_mutually_exclusive_group()
        where.add_argument(*flags_of(f), **argument(f, layered))
        for option_strings, kw in f.metadata["also"]:
            where.add_argument(*option_strings, **kw)


def flagged(cls: type) -> Iterator[dataclasses.Field]:
    return (f for f in dataclasses.fields(cls) if flags_of(f))


def values_from_args(cls: type, args: argparse.Namespace, given_only: bool = False) -> Dict[str, Any]:
    """``{field: value}`` of every flagged field of ``cls`` found in ``args``; ``given_only``: only the
    flags given (not ``None``), for settings layered over a file."""
    out: Dict[str, Any] = {}
    for f in flagged(cls):
        v = getattr(args, dest_of(f), None)
        if hasattr(args, dest_of(f)) and not (given_only and v is None):
            out[f.name] = v
    return out


def check_output_files(*flags: Tuple[str, Optional[Path]]) -> None:
    """Refuse an output file (``--json PATH``, ``--markdown PATH``) whose folder does not exist, in one
    sentence, before any work is done."""
    for flag, path in flags:
        if path is not None and not Path(path).expanduser().resolve().parent.is_dir():
            raise ConfigError(
                f"{flag} {path}: the folder {Path(path).parent} does not exist; create it or choose another file"
            )
