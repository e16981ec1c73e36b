"""The live recognizer end to end: real processes, shared memory, ZeroMQ sockets on loopback.

The worker runs the tiny preset on the CPU; frames come from this test (written into a real
FrameRing) or from the synthetic camera (through the supervisor). Subscribers are separate
processes running the shipped ``clipmg-listen``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import jsonschema
import numpy as np
import pytest
from live_harness import free_port, segments_of

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CLASSES = ["touch chin", "touch forehead", "rub eyes", "fold arm", "no gesture"]
SCHEMA = json.loads((REPO / "docs" / "zmq-schema.json").read_text())
H, W = 72, 96


def frame_of(seq: int) -> Tuple[np.ndarray, np.ndarray]:
    """The deterministic test frame ``seq``: image ``(H, W, 3)`` and keypoints ``(137, 3)``."""
    rng = np.random.default_rng(seq)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    kp = np.zeros((137, 3), np.float32)
    kp[:, 0] = rng.uniform(10, W - 10, 137)
    kp[:, 1] = rng.uniform(5, H - 5, 137)
    kp[:, 2] = rng.uniform(0.3, 1.0, 137)
    return img, kp


class Listener:
    """``clipmg-listen --raw`` in a subprocess; parsed messages collected by a thread."""

    def __init__(self, endpoint: str, topics: Tuple[str, ...] = ("mg",), extra: Tuple[str, ...] = ()) -> None:
        args = [PY, "-m", "clipmg.stream.listen", "--endpoint", endpoint, "--raw", *extra]
        for t in topics:
            args += ["--topic", t]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.messages: List[Tuple[str, Dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            top, _, payload = line.rstrip("\n").partition(" ")
            with self._lock:
                self.messages.append((top, json.loads(payload)))

    def windows(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [m for t, m in self.messages if t.startswith("mg.window")]

    def wait(self, pred: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if pred(list(self.messages)):
                    return
            time.sleep(0.05)
        with self._lock:
            kinds = [t for t, _ in self.messages][-10:]
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last topics: {kinds}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def listener_factory() -> Iterator[Any]:
    made: List[Listener] = []

    def make(*a: Any, **k: Any) -> Listener:
        made.append(Listener(*a, **k))
        return made[-1]

    yield make
    for lst in made:
        lst.close()


class SlowEngine:
    """The real engine whose head sleeps ``delay`` seconds: a worker that cannot keep up."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.config, self.class_names, self.identity = inner.config, inner.class_names, inner.identity

    def encode_frames(self, images: np.ndarray) -> Any:
        return self.inner.encode_frames(images)

    def head(self, *a: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner.head(*a)


def slow_engine(cfg: Any, delay: float) -> SlowEngine:
    from clipmg.stream.worker import load_worker_engine

    return SlowEngine(load_worker_engine(cfg), delay)


def run_worker(
    cfg: Any, frames: int, fps: float, listener: Listener, until: Any, engine_factory: Any = None, timeout: float = 90.0
) -> None:
    """Start ``worker_main`` in a spawned process on a ring this test writes ``frames`` frames into."""
    from clipmg.stream.ringbuffer import FrameRing
    from clipmg.stream.worker import StreamJob, worker_main

    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    with FrameRing.create(64, H, W) as ring:
        proc = ctx.Process(
            target=worker_main, args=(StreamJob(cfg, ring.name), q, stop), kwargs=dict(engine_factory=engine_factory)
        )
        proc.start()
        try:
            ready = False
            t_end = time.monotonic() + timeout
            while not ready and time.monotonic() < t_end:  # write only once the worker is listening
                ev = q.get(timeout=timeout)
                assert not (ev["event"] == "worker_state" and ev["state"] == "failed"), ev
                ready = ev["event"] == "worker_state" and ev["state"] == "ready"
            t0 = time.monotonic()
            for seq in range(frames):
                img, kp = frame_of(seq)
                ring.write(img, seq, time.monotonic(), time.time(), kp)
                with listener._lock:
                    if until(list(listener.messages)):
                        break
                time.sleep(max(0.0, t0 + (seq + 1) / fps - time.monotonic()))
        finally:
            stop.set()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        assert proc.exitcode == 0


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.parametrize(
    "pose_thread,pose_workers",
    [(True, 1), (False, 1), (True, 2)],
    ids=["pose-thread", "one-thread", "two-pose-workers"],
)
def test_windows_reach_a_subscriber_in_order_and_equal_offline_logits(
    checkpoint: Path, listener_factory: Any, pose_thread: bool, pose_workers: int
) -> None:
    """Streaming == offline: the published logits equal the model's on the same 32 pose + 8 RGB samples,
    with pose in its own thread (the default), with pose and engine taking turns in one, and with two
    pose threads (``--pose-workers 2``) estimating samples side by side."""
    from clipmg.engines import load_engine
    from clipmg.model.layouts import extract_layout
    from clipmg.stream.config import StreamConfig
    from clipmg.stream.window import offline_logits

    ep = f"tcp://127.0.0.1:{free_port()}"
    stride, every = 8, 2
    cfg = StreamConfig(
        engine=str(checkpoint),
        endpoint=ep,
        stride=stride,
        pose_every=every,
        include_logits=True,
        threads=1,
        event_min_duration_s=0.0,
        pose_thread=pose_thread,
        pose_workers=pose_workers,
    )
    lst = listener_factory(ep)
    n_windows = 4
    run_worker(
        cfg, frames=400, fps=50.0, listener=lst, until=lambda m: len([1 for t, _ in m if "window" in t]) >= n_windows
    )
    wins = lst.windows()
    assert len(wins) >= n_windows
    engine = load_engine(checkpoint, warmup=False)
    numbers = [m["window"] for m in wins]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for m in wins:
        jsonschema.validate(m, SCHEMA)
        w, fr = m["window"], m["frames"]
        pose = (w * stride + np.arange(32)) * every  # the frame clock: pose every Δp frames, window every S samples
        assert fr["pose_seqs"] == pose.tolist() and fr["rgb_seqs"] == pose[2::4].tolist()
        assert (fr["first_seq"], fr["last_seq"], fr["stride"], fr["pose_every"]) == (pose[0], pose[-1], stride, every)
        assert m["model"]["backend"] == "torch" and len(m["model"]["checkpoint_sha256"]) == 64
        assert m["label"] in CLASSES[:-1] + [None] and m["person"] and m["skipped"] == 0  # "no gesture" is background
        frames = np.stack([frame_of(int(s))[0] for s in fr["rgb_seqs"]])
        kp = extract_layout(np.stack([frame_of(int(s))[1] for s in fr["pose_seqs"]]), engine.config.pose.layout)
        ref = offline_logits(engine, frames, kp, engine.config)
        np.testing.assert_allclose(np.array(m["logits"], np.float32), ref, rtol=1e-4, atol=1e-5)
    # after the first window, each window encoded only the S/4 new RGB frames and ran the skeleton stages
    # on the 2 + 4 + 6 time steps it added (the pose-branch cache, in the worker run_live.py starts)
    assert [m["computed"]["rgb_encoded"] for m in wins[1:]] == [stride // 4] * (len(wins) - 1)
    assert [m["computed"]["pose_stage_inputs"] for m in wins[1:]] == [12] * (len(wins) - 1)
    for t, m in lst.messages:
        jsonschema.validate(m, SCHEMA)
        assert t == f"mg.{m['schema'].split('/')[0].split('.')[1]}.cam0"


@pytest.mark.slow
def test_a_slow_worker_skips_whole_windows_and_reports_it(checkpoint: Path, listener_factory: Any) -> None:
    from clipmg.stream.config import StreamConfig

    ep = f"tcp://127.0.0.1:{free_port()}"
    cfg = StreamConfig(engine=str(checkpoint), endpoint=ep, stride=4, threads=1, fmt="msgpack")
    lst = listener_factory(ep, ("mg.window",))
    # a window closes every 4 frames = 80 ms at 50 fps; the head alone takes 0.3 s
    run_worker(
        cfg,
        frames=600,
        fps=50.0,
        listener=lst,
        until=lambda m: len(m) >= 4,
        engine_factory=functools.partial(slow_engine, delay=0.3),
    )
    wins = lst.windows()
    assert len(wins) >= 4
    numbers = [m["window"] for m in wins]
    assert all(b > a for a, b in zip(numbers, numbers[1:]))
    assert wins[-1]["skipped"] >= 4
    for a, b in zip(wins, wins[1:]):  # every gap in the numbering is a reported skip
        assert b["window"] - a["window"] - 1 == b["skipped"] - a["skipped"]
    # never stale: each published window's last frame is recent (not a backlog being worked off)
    assert max(m["latency_ms"]["capture_to_publish"] for m in wins[1:]) < 1500


def test_a_subscriber_that_never_reads_does_not_slow_the_publisher() -> None:
    from clipmg.stream.messages import encode
    from clipmg.stream.publisher import Publisher

    payload = encode({"schema": "clipmg.window/1", "pad": "x" * 4000})

    def rate(pub: Publisher, n: int = 4000) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            pub.send(b"mg.window.cam0", payload)
        return n / (time.perf_counter() - t0)

    ep = f"tcp://127.0.0.1:{free_port()}"
    code = (
        "import zmq,sys,time; c=zmq.Context(); s=c.socket(zmq.SUB); s.setsockopt(zmq.RCVHWM,10); "
        "s.setsockopt(zmq.SUBSCRIBE,b''); s.connect(sys.argv[1]); print('up',flush=True); time.sleep(60)"
    )
    with Publisher(ep, sndhwm=50) as pub:
        alone = rate(pub)
        sub = subprocess.Popen([PY, "-c", code, ep], stdout=subprocess.PIPE, text=True)
        try:
            assert sub.stdout is not None and sub.stdout.readline().strip() == "up"
            time.sleep(0.5)  # connected and subscribed, and it never reads
            t0 = time.perf_counter()
            with_stuck = rate(pub)
            with_stuck_again = rate(pub)  # its buffers are full by now
            elapsed = time.perf_counter() - t0
        finally:
            sub.kill()
            sub.wait()
    assert elapsed < 10
    assert min(with_stuck, with_stuck_again) > 0.3 * alone, (alone, with_stuck, with_stuck_again)


# ------------------------------------------------------------------------------------ supervisor
@pytest.mark.slow
def test_supervisor_restarts_a_killed_worker_and_sigterm_leaves_nothing(
    checkpoint: Path, listener_factory: Any
) -> None:
    import psutil

    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    lst = listener_factory(ep)
    sup = subprocess.Popen(
        [
            PY,
            str(REPO / "run_live.py"),
            "--engine",
            str(checkpoint),
            "--endpoint",
            ep,
            "--heartbeat",
            "0.5",
            "--threads",
            "1",
            "--no-listen",
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lst.wait(lambda m: len([1 for t, _ in m if "window" in t]) >= 2, 90, "the first windows")
        statuses = [m for t, m in lst.messages if t.startswith("mg.status")]
        pid = statuses[-1]["worker"]["pid"]
        segments = segments_of(sup.pid)
        assert len(segments) == 1 and pid in [c.pid for c in psutil.Process(sup.pid).children()]
        n_before = len(lst.messages)
        os.kill(pid, signal.SIGKILL)
        lst.wait(
            lambda m: any(t.startswith("mg.status") and s["state"] == "restarting" for t, s in m[n_before:]),
            30,
            "a 'restarting' status",
        )
        lst.wait(
            lambda m: (
                any(t.startswith("mg.window") for t, _ in m[n_before:])
                and any(
                    t.startswith("mg.status") and s["worker"].get("pid") not in (None, pid) and s["state"] == "running"
                    for t, s in m[n_before:]
                )
            ),
            90,
            "windows from the restarted worker",
        )
        restarting = next(
            s for t, s in lst.messages[n_before:] if t.startswith("mg.status") and s["state"] == "restarting"
        )
        assert "killed by signal 9" in restarting["message"] and restarting["restarts"] == 1
        children = psutil.Process(sup.pid).children(recursive=True)
        assert len(children) >= 2  # capture and the new worker
        sup.send_signal(signal.SIGTERM)
        out, _ = sup.communicate(timeout=30)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert sup.returncode == 0, out
    assert "received SIGTERM" in out
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"orphans: {alive}"
    assert not [s for s in segments if Path("/dev/shm", s).exists()], "shared memory segment leaked"
    lst.wait(lambda m: any(t.startswith("mg.status") and s["state"] == "stopped" for t, s in m), 5, "a final status")


@pytest.mark.slow
def test_supervisor_stops_by_itself_records_and_prints(checkpoint: Path, tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    port = free_port()
    proc = subprocess.run(
        [
            PY,
            str(REPO / "run_live.py"),
            "--engine",
            str(checkpoint),
            "--max-windows",
            "3",
            "--endpoint",
            f"tcp://127.0.0.1:{port}",
            "--listen",
            "--record",
            str(video),
            "--format",
            "msgpack",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("mg.window.cam0  #") >= 2  # the listener printed windows (it may join late)
    assert "windows 3" in proc.stderr
    assert video.is_file() and video.stat().st_size > 1000


@pytest.mark.parametrize(
    "args,words",
    [
        (["--stride", "6"], "multiple of 4"),
        (["--engine", "/nonexistent.safetensors"], "no such file"),
        (["--source", "/no/such/video.mp4", "--engine", "x"], "no such file"),
        (["--endpoint", "tcp://0.0.0.0:5599", "--engine", "x"], "--allow-remote"),
    ],
)
def test_bad_configuration_fails_fast_with_one_line(args: List[str], words: str) -> None:
    from io import StringIO

    from clipmg.stream.supervisor import main

    out = StringIO()
    assert main(args, out=out) == 2
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines


def test_precision_is_passed_to_an_onnx_engine_and_refused_for_a_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    from io import StringIO

    from clipmg.engines.export import export_onnx
    from clipmg.stream.config import StreamConfig
    from clipmg.stream.supervisor import main, resolve_engine
    from clipmg.stream.worker import FatalWorkerError, load_worker_engine

    out = StringIO()
    assert main(["--engine", str(checkpoint), "--precision", "int8"], out=out) == 2
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--precision int8 applies to an exported ONNX engine" in lines[0], lines
    onnx_dir = export_onnx(checkpoint, tmp_path / "onnx", int8=True, int8_samples=2).out_dir
    cfg = StreamConfig(
        engine=str(onnx_dir / "frame_encoder.onnx"), precision="int8"
    )  # a graph file stands for its export
    assert resolve_engine(cfg) is cfg
    for precision, expect in (("fp32", "fp32"), ("int8", "int8"), ("auto", "fp32")):  # auto: int8 not validated
        engine = load_worker_engine(StreamConfig(engine=str(onnx_dir), precision=precision, threads=1))
        assert engine.precision == expect and engine.identity["precision"] == expect
    plain = export_onnx(checkpoint, tmp_path / "plain").out_dir
    with pytest.raises(FatalWorkerError, match="no int8 frame encoder"):
        load_worker_engine(StreamConfig(engine=str(plain), precision="int8"))


def test_port_in_use_fails_with_one_line(checkpoint: Path) -> None:
    from io import StringIO

    from clipmg.stream.publisher import Publisher
    from clipmg.stream.supervisor import main

    ep = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(ep):
        out = StringIO()
        assert main(["--engine", str(checkpoint), "--endpoint", ep], out=out) == 2
    assert "already in use" in out.getvalue() and len(out.getvalue().strip().splitlines()) == 1
