"""The recognizer processes a benchmark starts: free ports, ``run_live.py``'s path, and a group of
processes that is always stopped (SIGINT, then SIGKILL), even on Ctrl-C or an exception.

No PyTorch here: ``bench/e2e.py``, ``bench/web.py`` and ``bench/streams.py`` share it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, List, Optional, Sequence

RUN_LIVE = Path(__file__).resolve().parents[1] / "run_live.py"


def free_ports(n: int) -> List[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago (all sockets are
    held until the last is bound, so the kernel cannot hand the same port out twice)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def free_port() -> int:
    return free_ports(1)[0]


class Processes:
    """Commands started in sessions of their own (so their children go with them and a Ctrl-C in the
    terminal reaches only this process), each with its output in a log file; leaving the ``with``
    block, by any way, stops every one that still runs: SIGINT (the recognizer stops cleanly), then,
    after ``grace_s``, SIGKILL to its whole process group. Only processes started here are signalled."""

    def __init__(self, grace_s: float = 20.0) -> None:
        self.grace_s = grace_s
        self.procs: List[subprocess.Popen] = []
        self.logs: List[Path] = []
        self._files: List[IO[bytes]] = []

    def start(self, argv: Sequence[str], log: Path, env: Optional[dict] = None) -> subprocess.Popen:
        f = open(log, "wb")
        self._files.append(f)
        p = subprocess.Popen(
            list(argv), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        self.procs.append(p)
        self.logs.append(log)
        return p

    def exited(self) -> List[int]:
        """Indices of the processes that have ended."""
        return [i for i, p in enumerate(self.procs) if p.poll() is not None]

    def tail(self, i: int, lines: int = 3) -> str:
        """The last lines of process ``i``'s output, on one line."""
        try:
            text = self.logs[i].read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """SIGINT to each running process, SIGKILL to the group of any still running after ``grace_s``."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + self.grace_s
        for p in self.procs:
            try:
                p.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            if p.poll() is not None:
                continue  # ended (its children get SIGTERM from the kernel when it dies: PR_SET_PDEATHSIG)
            try:  # not reaped yet, so the group is still its own: its capture and worker processes too
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for f in self._files:
            f.close()

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
