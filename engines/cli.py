"""What the engines' command-line tools share: the progress-message callable and one-line errors."""

from __future__ import annotations

import sys
from typing import Callable

Log = Callable[[str], None]  # where a long step says what it is doing


def stderr(msg: str) -> None:
    """The default ``Log``: one line on standard error, flushed."""
    print(msg, file=sys.stderr, flush=True)


def one_line(e: BaseException) -> str:
    """An exception as one line (ONNX Runtime and TensorRT messages can span many)."""
    return " ".join(str(e).split())[:600] or type(e).__name__
