"""Many streams in one recognizer: the engine batcher, the streams' configuration, and the shipped
``run_live.py`` serving several cameras with one worker (real processes, shared memory, ZeroMQ).

The engine is the tiny preset on the CPU (a real ``TorchEngine`` for the batcher; the supervisor's
worker loads the checkpoint itself); the sources are the synthetic camera and, for a camera that is
down, an RTSP address on loopback where nothing listens.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import psutil
import pytest
from live_harness import Live, Subscriber, endpoint, free_port, wait_for, window_gaps_are_reported

from clipmg.stream.batcher import EngineBatcher
from clipmg.stream.config import build_parser, config_from_args
from clipmg.stream.streams import many_stream_threads, stream_configs


@pytest.fixture(scope="module")
def engine(checkpoint: Path) -> Any:
    from clipmg.engines.torch_backend import TorchEngine

    return TorchEngine.load(checkpoint)


def _together(n: int, fn: Any) -> List[Any]:
    """``fn(i)`` in ``n`` threads released at once; their results (or exceptions) in order."""
    out: List[Any] = [None] * n
    gate = threading.Barrier(n)

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


# ------------------------------------------------------------------------------------ the batcher
def test_calls_of_streams_that_are_due_together_run_as_one_batch_with_the_same_answers(engine: Any) -> None:
    """Four streams encode a frame and run a window's pose stage and head at the same moment: each
    kind of call reaches the engine once, with four rows, and each stream gets exactly its rows."""
    rng = np.random.default_rng(0)
    s = engine.config.vision.image_size
    images = rng.standard_normal((4, 1, 3, s, s)).astype(np.float32)
    batcher = EngineBatcher(engine, budget_s=5.0)  # a long budget: the batch runs when all four are waiting
    try:
        clients = [batcher.client() for _ in range(4)]
        got = _together(4, lambda i: clients[i].encode_frames(images[i]))
        for i in range(4):
            tokens, emb = engine.encode_frames(images[i])
            np.testing.assert_allclose(got[i][0], tokens, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(got[i][1], emb, rtol=1e-4, atol=1e-4)
        cfg = engine.config
        kp = rng.uniform(0, s, (4, 1, cfg.clip.group, cfg.pose.num_joints, 3)).astype(np.float32)
        kp[..., 2] = 0.9
        taps = _together(4, lambda i: clients[i].pose_partials(0, kp[i]))
        for i in range(4):
            np.testing.assert_allclose(taps[i], engine.pose_partials(0, kp[i]), rtol=1e-4, atol=1e-4)
        t, e = engine.encode_frames(rng.standard_normal((cfg.clip.rgb_frames, 3, s, s)).astype(np.float32))
        window_kp = rng.uniform(0, s, (4, 1, cfg.clip.pose_frames, cfg.pose.num_joints, 3)).astype(np.float32)
        logits = _together(4, lambda i: clients[i].head(t[None], e[None], window_kp[i]))
        for i in range(4):
            np.testing.assert_allclose(logits[i], engine.head(t[None], e[None], window_kp[i]), rtol=1e-4, atol=1e-4)
        stats = batcher.stats()
    finally:
        batcher.close()
    assert stats["engine_calls"] == {"encode_frames": 1, "pose_partials": 1, "head": 1}, stats
    assert stats["requests"] == {"encode_frames": 4, "pose_partials": 4, "head": 4}, stats
    assert stats["batch_rows"] == {"4": 3}, stats


def test_a_lone_call_waits_at_most_the_budget_and_a_released_stream_is_not_waited_for(engine: Any) -> None:
    """Two streams, one calling: its call runs once the budget has passed (it does not wait for the
    idle one forever); once the idle one is released, a call runs at once even with an hour's budget."""
    s = engine.config.vision.image_size
    frame = np.zeros((1, 3, s, s), np.float32)
    batcher = EngineBatcher(engine, budget_s=0.05)
    try:
        a, _idle = batcher.client(), batcher.client()
        a.encode_frames(frame)
        a.encode_frames(frame)
        assert batcher.stats()["batch_rows"] == {"1": 2}
    finally:
        batcher.close()
    batcher = EngineBatcher(engine, budget_s=3600.0)
    try:
        a, idle = batcher.client(), batcher.client()
        idle.release()
        done = threading.Event()
        threading.Thread(target=lambda: (a.encode_frames(frame), done.set()), daemon=True).start()
        assert done.wait(60), "a call waited for a stream that had been released"
    finally:
        batcher.close()


