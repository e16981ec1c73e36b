"""One logging setup for every ``clipmg-*`` command, its worker process and ``run_live.py``. No PyTorch.

Code that has something to say logs it on its module logger (``logging.getLogger(__name__)``); no
function takes a ``say``/``log`` callable any more. How it shows is the command's choice, made once
here (:func:`run_command` in ``model/errors.py`` applies it around every command's body):

- an INFO record of one of clipmg's own loggers is *the command speaking* (``exporting the frame
  encoder ...``, ``DEMO: ...``, the live summary lines): one line ``[clipmg-live] <message>``, the
  program's name in brackets (``speak=False``: the diagnostic format instead, for the training
  commands whose progress lines carry a time stamp);
- every other record (warnings, errors, DEBUG with ``-v``, other libraries' records) is a
  diagnostic, in ``fmt`` (default :data:`DIAGNOSTIC`, with time, logger and level).

clipmg's loggers pass ``level`` (INFO; DEBUG for ``-v``, see :func:`set_verbose`), other libraries'
``libraries`` (WARNING). The handler writes to ``stream``, or to ``sys.stderr`` as it is when a record
is written (``stream/quiet.py`` replaces it while a pose library starts).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from typing import Iterator, TextIO

OWN = "clipmg"  # the parent of every clipmg logger (its modules' __name__s)
# ... and a command module run as ``python -m clipmg.engines.export``, whose logger is then ``__main__``
OWN_LOGGERS = (OWN, "__main__")
DIAGNOSTIC = "%(asctime)s %(name)s %(levelname)s %(message)s"  # the live side and the engine tools
TIMED = "%(asctime)s %(name)s: %(message)s"  # training's progress lines (tests/test_bad_input.py's NOISE)
NAMED = "%(name)s: %(message)s"
PLAIN = "%(message)s"
WORKER = "%(asctime)s %(processName)s %(levelname)s %(message)s"  # the live worker process
_HANDLER = "clipmg-command"  # the name of the one handler this module installs on the root logger


class _Stderr:
    """``sys.stderr`` as it is at each write, not as it was when the handler was made."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def own(name: str) -> bool:
    """Whether the logger ``name`` is one of clipmg's."""
    return any(name == o or name.startswith(o + ".") for o in OWN_LOGGERS)


class CommandFormatter(logging.Formatter):
    """``[prog] message`` for what the command says (an INFO record of clipmg's loggers), ``fmt`` else."""

    def __init__(self, prog: str, fmt: str, speak: bool) -> None:
        super().__init__(fmt)
        self.prog, self.speak = prog, speak

    def format(self, record: logging.LogRecord) -> str:
        if self.speak and record.levelno == logging.INFO and own(record.name):
            return f"[{self.prog}] {record.getMessage()}"
        return super().format(record)


@dataclass(frozen=True)
class LogStyle:
    """How a command's records show (see the module docstring)."""

    fmt: str = DIAGNOSTIC  # the diagnostic format
    speak: bool = True  # an INFO record of clipmg's loggers is one ``[prog] message`` line
    level: int = logging.INFO  # clipmg's loggers pass this level and above
    libraries: int = logging.WARNING  # other libraries' loggers (the root logger) pass this and above


SPEAKING = LogStyle()  # the live side and the engine tools
TRAINING = LogStyle(TIMED, speak=False, libraries=logging.INFO)  # time-stamped progress lines
WORKER_STYLE = LogStyle(WORKER, speak=False, level=logging.WARNING)  # the live worker process: warnings up


def setup_logging(prog: str, stream: TextIO | None = None, style: LogStyle = SPEAKING) -> logging.Handler:
    """Make the root logger's one command handler (replacing an earlier one) and set the levels; see
    the module docstring. Returns the handler."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or _Stderr())  # type: ignore[arg-type]  # a write/flush object
    handler.set_name(_HANDLER)
    handler.setFormatter(CommandFormatter(prog, style.fmt, style.speak))
    root.addHandler(handler)
    root.setLevel(style.libraries)
    set_level(style.level)
    return handler


def set_verbose(verbose: bool) -> None:
    """``-v/--verbose``: clipmg's DEBUG records too (else its INFO and above)."""
    set_level(logging.DEBUG if verbose else logging.INFO)


def set_level(level: int) -> None:
    """clipmg's loggers pass ``level`` and above (``--quiet``: ``logging.ERROR``)."""
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def command_logging(prog: str, stream: TextIO | None = None, style: LogStyle = SPEAKING) -> Iterator[None]:
    """:func:`setup_logging` for the length of a command, then the logging state as it was before (a
    command run in-process, by a test, leaves no handler behind)."""
    root, loggers = logging.getLogger(), [logging.getLogger(n) for n in OWN_LOGGERS]
    handlers, level, levels = list(root.handlers), root.level, [lg.level for lg in loggers]
    setup_logging(prog, stream, style)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
