"""Faults: what the live recognizer and the trainer do when the world breaks under them.

Real components throughout: a real RTSP server (GStreamer's, tests/rtsp_server.py) that stalls and
vanishes, the real supervisor (``run_live.py``) with its capture and worker processes, a real
ZeroMQ subscriber, real files that disappear, a real pose backend fed garbage, and a real
``clipmg-train`` killed with SIGKILL. Each test is a row of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest
from live_harness import (
    PY,
    Live,
    Subscriber,
    endpoint,
    index_image,
    puttext_tap,
    segments_of,
    wait_for,
    window_gaps_are_reported,
    worker_pid,
)
from rtsp_server import INSTALL_HINT, RtspServer, find_gi_python

SECRET = "Xyz-s3cr3t-PW"
TOKEN = "tok-9f8e7d6c"


def write_mjpeg_avi(path: Path, n: int, fps: float = 15.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    assert writer.isOpened()
    for i in range(n):
        writer.write(index_image(i % 256))
    writer.release()
    return path


def source_states(sub: Subscriber, since: float = 0.0) -> List[str]:
    return [m["source"]["state"] for t, m, tr in sub.snapshot() if t.startswith("mg.status") and tr >= since]


def windows_after(sub: Subscriber, t: float) -> List[Dict[str, Any]]:
    """Windows whose first frame was captured after wall-clock time ``t``."""
    return [m for m in sub.windows() if m["frames"]["t_first"] > t]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (SECRET, TOKEN, "viewer:"):
            assert secret not in text, (
                f"{secret!r} leaked: ...{text[max(0, text.find(secret) - 200) : text.find(secret) + 80]}..."
            )


# ------------------------------------------------------------------------------------ RTSP
@pytest.mark.slow
def test_rtsp_camera_that_stalls_then_vanishes_is_reported_and_rejoined(checkpoint: Path, tmp_path: Path) -> None:
    """A real RTSP server (basic auth; the URL carries ``user:secret@`` and ``?token=``) first
    freezes without closing the connection (SIGSTOP: a read timeout), then dies (SIGKILL) and comes
    back on the same port. The recognizer reports each outage on the status topic, never restarts
    or exits, reconnects by itself and publishes again; frame numbers run on across both outages
    and the windows that span one say so (``frames.max_gap_s``); every gap in the window numbering
    is a reported skip; and the secret appears nowhere: not in stdout/stderr (logs, errors, the
    ``--listen`` output), not in any message, not in the overlay text, not in the recorded video."""
    python = find_gi_python()
    if python is None:
        pytest.skip(f"no Python with GStreamer's RTSP server here; install it with: {INSTALL_HINT}")
    media = write_mjpeg_avi(tmp_path / "camera.avi", n=15 * 300)  # 5 minutes: never ends during the test
    server = RtspServer(python, media, user="viewer", password=SECRET, log=tmp_path / "rtsp.log")
    server.start()
    env, tap_log = puttext_tap(tmp_path / "tap")
    ep = endpoint()
    video = tmp_path / "annotated.mp4"
    args = [
        "--source",
        server.url(f"token={TOKEN}"),
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--pose",
        "mediapipe",
        "--pose-every",
        "2",
        "--stride",
        "4",
        "--threads",
        "1",
        "--heartbeat",
        "0.5",
        "--listen",
        "--record",
        str(video),
        "-q",
        "--source-option",
        "read_timeout_s=2",
        "--source-option",
        "open_timeout_s=4",
        "--source-option",
        "max_backoff_s=1",
    ]
    sub = Subscriber(ep)
    try:
        with Live(args, env=env, cwd=tmp_path) as live:
            sub.wait(lambda m: len([1 for t, _, _ in m if t.startswith("mg.window")]) >= 3, 180, "the first windows")
            segments = segments_of(live.pid)
            assert len(segments) == 1, segments

            # 1. stall: the server process freezes; its TCP connection stays open
            t_stall = time.time()
            os.kill(server.proc.pid, signal.SIGSTOP)
            sub.wait(
                lambda m: {"stalled", "reconnecting"} & set(source_states(sub, t_stall)),
                30,
                "a stalled/reconnecting status during the stall",
            )
            time.sleep(max(0.0, t_stall + 4.0 - time.time()))
            frozen_windows = len(sub.windows())
            t_cont = time.time()
            os.kill(server.proc.pid, signal.SIGCONT)
            sub.wait(lambda m: len(windows_after(sub, t_cont)) >= 3, 90, "windows after the stall")

            # 2. vanish: the server is killed, then a new one starts on the same port
            t_down = time.time()
            server.kill()
            sub.wait(lambda m: "reconnecting" in source_states(sub, t_down), 30, "a reconnecting status")
            time.sleep(max(0.0, t_down + 4.0 - time.time()))
            down_windows = len(sub.windows())
            t_up = time.time()
            server.start()
            sub.wait(lambda m: len(windows_after(sub, t_up)) >= 3, 90, "windows after the server came back")
            assert live.proc.poll() is None, "the recognizer exited during an outage"
            assert live.stop() == 0, live.stderr[-3000:]
        messages = sub.snapshot()
    finally:
        sub.close()
        server.kill()

    wins = [m for t, m, _ in messages if t.startswith("mg.window")]
    statuses = [(m, tr) for t, m, tr in messages if t.startswith("mg.status")]
    # the outages are on the status topic; the worker was never restarted and the run never failed
    during_stall = [m["source"]["state"] for m, tr in statuses if t_stall < tr < t_cont]
    during_down = [m["source"]["state"] for m, tr in statuses if t_down < tr < t_up]
    assert "stalled" in during_stall or "reconnecting" in during_stall, during_stall
    assert "reconnecting" in during_down, during_down
    assert "streaming" not in during_down[during_down.index("reconnecting") :], during_down  # until the server is back
    assert all(m["restarts"] == 0 and m["state"] in ("starting", "running", "stopping", "stopped") for m, _ in statuses)
    assert "streaming" in [m["source"]["state"] for m, tr in statuses if t_cont < tr < t_down]
    assert "streaming" in [m["source"]["state"] for m, tr in statuses if tr > t_up]
    # no window was made of frames that do not exist: nothing new while the camera was gone
    # (a window already closing when the outage began may still arrive, at most one)
    assert len([w for w in wins[frozen_windows:] if w["frames"]["t_last"] < t_cont]) <= 1
    assert len([w for w in wins[down_windows:] if w["frames"]["t_last"] < t_up]) <= 1
    # numbering: windows increase, every gap is a reported skip, frame numbers run on
    assert not window_gaps_are_reported(wins), window_gaps_are_reported(wins)
    firsts = [w["frames"]["first_seq"] for w in wins]
    assert all(b > a for a, b in zip(firsts, firsts[1:]))
    assert all(np.all(np.diff(w["frames"]["pose_seqs"]) == 2) for w in wins)  # --pose-every 2, no renumbering
    # the windows spanning each outage carry it in max_gap_s; windows inside a stream do not
    spans = sorted(w["frames"]["max_gap_s"] for w in wins)
    assert spans[-1] >= 3.0 and spans[-2] >= 2.0, spans[-4:]  # the two outages (4 s each, minus reconnect)
    steady = [w for w in wins if w["frames"]["t_last"] < t_stall]
    assert steady and max(w["frames"]["max_gap_s"] for w in steady) < 1.0
    assert all(not w["person"] for w in wins)  # MediaPipe finds nobody in bars: windows flagged
    # credentials: nowhere
    assert_no_secret(
        live.stdout,
        live.stderr,
        json.dumps([m for _, m, _ in messages]),
        tap_log.read_text(errors="replace"),
        video.read_bytes().decode("latin-1"),
    )
    assert "mg.status.cam0" in live.stdout and "mg.window.cam0" in live.stdout  # the --listen output was checked
    assert f"rtsp://***@127.0.0.1:{server.port}/live?token=***" in live.stderr  # the URL was shown, masked
    assert tap_log.read_text().strip(), "the overlay tap saw no text: the video was not annotated"
    assert not [s for s in segments if Path("/dev/shm", s).exists()], "shared memory leaked"


# ------------------------------------------------------------------------------------ training
TRAIN_CLASSES = ("touch chin", "fold arm", "rub eyes", "no gesture")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipmg.train.synth import SynthConfig, write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(
        root,
        seed=3,
        videos=3,
        clips_per_video=4,
        config=SynthConfig(classes=TRAIN_CLASSES, clip_frames=(24, 32), gap_frames=(8, 12)),
    )
    return root


def _train_cmd(data: Path, out: Path, *extra: str) -> List[str]:
    exe = Path(sys.executable).with_name("clipmg-train")
    cmd = [str(exe)] if exe.exists() else [PY, "-m", "clipmg.train.trainer"]
    return [
        *cmd,
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "4",
        "--batch-size",
        "2",
        "--save-every",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--workers",
        "0",
        "--seed",
        "0",
        # large steps, so that one step applied twice (or weights and optimiser out of step) shows
        "--lr-new",
        "5e-3",
        "--lr-vit",
        "5e-4",
        "--warmup-epochs",
        "0",
        *extra,
    ]


def _log_rows(out: Path) -> int:
    try:
        return max(0, len((out / "log.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def _kill_while_writing(cmd: List[str], out: Path, prefix: str, after_saves: int, env: Dict[str, str]) -> str:
    """Run ``cmd`` and SIGKILL it the moment a temporary file ``<prefix>*`` appears in ``out`` (a
    checkpoint being written) once ``last.safetensors`` has been replaced ``after_saves`` times;
    returns the name of the file it was writing."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    inodes = set()
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and proc.poll() is None:
            try:
                inodes.add(os.stat(out / "last.safetensors").st_ino)
            except OSError:
                pass
            if len(inodes) > after_saves:
                hit = [e.name for e in os.scandir(out) if e.name.startswith(prefix)]
                if hit:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(30)
                    return hit[0]
            time.sleep(0.0005)
        raise AssertionError(
            f"training ended (status {proc.poll()}) before a {prefix}* write could be "
            f"interrupted: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _every_checkpoint_loads(out: Path) -> List[str]:
    import torch

    from clipmg.model.checkpoint import load_checkpoint

    loaded = []
    for p in sorted(out.glob("*.safetensors")):
        load_checkpoint(p)
        loaded.append(p.name)
    if (out / "last.state.pt").exists():
        torch.load(out / "last.state.pt", weights_only=True)
        loaded.append("last.state.pt")
    return loaded


@pytest.mark.slow
def test_training_killed_while_writing_checkpoints_resumes_exactly(synth_root: Path, tmp_path: Path) -> None:
    """``clipmg-train --save-every 1`` SIGKILLed twice at the worst moments: while ``last.safetensors``
    is being written, and between that write and the one of ``last.state.pt`` (the weights on disk
    are then one step ahead of the optimiser state). Every checkpoint file that exists loads each
    time, nothing half-written is ever in place, ``--resume`` continues, and the final weights are
    those of an uninterrupted run with the same seed."""
    from clipmg.model.checkpoint import load_checkpoint

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "uninterrupted"
    r = subprocess.run(_train_cmd(synth_root, ref), capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    total = _log_rows(ref)

    run = tmp_path / "killed"
    hit = _kill_while_writing(_train_cmd(synth_root, run), run, ".last.safetensors.", 3, env)
    assert "last.safetensors" in _every_checkpoint_loads(run), hit
    hit = _kill_while_writing(_train_cmd(synth_root, run, "--resume"), run, ".last.state.pt.", 2, env)
    assert {"last.safetensors", "last.state.pt"} <= set(_every_checkpoint_loads(run)), hit
    r = subprocess.run(_train_cmd(synth_root, run, "--resume"), capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {"best.safetensors", "last.safetensors", "last.state.pt"} <= set(_every_checkpoint_loads(run))
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files were left behind"
    steps = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, total + 1))  # one row per step: none lost with the kills, none logged twice
    a, _ = load_checkpoint(ref / "last.safetensors")
    b, _ = load_checkpoint(run / "last.safetensors")
    diff = max(float((va - vb).abs().max()) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))
    assert diff < 1e-6, f"resumed weights differ from the uninterrupted run's by up to {diff:.2e}"