def test_rows_beyond_max_batch_go_to_the_next_call_and_an_engine_error_reaches_every_caller(engine: Any) -> None:
    s = engine.config.vision.image_size
    frames = np.zeros((2, 3, s, s), np.float32)
    batcher = EngineBatcher(engine, budget_s=5.0, max_rows=4)
    try:
        clients = [batcher.client() for _ in range(3)]
        got = _together(3, lambda i: clients[i].encode_frames(frames))
        assert all(g[0].shape[0] == 2 for g in got)
        assert batcher.stats()["batch_rows"] == {"2": 1, "4": 1}
        bad = np.zeros((1, 2, s, s), np.float32)  # two colour channels: the engine refuses the batch
        errors = _together(3, lambda i: clients[i].encode_frames(bad))
        assert all(isinstance(e, Exception) for e in errors), errors
        assert len({str(e) for e in errors}) == 1
        assert clients[0].encode_frames(frames)[0].shape[0] == 2  # the batcher goes on
    finally:
        batcher.close()


# ------------------------------------------------------------------------------------ configuration
def _configs(argv: List[str]) -> List[Any]:
    args = build_parser().parse_args(argv)
    return stream_configs(config_from_args(args).validate(), args)


def test_repeated_sources_become_streams_cam0_cam1_each_with_its_own_video(tmp_path: Path) -> None:
    cfgs = _configs(["--source", "synthetic:1", "--source", "synthetic:2", "--record", str(tmp_path / "out.mp4")])
    assert [c.stream_id for c in cfgs] == ["cam0", "cam1"]
    assert [c.source for c in cfgs] == ["synthetic:1", "synthetic:2"]
    assert [Path(c.record).name for c in cfgs] == ["out.cam0.mp4", "out.cam1.mp4"]
    # the one engine of several streams gets every core (at most 8); one stream keeps half (threads unset)
    assert {c.threads for c in cfgs} == {many_stream_threads()} and many_stream_threads() == min(8, os.cpu_count() or 2)
    assert _configs(["--source", "synthetic:1", "--source", "synthetic:2", "--threads", "1"])[1].threads == 1
    (one,) = _configs(["--source", "synthetic:1"])
    assert one.threads is None and one.engine_threads == max(1, min(8, (os.cpu_count() or 2) // 2))


def test_a_streams_file_sets_each_streams_own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOBBY_URL", "rtsp://user:secret@127.0.0.1:8554/lobby")
    f = tmp_path / "cams.toml"
    f.write_text(
        '[[stream]]\nid = "lobby"\nsource_env = "LOBBY_URL"\npose = "mediapipe"\npose_every = 2\n'
        "source_options = { read_timeout_s = 2 }\n\n"
        '[[stream]]\nid = "desk"\nsource = "synthetic:3"\nstride = 16\nmax_windows = 5\n'
    )
    lobby, desk = _configs(["--streams", str(f), "--threshold", "0.4"])
    assert (lobby.stream_id, lobby.source, lobby.pose_backend, lobby.pose_every) == (
        "lobby",
        "rtsp://user:secret@127.0.0.1:8554/lobby",
        "mediapipe",
        2,
    )
    assert dict(lobby.source_options) == {"read_timeout_s": 2}
    assert (desk.stream_id, desk.pose_backend, desk.stride, desk.max_windows) == ("desk", "synthetic", 16, 5)
    assert lobby.threshold == desk.threshold == 0.4  # the command line's settings apply to every stream


BAD_STREAMS = [
    ("[[stream]]\nid = 'a'\nsource = 'synthetic'\ncolour = 'red'\n", "unknown key 'colour'"),
    ("[[stream]]\nid = 'a'\nsource = 'synthetic'\n[[stream]]\nid = 'a'\nsource = 'synthetic:2'\n", "given twice"),
    ("[[stream]]\nsource = 'synthetic'\n", "give it an id"),
    ("[[stream]]\nid = 'a'\nsource = 'synthetic'\nsource_env = 'X'\n", "exactly one of source"),
    ("[[stream]]\nid = 'a'\n", "exactly one of source"),
    ("[[stream]]\nid = 'a'\nsource = 'synthetic'\nstride = 'eight'\n", "must be an integer"),
    ("[[stream]]\nid = 'a'\nsource = 'synthetic'\nstride = 6\n", "stream a: --stride 6 must be a positive multiple"),
    ("[[stream]]\nid = 'a b'\nsource = 'synthetic'\n", "stream id 'a b' must be"),
    ("[[stream]]\nid = 'a'\nsource = 'synthetic'\nsource_options = { loop = true }\n", "loop"),
    ("[[stream]]\nid = 'a'\nsource = 'nowhere.mp4'\n", "stream a: --source nowhere.mp4: no such file"),
    ("[[stream\nid = 'a'\n", "not valid TOML"),
    ("cameras = 2\n", "unknown top-level key 'cameras'"),
    ("", "no streams"),
]


@pytest.mark.parametrize("text,words", BAD_STREAMS, ids=[w for _, w in BAD_STREAMS])
def test_a_bad_streams_file_is_one_sentence_and_exit_2(text: str, words: str, tmp_path: Path) -> None:
    from clipmg.stream.supervisor import main

    f = tmp_path / "cams.toml"
    f.write_text(text)
    out = io.StringIO()
    assert main(["--streams", str(f)], out=out) == 2
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipmg-live: ") and words in lines[0], lines


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--source", "synthetic", "--source", "synthetic:2", "--stream-id", "lobby"], "names one stream"),
        (["--source", "synthetic", "--source", "synthetic:2", "--display"], "--display shows one stream"),
        (["--source", "synthetic", "--streams", "x.toml"], "either with --source or in --streams"),
        (["--streams", "x.toml", "--source-option", "loop=true"], "in a --streams file give each stream"),
        (["--streams", "/nonexistent/cams.toml"], "cannot read it"),
        (["--source", "synthetic", "--source", "missing.mp4"], "stream cam1: --source missing.mp4: no such file"),
        (["--source", "synthetic", "--batch-budget-ms", "-1"], "--batch-budget-ms"),
        (["--source", "synthetic", "--pose-pool", "0"], "--pose-pool"),
    ],
)
def test_bad_many_stream_flags_are_one_sentence_and_exit_2(argv: List[str], words: str) -> None:
    from clipmg.stream.supervisor import main

    out = io.StringIO()
    assert main(argv, out=out) == 2
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipmg-live: ") and words in lines[0], lines


