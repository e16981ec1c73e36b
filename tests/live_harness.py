"""Helpers for the reliability tests: a real ZeroMQ subscriber, the supervisor as a subprocess,
process/shared-memory bookkeeping, a tap that records every overlay string the worker draws, waits,
and the malicious pickle every safe-loading test feeds its loader (``EvilPickle``).

Nothing here replaces a component: the subscriber is a real SUB socket, the supervisor is
``run_live.py`` in its own process group, the tap forwards every ``cv2.putText`` call unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
RUN_LIVE = REPO / "run_live.py"
CLASSES = ["touch chin", "touch forehead", "rub eyes", "fold arm", "no gesture"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def index_image(i: int, w: int = 160, h: int = 120) -> Any:
    """Frame ``i`` shows ``i`` in binary as 8 black/white bars (survives JPEG coding): a test can
    read back which frame it got."""
    import numpy as np

    img = np.zeros((h, w, 3), np.uint8)
    bar = w // 8
    for b in range(8):
        if (i >> b) & 1:
            img[:, b * bar : (b + 1) * bar] = 255
    return img


def endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def tiny_checkpoint(path: Path, classes: Sequence[str] = CLASSES, seed: int = 0, preset: str = "clipmg-tiny") -> Path:
    import torch

    from clipmg.model import create_model
    from clipmg.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(path, create_model(preset, num_classes=len(classes)), list(classes))


def segments_of(pid: int) -> List[str]:
    """The ``clipmg_*`` shared-memory segments process ``pid`` has mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return sorted({line.split("/dev/shm/")[1].strip() for line in maps.splitlines() if "/dev/shm/clipmg_" in line})


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``pred`` every ``every`` s until it returns something true (returned); fail the test
    (``AssertionError`` naming ``what``) after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class EvilPickle:
    """What a malicious pickle does: call a function while it is being loaded (``touch marker``).
    Put it inside whatever gets pickled (``pickle.dumps``, ``torch.save``, ``np.save``): a safe loader
    refuses it and ``marker`` never appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Tuple[Any, Tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------ subscriber
class Subscriber:
    """A SUB socket read by a thread; every message kept as ``(topic, msg, t_received)``."""

    def __init__(
        self,
        ep: str,
        topics: Iterable[str] = ("mg",),
        server_key: Optional[bytes] = None,
        client_keys: Optional[Tuple[bytes, bytes]] = None,
    ) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100000)
        if server_key is not None:
            self.sock.curve_serverkey = server_key
            self.sock.curve_publickey, self.sock.curve_secretkey = client_keys or zmq.curve_keypair()
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.sock.connect(ep)
        self.messages: List[Tuple[str, Dict[str, Any], float]] = []
        self.raw: List[bytes] = []
        self.bad: List[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import zmq

        from clipmg.stream.messages import MessageError, decode, to_dict

        while not self._stop.is_set():
            try:
                if not self.sock.poll(50):
                    continue
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                return
            now = time.time()
            try:
                msg = to_dict(decode(parts[1]))  # validated, then as the plain map the tests index
            except (MessageError, IndexError) as e:
                with self._lock:
                    self.bad.append(repr(e))
                continue
            with self._lock:
                self.raw.append(b"".join(parts))
                self.messages.append((parts[0].decode(), msg, now))

    def snapshot(self) -> List[Tuple[str, Dict[str, Any], float]]:
        with self._lock:
            return list(self.messages)

    def of(self, kind: str) -> List[Dict[str, Any]]:
        return [m for t, m, _ in self.snapshot() if t.startswith(f"mg.{kind}")]

    def windows(self) -> List[Dict[str, Any]]:
        return self.of("window")

    def statuses(self) -> List[Dict[str, Any]]:
        return self.of("status")

    def wait(self, pred: Callable[[List[Tuple[str, Dict[str, Any], float]]], Any], timeout: float, what: str) -> Any:
        try:
            return wait_for(lambda: pred(self.snapshot()), timeout, what)
        except AssertionError as e:
            tail = [
                (t, m.get("state"), (m.get("source") or {}).get("state"))
                if t.startswith("mg.status")
                else (t, m.get("window"))
                for t, m, _ in self.snapshot()[-8:]
            ]
            raise AssertionError(f"{e}; last messages: {tail}") from None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.ctx.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def window_gaps_are_reported(wins: List[Dict[str, Any]]) -> List[str]:
    """Problems in a sequence of window messages of one worker run: numbers that do not increase,
    or a gap in the numbering that the ``skipped`` counter does not account for."""
    bad = []
    for a, b in zip(wins, wins[1:]):
        if b["window"] <= a["window"]:
            bad.append(f"window {b['window']} after {a['window']}")
        elif b["skipped"] >= a["skipped"] and b["window"] - a["window"] - 1 != b["skipped"] - a["skipped"]:
            bad.append(f"windows {a['window']}->{b['window']} but skipped {a['skipped']}->{b['skipped']}")
    return bad


# ------------------------------------------------------------------------------------ supervisor
class Command:
    """``argv`` in a subprocess (its own session, so a test can signal it alone); stdout and stderr
    are collected by threads."""

    def __init__(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> None:
        self.args = list(argv)
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        self.out: List[str] = []
        self.err: List[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(s, d), daemon=True)
            for s, d in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, dest: List[str]) -> None:
        for line in stream:
            dest.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> List[Any]:
        import psutil

        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.kill_all()
        for t in self._threads:
            t.join(5)
        return self.proc.returncode

    def stop(self, timeout: float = 60.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill_all(self) -> None:
        """Last resort after a failed test: SIGKILL the process group (its own session)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def __enter__(self) -> "Command":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill_all()
        for t in self._threads:
            t.join(5)


class Live(Command):
    """``run_live.py ARGS`` in a subprocess (its own session); a killed run's ring is unlinked here."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> None:
        super().__init__([PY, str(RUN_LIVE), *args], env, cwd)

    def kill_all(self) -> None:
        """Last resort after a failed test: SIGKILL the supervisor's process group (its own session)."""
        mine = segments_of(self.pid)
        super().kill_all()
        # the group's resource tracker died too, so nobody else will unlink this run's ring: do it here
        from clipmg.stream.ringbuffer import cleanup_segments

        cleanup_segments(mine)

    def __enter__(self) -> "Live":
        return self


def worker_pid(sub: Subscriber) -> int:
    """The worker pid announced by the newest status message that names one."""
    for m in reversed(sub.statuses()):
        pid = (m.get("worker") or {}).get("pid")
        if pid:
            return int(pid)
    return 0


# ------------------------------------------------------------------------------------ overlay tap
_TAP = """
import os
_log = os.environ.get("CLIPMG_TEST_PUTTEXT_LOG")
if _log:
    import cv2 as _cv2
    _orig = _cv2.putText

    def _tap(img, text, *a, **k):
        with open(_log, "a", encoding="utf-8") as f:
            f.write(str(text) + "\\n")
        return _orig(img, text, *a, **k)

    _cv2.putText = _tap
"""


def puttext_tap(folder: Path) -> Tuple[Dict[str, str], Path]:
    """Environment that makes every process of a run append each ``cv2.putText`` string to a file
    (a ``sitecustomize`` module on ``PYTHONPATH``; the call itself is forwarded unchanged)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_TAP)
    log = folder / "puttext.log"
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "CLIPMG_TEST_PUTTEXT_LOG": str(log)}, log


def dumps(messages: Iterable[Tuple[str, Dict[str, Any], float]]) -> str:
    return "\n".join(f"{t} {json.dumps(m)}" for t, m, _ in messages)
