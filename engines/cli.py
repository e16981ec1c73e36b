"""What the engines' command-line tools share: the progress-message callable, one-line errors, and the
checks of their numeric flags."""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Callable, Iterator

from clipmg.model.errors import one_line  # noqa: F401 - one implementation (model/errors.py), importable from here

from .base import EngineError

Log = Callable[[str], None]  # where a long step says what it is doing


def stderr(msg: str) -> None:
    """The default ``Log``: one line on standard error, flushed."""
    print(msg, file=sys.stderr, flush=True)


def check_flag(
    flag: str, value: Any, lo: float, hi: float | None = None, *, above: bool = False, integer: bool = False
) -> None:
    """``EngineError`` naming ``flag`` and its allowed values when ``value`` (not None) lies outside
    ``[lo, hi]`` (``(lo, hi]`` with ``above``), is NaN or infinite, or is not an integer where one is needed."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    ok = ok and (value > lo if above else value >= lo) and (hi is None or value <= hi)
    if not ok:
        what = "an integer" if integer else "a number"
        rng = (
            f"{'above' if above else 'of at least'} {lo:g}"
            if hi is None
            else f"in {'(' if above else '['}{lo:g}, {hi:g}]"
        )
        raise EngineError(f"{flag} {value!r} is not allowed: give {what} {rng}")


@contextlib.contextmanager
def file_errors() -> Iterator[None]:
    """A file the user named (or an output folder) that cannot be read or written is the user's to fix:
    ``OSError`` with a file name becomes one ``EngineError`` sentence naming the file."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise
        raise EngineError(f"{e.filename}: {e.strerror or one_line(e)}") from e