# ------------------------------------------------------------------------------------ crashed children
def _capture_pid(live: Live, worker: int) -> int:
    """The capture process: the supervisor's spawned child that is not the worker (nor a helper)."""
    for p in live.children():
        try:
            cmd = " ".join(p.cmdline())
        except Exception:  # noqa: BLE001 - it may be gone already
            continue
        if p.pid != worker and "spawn_main" in cmd and "resource_tracker" not in cmd:
            return p.pid
    return 0


def _runs(messages: List[Any]) -> List[List[Dict[str, Any]]]:
    """Window messages split into worker runs at each 'restarting' status, in arrival order."""
    runs: List[List[Dict[str, Any]]] = [[]]
    for t, m, _ in messages:
        if t.startswith("mg.status") and m["state"] == "restarting" and "worker" in m["message"] and runs[-1]:
            runs.append([])
        elif t.startswith("mg.window"):
            runs[-1].append(m)
    return runs


@pytest.mark.slow
def test_killed_worker_and_capture_are_restarted_and_every_window_is_accounted_for(checkpoint: Path) -> None:
    """SIGKILL the worker twice in a row, then the capture process. Each time the supervisor says
    so on the status topic, restarts the process with a growing back-off (0.5 s, then 1 s), and
    windows follow again on the same connection. Window numbers never repeat; within a worker run
    every gap is a reported skip; the windows lost while a worker restarted are counted
    (``restart_gap``), so the final status accounts for every window number from the first to the
    last. SIGTERM then leaves no process and no shared memory."""
    ep = endpoint()
    sub = Subscriber(ep)
    args = [
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--heartbeat",
        "0.5",
        "--threads",
        "1",
        "--stride",
        "4",
        "--no-listen",
        "-q",
    ]
    try:
        with Live(args) as live:
            sub.wait(lambda m: len(sub.windows()) >= 3, 120, "the first windows")
            segments = segments_of(live.pid)
            assert len(segments) == 1, segments
            delays = []
            for i in range(2):
                pid = worker_pid(sub)
                n = len(sub.snapshot())
                os.kill(pid, signal.SIGKILL)
                restarting = sub.wait(
                    lambda m: [s for t, s, _ in m[n:] if t.startswith("mg.status") and s["state"] == "restarting"],
                    30,
                    "a 'restarting' status",
                )[0]
                assert f"worker (pid {pid}) was killed by signal 9" in restarting["message"], restarting
                assert restarting["restarts"] == i + 1
                delays.append(restarting["message"].split("restarting in ")[1].split(" s")[0])
                sub.wait(
                    lambda m: (
                        any(
                            t.startswith("mg.status") and s["state"] == "running" and s["worker"]["pid"] not in (0, pid)
                            for t, s, _ in m[n:]
                        )
                        and any(t.startswith("mg.window") for t, _, _ in m[n:])
                    ),
                    120,
                    "windows from a new worker",
                )
            assert delays == ["0.5", "1.0"]  # exponential back-off between crashes in quick succession

            capture = _capture_pid(live, worker_pid(sub))
            assert capture
            n = len(sub.snapshot())
            last_seq = sub.windows()[-1]["frames"]["last_seq"]
            os.kill(capture, signal.SIGKILL)
            restarting = sub.wait(
                lambda m: [s for t, s, _ in m[n:] if t.startswith("mg.status") and s["state"] == "restarting"],
                30,
                "a capture 'restarting' status",
            )[0]
            assert f"capture (pid {capture}) was killed by signal 9" in restarting["message"]
            sub.wait(
                lambda m: (
                    len([1 for t, w, _ in m[n:] if t.startswith("mg.window") and w["frames"]["first_seq"] > last_seq])
                    >= 3
                ),
                60,
                "windows after the capture restart",
            )
            children = live.children()
            assert live.stop() == 0, live.stderr[-3000:]
        messages = sub.snapshot()
    finally:
        sub.close()
    import psutil

    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"orphans: {alive}"
    assert not [s for s in segments if Path("/dev/shm", s).exists()], "shared memory leaked"
    wins = [m for t, m, _ in messages if t.startswith("mg.window")]
    numbers = [w["window"] for w in wins]
    assert numbers == sorted(set(numbers)), "a window number was published twice or out of order"
    runs = _runs(messages)
    assert len(runs) == 3 and all(runs), [len(r) for r in runs]
    for run in runs:
        assert not window_gaps_are_reported(run), window_gaps_are_reported(run)
    gaps = [b[0]["window"] - a[-1]["window"] - 1 - b[0]["skipped"] for a, b in zip(runs, runs[1:])]
    final = [m for t, m, _ in messages if t.startswith("mg.status")][-1]
    assert final["state"] == "stopped" and final["restarts"] == 3
    assert final["windows"] == len(wins)
    assert final["restart_gap"] == sum(gaps) > 0
    reported = sum(r[0]["skipped"] + r[-1]["skipped"] - r[0]["skipped"] for r in runs)
    assert final["skipped"] == reported + sum(gaps)
    assert final["windows"] + final["skipped"] == wins[-1]["window"] - wins[0]["window"] + 1 + wins[0]["skipped"]
    spans = [w["frames"]["max_gap_s"] for w in wins if w["frames"]["first_seq"] <= last_seq < w["frames"]["last_seq"]]
    assert spans and max(spans) >= 0.3  # the windows spanning the capture restart say so