# ------------------------------------------------------------------------------------ end to end
def _per_stream(wins: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for w in wins:
        out.setdefault(w["stream"], []).append(w)
    return out


@pytest.mark.slow
def test_one_worker_serves_three_streams_with_their_own_settings_and_batches_their_engine_calls(
    checkpoint: Path, tmp_path: Path
) -> None:
    """Three synthetic cameras from a streams file (different Δp and strides), one worker: every
    stream's windows arrive in order with its own settings and today's schema (the subscriber
    validates each message), each stream has its own status, and the worker's counters show engine
    calls that served several streams at once (fewer engine calls than stream calls)."""
    f = tmp_path / "cams.toml"
    f.write_text(
        '[[stream]]\nid = "north"\nsource = "synthetic:1"\n\n'
        '[[stream]]\nid = "south"\nsource = "synthetic:2"\npose_every = 2\n\n'
        '[[stream]]\nid = "west"\nsource = "synthetic:3"\nstride = 16\n'
    )
    ep = endpoint()
    args = ["--engine", str(checkpoint), "--streams", str(f), "--endpoint", ep, "--threads", "1"]
    args += ["--heartbeat", "0.5", "--max-windows", "5", "--batch-budget-ms", "20", "--no-listen", "-q"]
    with Subscriber(ep) as sub, Live(args) as live:
        assert live.wait(240) == 0, live.stderr
        time.sleep(0.5)
        wins, statuses = sub.windows(), sub.statuses()
    assert not sub.bad, sub.bad
    by = _per_stream(wins)
    assert sorted(by) == ["north", "south", "west"], sorted(by)
    expect = {"north": (1, 8), "south": (2, 8), "west": (1, 16)}
    for name, ws in by.items():
        assert len(ws) == 5, (name, [w["window"] for w in ws])
        assert not window_gaps_are_reported(ws), (name, window_gaps_are_reported(ws))
        pose_every, stride = expect[name]
        for w in ws:  # sample k is frame k*Δp; window w starts at sample w*S
            seqs = w["frames"]["pose_seqs"]
            assert set(np.diff(seqs)) == {pose_every} and seqs[0] == w["window"] * stride * pose_every, (name, w)
    for name in by:
        mine = [m for m in statuses if m["stream"] == name]
        assert mine and mine[-1]["state"] == "stopped" and mine[-1]["windows"] == 5, mine[-1:]
    running = [m for m in statuses if m["state"] == "running" and m["worker"].get("batcher")]
    assert running, "no status carried the batcher's counters"
    b = running[-1]["worker"]["batcher"]
    assert running[-1]["worker"]["streams"] == 3
    assert sum(b["requests"].values()) > sum(b["engine_calls"].values()), b
    assert any(int(rows) > 1 for rows in b["batch_rows"]), b
    assert "3 streams (north, south, west) in one worker" in live.stderr


@pytest.mark.slow
def test_a_camera_that_is_down_or_killed_never_stalls_the_other_streams(checkpoint: Path) -> None:
    """Stream ``down`` is an RTSP camera on loopback where nothing listens: it keeps reconnecting while
    ``up`` publishes. Then ``up2``'s capture process is SIGKILLed: it alone is restarted (its status
    counts the restart) while ``up`` goes on without a gap. SIGINT then stops everything: exit 0."""
    ep = endpoint()
    dead = f"rtsp://127.0.0.1:{free_port()}/nobody"
    args = ["--engine", str(checkpoint), "--source", "synthetic:1", "--source", dead, "--source", "synthetic:2"]
    args += ["--endpoint", ep, "--threads", "1", "--heartbeat", "0.5", "--no-listen", "-q"]
    args += ["--source-option", "open_timeout_s=1"]
    with Subscriber(ep) as sub, Live(args) as live:
        sub.wait(lambda m: len([w for w in sub.windows() if w["stream"] == "cam0"]) >= 4, 180, "cam0 windows")
        down = [m for m in sub.statuses() if m["stream"] == "cam1"]
        assert down and {m["source"]["state"] for m in down} <= {"unknown", "opening", "reconnecting", "stalled"}
        assert not [w for w in sub.windows() if w["stream"] == "cam1"]
        # the supervisor's spawned children in start order: the worker, then the captures of cam0, cam1, cam2
        kids = [p for p in psutil.Process(live.pid).children() if "resource_tracker" not in " ".join(p.cmdline())]
        kids.sort(key=lambda p: p.create_time())
        assert len(kids) == 4, kids
        kids[3].kill()
        wait_for(
            lambda: any(m["stream"] == "cam2" and m["restarts"] >= 1 for m in sub.statuses()),
            60,
            "cam2's capture restart in its status",
        )
        n = len([w for w in sub.windows() if w["stream"] == "cam2"])
        sub.wait(lambda m: len([w for w in sub.windows() if w["stream"] == "cam2"]) >= n + 2, 120, "cam2 again")
        live.signal(signal.SIGINT)
        assert live.wait(60) == 0, live.stderr
    up = [w for w in sub.windows() if w["stream"] == "cam0"]
    assert not window_gaps_are_reported(up)  # (a loaded machine may skip a late window: it is counted, not lost)
    assert up[-1]["window"] - up[0]["window"] + 1 == len(up) + up[-1]["skipped"] - up[0]["skipped"]
    assert all(m["restarts"] == 0 for m in sub.statuses() if m["stream"] == "cam0")


def test_a_stream_that_fails_inside_the_worker_is_restarted_alone(engine: Any) -> None:
    """Two streams in one worker (their runners driven as ``worker_main`` drives them, one batcher):
    stream ``b``'s loop raises once (a planted fault), its runner reports it, reopens it after the
    back-off and ``b`` publishes again, while ``a`` goes on publishing without a gap."""
    import queue

    from test_live import H, W, frame_of

    from clipmg.stream.config import StreamConfig
    from clipmg.stream.ringbuffer import FrameRing
    from clipmg.stream.worker import PoseSlots, StreamJob, StreamRunner

    events: "queue.Queue[Dict[str, Any]]" = queue.Queue()
    batcher = EngineBatcher(engine, budget_s=0.01)
    eps = [endpoint(), endpoint()]
    rings = [FrameRing.create(64, H, W) for _ in range(2)]
    runners = [
        StreamRunner(
            StreamJob(
                StreamConfig(stream_id=name, pose="synthetic", endpoint=ep, threads=1, restart_backoff_s=0.2),
                ring.name,
            ),
            batcher.client,
            PoseSlots(2),
            events,
            None,
            None,
            single=False,
        )
        for name, ep, ring in zip("ab", eps, rings)
    ]
    stop = threading.Event()

    def write() -> None:
        seq = 0
        while not stop.is_set():
            img, kp = frame_of(seq)
            for ring in rings:
                ring.write(img, seq, time.monotonic(), time.time(), kp)
            seq += 1
            time.sleep(1 / 60)

    subs = [Subscriber(ep) for ep in eps]
    writer = threading.Thread(target=write, daemon=True)
    try:
        for r in runners:
            r.open(from_oldest=False)
            r.start()
        writer.start()
        watch = lambda: [r.tick(time.monotonic()) for r in runners]  # noqa: E731 - what _supervise does
        wait_for(lambda: (watch(), len(subs[1].windows()) >= 2)[1], 120, "b's first windows")
        b = runners[1]
        assert b.worker is not None

        def planted() -> bool:
            raise RuntimeError("planted fault in stream b")

        b.worker.step = planted  # type: ignore[method-assign]
        wait_for(lambda: (watch(), b.restarts == 1 and b.alive())[1], 60, "b restarted")
        n = len(subs[1].windows())
        wait_for(lambda: (watch(), len(subs[1].windows()) >= n + 2)[1], 120, "b's windows after its restart")
    finally:
        stop.set()
        for r in runners:
            r.stop()
            r.join()
            r.close()
        batcher.close()
        for s in subs:
            s.close()
        for ring in rings:
            ring.close()
    seen = []
    while not events.empty():
        seen.append(events.get())
    restarting = [e for e in seen if e["event"] == "stream_state"]
    assert [(e["stream"], e["state"], e["restarts"]) for e in restarting] == [("b", "restarting", 1)], restarting
    assert "planted fault in stream b" in restarting[0]["message"]
    a = subs[0].windows()
    assert len(a) >= 4 and not window_gaps_are_reported(a)  # every window of a published or counted as skipped
    assert not runners[0].restarts


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--precision", "bf16"], "--precision bf16 applies to an exported ONNX engine (fp32, int8) or to a"),
        (["--device", "cuda", "--precision", "int8"], "on --device cuda, which cannot run it"),
        (["--device", "cuda", "--precision", "fp16"], "the cuda engine needs a GPU PyTorch can see"),
    ],
)
def test_the_cuda_engines_precision_is_checked_and_a_missing_gpu_is_one_sentence(
    checkpoint: Path, extra: List[str], words: str
) -> None:
    """``--precision`` names what the engine can run (ONNX: fp32/int8; the CUDA engine: fp32/bf16/fp16);
    on a machine without a GPU the CUDA engine is one sentence from the worker, not a traceback."""
    import torch

    from clipmg.stream.supervisor import main

    if torch.cuda.is_available() and "needs a GPU" in words:
        pytest.skip("this machine has a GPU")
    out = io.StringIO()
    assert main(["--engine", str(checkpoint), "--max-windows", "1", "--no-listen", "-q", *extra], out=out) == 2
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipmg-live: ") and words in lines[0], lines


