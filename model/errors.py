"""One error convention for every ``clipmg-*`` command and ``run_live.py``.

- :class:`ClipmgError` is the root of every error the user can fix (a bad flag value, a missing or
  corrupt file, data that cannot work). A command reports it as one sentence and exits with
  status 2 (:data:`EXIT_USER`).
- Anything else is a bug in clipmg: the command prints one short line naming a log file, writes
  the traceback there, and exits with status 1 (:data:`EXIT_BUG`).
- Ctrl-C exits 130, quietly.

:func:`run_command` applies this around a command's body, so each ``main`` is written once:
``return run_command("clipmg-export", lambda: _main(argv))``; it also sets up the command's logging
(``model/logs.py``), the one setup every command uses.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, TextIO

from .logs import SPEAKING, LogStyle, command_logging

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130


class ClipmgError(Exception):
    """An error the user can fix; its text is one sentence that says what is wrong and what to do."""


def one_line(e: BaseException, limit: int = 600) -> str:
    """An exception as one line (ONNX Runtime, TensorRT and torch messages can span many)."""
    return " ".join(str(e).split())[:limit] or type(e).__name__


def log_dir() -> Path:
    """Where tracebacks of internal errors go: ``$CLIPMG_LOG_DIR``, else ``~/.cache/clipmg/logs``
    (a temporary folder when the home folder cannot be written)."""
    env = os.environ.get("CLIPMG_LOG_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "clipmg" / "logs"


def write_traceback(prog: str, exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback to a new file in :func:`log_dir` and return its path (None when no
    folder can be written: the caller then prints the traceback instead)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "clipmg-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{prog}-{stamp}-{os.getpid()}.log"
            path.write_text(f"{prog} {' '.join(sys.argv[1:])}\n{text}", encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def report_bug(prog: str, exc: BaseException, out: TextIO | None = None) -> int:
    """Say in one line that ``exc`` is an internal error and where its traceback is; return 1."""
    out = out or sys.stderr  # looked up now: a command may have replaced sys.stderr (stream/quiet.py)
    path = write_traceback(prog, exc)
    where = f"; the traceback is in {path}" if path else ""
    print(
        f"{prog}: internal error ({type(exc).__name__}: {one_line(exc, 300)}){where}; please report it",
        file=out,
        flush=True,
    )
    if path is None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=out)
    return EXIT_BUG


def run_command(
    prog: str, body: Callable[[], int | None], out: TextIO | None = None, style: LogStyle = SPEAKING
) -> int:
    """Run a command's ``body`` under the convention above and return its exit status. ``out``
    (default: ``sys.stderr`` as it is when the error is reported, since a command may replace it
    while it runs, stream/quiet.py) receives the one line, and while ``body`` runs the log records
    (``model/logs.py``: ``[prog] message`` for what the command says, ``style`` for the rest)."""
    try:
        with command_logging(prog, out, style):
            code = body()
    except ClipmgError as e:
        print(f"{prog}: {one_line(e)}", file=out or sys.stderr, flush=True)
        return EXIT_USER
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=out or sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SystemExit as e:  # argparse's own exit (2 for a bad flag, 0 for --help)
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USER)
    except Exception as e:  # anything else is a bug: one line, traceback in a log file
        return report_bug(prog, e, out)
    return EXIT_OK if code is None else int(code)