# ------------------------------------------------------------------------------------ sources and pose
def person_keypoints(rng: np.random.Generator, w: int = 160, h: int = 120) -> np.ndarray:
    """One plausible person ``(137, 3)`` in a ``w x h`` frame: body and hands, confidence 0.9."""
    kp = np.zeros((137, 3), np.float32)
    idx = np.r_[0:25, 95:137]
    kp[idx, 0] = rng.uniform(0.3 * w, 0.7 * w, len(idx))
    kp[idx, 1] = rng.uniform(0.2 * h, 0.8 * h, len(idx))
    kp[idx, 2] = 0.9
    return kp


def openpose_doc(kp: np.ndarray) -> Dict[str, Any]:
    return {
        "version": 1.3,
        "people": [
            {
                "pose_keypoints_2d": kp[0:25].ravel().tolist(),
                "face_keypoints_2d": [],
                "hand_left_keypoints_2d": kp[95:116].ravel().tolist(),
                "hand_right_keypoints_2d": kp[116:137].ravel().tolist(),
            }
        ],
    }


def replay_npy(path: Path, frames: int = 32) -> Path:
    rng = np.random.default_rng(1)
    base = person_keypoints(rng)
    np.save(path, np.stack([base + np.float32([0.5 * np.sin(i / 3), 0, 0]) for i in range(frames)]))
    return path