def test_the_pose_pool_runs_at_most_its_size_at_once_across_streams() -> None:
    """Six streams' pose threads call their own backends through one pool of two slots: never more than
    two estimations run at once, and every call is answered."""
    from clipmg.stream.pose import create_pose_backend
    from clipmg.stream.ringbuffer import Frame
    from clipmg.stream.worker import PoseSlots

    slots = PoseSlots(2)
    inside = {"now": 0, "most": 0}
    lock = threading.Lock()

    class Timed:  # the real synthetic backend, held for 20 ms so that the calls overlap
        def __init__(self) -> None:
            self.inner = create_pose_backend("synthetic")
            self.name = self.inner.name

        def __call__(self, frame: Any) -> Any:
            with lock:
                inside["now"] += 1
                inside["most"] = max(inside["most"], inside["now"])
            time.sleep(0.02)
            with lock:
                inside["now"] -= 1
            return self.inner(frame)

        def close(self) -> None:
            self.inner.close()

    kp = np.zeros((137, 3), np.float32)
    kp[:, :2], kp[:, 2] = 40.0, 0.9
    frame = Frame(np.zeros((72, 96, 3), np.uint8), 0, 0.0, 0.0, kp)
    backends = [slots.wrap(Timed()) for _ in range(6)]  # type: ignore[arg-type]
    results = _together(6, lambda i: [backends[i](frame) for _ in range(5)])
    assert all(len(r) == 5 and all(x.person for x in r) for r in results), results
    assert inside["most"] <= 2 and slots.peak == 2, (inside, slots.peak)
    for b in backends:
        b.close()


