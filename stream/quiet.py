"""Quiet by default: the pose libraries' native start-up chatter off the terminal, Python's own output kept.

MediaPipe, TensorFlow Lite and absl write from C++ straight to file descriptor 2 ("INFO: Created
TensorFlow Lite XNNPACK delegate", "All log messages before absl::InitializeLog()", one
``inference_feedback_manager`` warning per graph, ...): most of a live run's stderr, none of it
actionable. No environment variable silences all of them in mediapipe 0.10.21, so
:func:`native_stderr_off` points descriptor 2 at ``/dev/null`` and gives Python's ``sys.stderr``
(and so ``logging`` and tracebacks) a duplicate of the original descriptor: clipmg's own warnings
and errors still reach the terminal, the libraries' do not. ``-v`` / ``--verbose`` leaves
descriptor 2 alone.
"""

from __future__ import annotations

import io
import os
import sys


def native_stderr_off() -> bool:
    """Silence native writes to descriptor 2 in this process, keeping ``sys.stderr`` on the terminal.

    Call it before logging is configured (a handler keeps the stream it was given). Returns False
    (and changes nothing) when descriptor 2 cannot be duplicated, e.g. when it is closed.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return False
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = io.TextIOWrapper(
        os.fdopen(saved, "wb", buffering=0),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )
    return True
