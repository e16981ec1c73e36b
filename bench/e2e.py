"""End-to-end benchmark of the live recognizer on this machine (``python -m clipmg.bench.e2e``).

A 640x480, 30 fps video (the synthetic generator's subject, rendered at that size) is played in
real time (paced at its fps) through the real supervisor (``run_live.py``): capture process,
shared-memory ring, MediaPipe pose, the CLIP-MG engine (ONNX Runtime on CPU by default, ViT-B/32
preset with random weights: timings do not depend on the weights) and ZeroMQ. A subscriber in this
process records every window and status message. Reported: sustained input fps, pose samples/s,
windows/s, dropped frames, skipped windows, and the latency from the capture of a window's last
frame to its publication (p50, p99). ``--worker pose-thread one-thread`` runs each Δp with the
worker's pose thread (the default) and without it (pose and engine in turn), interleaved;
``--rgb-batch window each`` runs each Δp with a window's new RGB frames encoded in one call and
one at a time (the worker's default), interleaved. The output names the CPU and its vector extensions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import zmq

from clipmg.bench.procs import RUN_LIVE, free_port
from clipmg.engines.export import export_onnx
from clipmg.model import create_model
from clipmg.model.checkpoint import save_checkpoint
from clipmg.model.machine import cpu_line
from clipmg.model.synthetic import SYNTH_CLASSES, SynthConfig, synthetic_stream
from clipmg.model.synthetic import write_video as _write
from clipmg.stream.messages import StatusMessage, WindowMessage, decode, to_dict


def write_video(path: Path, seconds: float, fps: float = 30.0, width: int = 640, height: int = 480) -> None:
    cfg = SynthConfig(width=width, height=height, fps=fps)
    stream = synthetic_stream(seed=7, config=cfg)
    frames = (next(stream).image for _ in range(int(seconds * fps)))
    _write(path, frames, width, height, fps)


def make_engine(preset: str, workdir: Path, backend: str, int8: bool = False) -> Path:
    ckpt = workdir / f"{preset}.safetensors"
    save_checkpoint(ckpt, create_model(preset, num_classes=len(SYNTH_CLASSES)).eval(), list(SYNTH_CLASSES))
    if backend == "torch":
        return ckpt
    out = workdir / f"{preset}-onnx"
    export_onnx(ckpt, out, int8=int8, int8_samples=2)
    return out


def run(
    video: Path,
    engine: Path,
    seconds: float,
    pose: str,
    pose_every: int,
    stride: int,
    threads: int | None,
    pose_thread: bool = True,
    precision: str = "auto",
    rgb_batch: str = "each",
    pose_workers: int = 1,
) -> Dict[str, Any]:
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        str(RUN_LIVE),
        "--source",
        str(video),
        "--pose",
        pose,
        "--engine",
        str(engine),
        "--pose-every",
        str(pose_every),
        "--stride",
        str(stride),
        "--endpoint",
        endpoint,
        "--duration",
        str(seconds),
        "--no-listen",
        "--no-record",
        "-q",
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += ["--pose-thread" if pose_thread else "--no-pose-thread", "--precision", precision, "--rgb-batch", rgb_batch]
    if pose_thread:
        cmd += ["--pose-workers", str(pose_workers)]
    ctx: Any = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"mg.")
    sub.setsockopt(zmq.RCVTIMEO, 500)
    sub.connect(endpoint)
    windows: List[WindowMessage] = []
    statuses: List[StatusMessage] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + seconds + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                topic, payload = sub.recv_multipart()
            except zmq.Again:
                continue
            msg = decode(payload)
            if isinstance(msg, WindowMessage):
                windows.append(msg)
            elif isinstance(msg, StatusMessage):
                statuses.append(msg)
    finally:
        if proc.poll() is None:
            proc.terminate()
        out = proc.communicate(timeout=60)[0]
        sub.close(linger=0)
    if proc.returncode not in (0, None):
        raise RuntimeError(f"run_live.py exited {proc.returncode}:\n{out[-2000:]}")
    running = [s for s in statuses if s.state == "running"] or statuses
    last = to_dict(running[-1]) if running else {}
    lat = np.array([w.latency_ms.capture_to_publish for w in windows], float)
    lat = lat[np.isfinite(lat)]
    span = (windows[-1].t_publish - windows[0].t_publish) if len(windows) > 1 else float("nan")
    return {
        "seconds": seconds,
        "pose": pose,
        "pose_every": pose_every,
        "stride": stride,
        "worker": "pose-thread" if pose_thread else "one-thread",
        "rgb_batch": rgb_batch,
        "pose_workers": pose_workers if pose_thread else 1,
        "windows_received": len(windows),
        "windows_per_s": (len(windows) - 1) / span if span else 0.0,
        "fps_in": last.get("fps_in"),
        "fps_pose": last.get("fps_pose"),
        "dropped_frames": last.get("dropped_frames"),
        "skipped_windows": last.get("skipped"),
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "stage_ms_last": last.get("latency_ms"),
        "windows_reported": last.get("windows"),
        "dropped_fraction": (last.get("dropped_frames") or 0) / max(1, int(seconds * 30 / pose_every)),
    }


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m clipmg.bench.e2e", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="clipmg-vitb32")
    ap.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the paced run")
    ap.add_argument("--pose", default="mediapipe")
    ap.add_argument("--pose-every", type=int, nargs="+", default=[1, 2], help="Δp values to run")
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--worker",
        nargs="+",
        choices=("pose-thread", "one-thread"),
        default=["pose-thread"],
        help="worker modes to run for each Δp (default: %(default)s)",
    )
    ap.add_argument(
        "--rgb-batch",
        nargs="+",
        choices=("each", "window"),
        default=["each"],
        help="when the worker encodes a window's new RGB frames, for each Δp (default: %(default)s)",
    )
    ap.add_argument(
        "--precision",
        choices=("auto", "fp32", "int8"),
        default="auto",
        help="int8: export the dynamically quantised frame encoder too and run it (random weights "
        "cannot be validated, so auto means float32 here; default %(default)s)",
    )
    ap.add_argument(
        "--pose-workers",
        type=int,
        nargs="+",
        default=[1],
        metavar="N",
        help="pose threads (each with its own backend) to run for each Δp, interleaved (default: [1])",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the test video and the exported engine go (default: a new temporary folder)",
    )
    args = ap.parse_args(argv)
    if args.precision != "auto" and args.backend != "onnxruntime":
        ap.error("--precision needs --backend onnxruntime")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="clipmg-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / "paced-640x480-30fps.mp4"
    if not video.is_file():
        write_video(video, args.seconds + 30)
    engine = make_engine(args.preset, work, args.backend, int8=args.precision == "int8")
    results = [
        run(
            video,
            engine,
            args.seconds,
            args.pose,
            dp,
            args.stride,
            args.threads,
            mode == "pose-thread",
            args.precision,
            batch,
            n,
        )
        for dp in args.pose_every
        for mode in args.worker
        for batch in args.rgb_batch
        for n in (args.pose_workers if mode == "pose-thread" else [1])
    ]
    print(
        json.dumps(
            {
                "preset": args.preset,
                "backend": args.backend,
                "precision": args.precision,
                "cpus": os.cpu_count(),
                "cpu": cpu_line(),
                "runs": results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