def test_a_window_head_does_not_wait_behind_another_streams_frame_encoding(engine: Any) -> None:
    """Calls of different kinds run side by side (each kind has its own batch): while stream a's frame
    encoding is held inside the engine, stream b's window head runs and returns."""
    cfg = engine.config
    s = cfg.vision.image_size
    release, inside = threading.Event(), threading.Event()

    class Held:  # the real engine; its encoder waits for the test's word (the planted slow call)
        def __init__(self) -> None:
            self.config, self.class_names = engine.config, engine.class_names

        def encode_frames(self, images: np.ndarray) -> Any:
            inside.set()
            assert release.wait(60)
            return engine.encode_frames(images)

        def head(self, *a: np.ndarray) -> np.ndarray:
            return engine.head(*a)  # type: ignore[no-any-return]

    batcher = EngineBatcher(Held())
    try:
        a, b = batcher.client(), batcher.client()
        got: Dict[str, Any] = {}
        t = threading.Thread(target=lambda: got.update(a=a.encode_frames(np.zeros((1, 3, s, s), np.float32))))
        t.start()
        assert inside.wait(60)
        rng = np.random.default_rng(1)
        x, e = engine.encode_frames(rng.standard_normal((cfg.clip.rgb_frames, 3, s, s)).astype(np.float32))
        kp = rng.uniform(0, s, (1, cfg.clip.pose_frames, cfg.pose.num_joints, 3)).astype(np.float32)
        logits = b.head(x[None], e[None], kp)  # returns although a's encoding is still held
        assert logits.shape == (1, len(engine.class_names)) and "a" not in got
        release.set()
        t.join(60)
        assert got["a"][0].shape[0] == 1
    finally:
        release.set()
        batcher.close()