@pytest.mark.slow
def test_pose_backend_that_raises_or_returns_garbage_only_costs_those_frames(checkpoint: Path, tmp_path: Path) -> None:
    """The real replay backend reads OpenPose JSON in which one frame in four is broken: not JSON
    (it raises), NaN coordinates, a negative confidence, a part of the wrong length (it raises).
    Those frames, and only those, count as "no person": every window reports exactly 24 of its
    32 samples with a person, the worker never crashes or restarts. The supervisor is then
    SIGKILLed: its children follow it and the shared-memory ring does not outlive it."""
    import psutil

    folder = tmp_path / "openpose"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = person_keypoints(rng)
    for i in range(64):
        doc = openpose_doc(base + np.float32([np.sin(i / 5), np.cos(i / 5), 0]))
        text = json.dumps(doc)
        if i % 16 == 1:
            text = text[: len(text) // 2]  # truncated: json.loads raises
        elif i % 16 == 5:
            doc["people"][0]["pose_keypoints_2d"][3] = float("nan")  # json.dumps writes NaN, json.loads reads it
            text = json.dumps(doc)
        elif i % 16 == 9:
            doc["people"][0]["pose_keypoints_2d"][5] = -0.4  # a negative confidence
            text = json.dumps(doc)
        elif i % 16 == 13:
            doc["people"][0]["pose_keypoints_2d"] = [1.0] * 10  # 10 values: the backend raises ValueError
            text = json.dumps(doc)
        (folder / f"cam_{i:012d}_keypoints.json").write_text(text)
    ep = endpoint()
    sub = Subscriber(ep)
    args = [
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--pose",
        "replay",
        "--pose-option",
        f"path={folder}",
        "--pose-option",
        "loop=true",
        "--threads",
        "1",
        "--heartbeat",
        "0.5",
        "--no-listen",
        "-q",
    ]
    try:
        with Live(args) as live:
            sub.wait(lambda m: len(sub.windows()) >= 6, 120, "six windows")
            segments = segments_of(live.pid)
            children = live.children()
            assert len(segments) == 1 and len(children) >= 3  # capture, worker, resource tracker
            live.signal(signal.SIGKILL)
            live.wait(10)
            _, alive = psutil.wait_procs(children, timeout=15)
            assert not alive, f"children outlived a SIGKILLed supervisor: {alive}"
            wait_for(lambda: not Path("/dev/shm", segments[0]).exists(), 15, "the ring to be unlinked")
    finally:
        sub.close()
    wins = sub.windows()
    assert [w["person_fraction"] for w in wins] == [0.75] * len(wins)
    assert all(w["person"] and w["answered"] and w["topk"] for w in wins)
    assert all(m["restarts"] == 0 and m["worker"]["alive"] for m in sub.statuses() if m["state"] == "running")
    assert "treated as no person" in live.stderr and "worker crashed" not in live.stderr
    # (the guard logs the first exception with its traceback, for whoever debugs the backend)


@pytest.mark.slow
def test_frames_that_change_size_and_channels_mid_stream_keep_the_pipeline_publishing(
    checkpoint: Path, tmp_path: Path
) -> None:
    """An image-folder source whose frames change size (some larger than the ring: shrunk),
    turn grey, BGRA or 16-bit, with an unreadable file among them, looping: the capture reports
    each format change and converts, the worker keeps publishing windows, and the run ends
    normally at ``--max-windows``."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(48):
        kind = (i // 4) % 6
        if kind == 0:
            img = index_image(i)
        elif kind == 1:
            img = cv2.resize(index_image(i), (320, 240))  # larger than --max-size 200x150: shrunk
        elif kind == 2:
            img = cv2.cvtColor(index_image(i), cv2.COLOR_BGR2GRAY)
        elif kind == 3:
            img = cv2.cvtColor(index_image(i), cv2.COLOR_BGR2BGRA)
        elif kind == 4:
            img = index_image(i).astype(np.uint16) * 257  # 16-bit
        else:
            img = cv2.resize(index_image(i), (96, 72))
        cv2.imwrite(str(folder / f"{i:04d}.png"), img)
    (folder / "0010.png").write_bytes(b"not a png at all")
    ep = endpoint()
    sub = Subscriber(ep)
    args = [
        "--source",
        str(folder),
        "--source-option",
        "loop=true",
        "--source-option",
        "fps=40",
        "--max-size",
        "200x150",
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--pose",
        "replay",
        "--pose-option",
        f"path={replay_npy(tmp_path / 'kp.npy')}",
        "--pose-option",
        "loop=true",
        "--threads",
        "1",
        "--max-windows",
        "8",
        "--no-listen",
        "-q",
    ]
    try:
        with Live(args) as live:
            code = live.wait(180)
    finally:
        sub.close()
    assert code == 0, live.stderr[-3000:]
    assert "--max-windows 8 reached" in live.stderr and "Traceback" not in live.stderr
    assert "frame format changed mid-stream" in live.stderr  # the capture said so
    wins = sub.windows()
    assert len(wins) >= 6 and not window_gaps_are_reported(wins)  # (the subscriber may join a window late)
    final = sub.statuses()[-1]
    assert final["state"] == "stopped" and final["restarts"] == 0 and final["windows"] == 8


@pytest.mark.slow
def test_video_file_deleted_while_looping_ends_the_run_with_one_reason(checkpoint: Path, tmp_path: Path) -> None:
    """A looping video file is deleted while it plays: the open file reads to its end, the reopen
    for the next loop fails, the status topic says ``failed`` and the supervisor exits with status 1
    and the reason, without a traceback or a leaked ring."""
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(40):
        writer.write(index_image(i))
    writer.release()
    ep = endpoint()
    sub = Subscriber(ep)
    args = [
        "--source",
        str(video),
        "--source-option",
        "loop=true",
        "--engine",
        str(checkpoint),
        "--endpoint",
        ep,
        "--pose",
        "replay",
        "--pose-option",
        f"path={replay_npy(tmp_path / 'kp.npy')}",
        "--pose-option",
        "loop=true",
        "--threads",
        "1",
        "--heartbeat",
        "0.5",
        "--no-listen",
        "-q",
    ]
    try:
        with Live(args) as live:
            sub.wait(lambda m: len(sub.windows()) >= 2, 120, "the first windows")
            segments = segments_of(live.pid)
            video.unlink()
            code = live.wait(60)
    finally:
        sub.close()
    assert code == 1, live.stderr[-3000:]
    lines = [line for line in live.stderr.splitlines() if line.startswith("[clipmg-live] cannot read the source")]
    assert len(lines) == 1 and "reopen" in lines[0], live.stderr[-2000:]
    assert "Traceback" not in live.stderr
    final = sub.statuses()[-1]
    assert final["state"] == "failed" and final["source"]["state"] == "failed"
    assert not [s for s in segments if Path("/dev/shm", s).exists()]


def test_window_tally_accounts_for_skips_and_restart_gaps() -> None:
    """The relay's count (pure logic): reported skips within a worker run, and the windows between
    a crashed worker's last window and its successor's first, cover every window number."""
    from clipmg.stream.publisher import WindowTally

    t = WindowTally()
    for w, sk in [(10, 0), (11, 0), (14, 2), (15, 2)]:  # 12, 13 skipped (reported)
        t.update(w, sk)
    t.new_run()  # the worker crashed; its successor's skip counter starts at 0
    for w, sk in [(30, 0), (31, 0), (33, 1)]:  # 16..29 nobody computed; 32 skipped (reported)
        t.update(w, sk)
    assert (t.windows, t.skipped, t.restart_gap) == (7, 3, 14)
    assert t.windows + t.skipped + t.restart_gap == 33 - 10 + 1
