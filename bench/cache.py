"""Benchmark: per-window compute of the live worker (frame + pose-branch caches) against re-encoding all eight frames.

    python -m clipmg.bench.cache --backend onnxruntime --threads 1 --windows 8   # ViT-B/32, S = 8
    python -m clipmg.bench.cache --preset clipmg-tiny --stride 4 --windows 12 --threads 1

Every cached figure is the shipped worker (``stream/worker.py`` ``Worker``), driven one frame at a
time through a real shared-memory ring as a source it keeps up with would drive it
(``bench/drive.py``): the time is what ``Worker.step`` spends between the frames of a window, i.e.
its frame encodings, the pose-branch pieces, the head, the decision and the message. The pose is
the synthetic backend (keypoints travel with the frames): pose costs the same in both paths and is
not what is compared. Same weights, same windows, same preprocessing (crop, resize, normalise):

- worker: the default (each new RGB frame encoded as soon as it is posed, ``--rgb-batch each``) with
  the pose-branch cache where the engine has it;
- worker, ``--rgb-batch window``: a window's ``S/4`` new RGB frames encoded in one call once the last
  of them is posed;
- worker, ``--no-pose-cache``: the frame cache only (the head runs the whole pose branch);
- naive: ``offline_logits``: preprocess and encode all eight RGB frames in one call, then the head.

The workers' logits (``include_logits``) are compared with the naive ones, so no speed-up is
bought with a wrong answer. Timings are medians over the measured windows; the first window
(eight encodings for every path) and ``--warmup`` more are not counted. The three workers and the
naive path take turns window by window, so a change in the machine's speed hits them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from clipmg.engines import load_engine
from clipmg.engines.export import export_onnx
from clipmg.engines.torch_backend import TorchEngine
from clipmg.model import create_model
from clipmg.model.checkpoint import save_checkpoint
from clipmg.model.layouts import extract_layout
from clipmg.model.machine import cpu_line
from clipmg.stream.config import StreamConfig
from clipmg.stream.messages import WindowMessage
from clipmg.stream.window import Schedule, offline_logits

from .drive import DrivenWorker


def _engine(
    preset: str, device: str, seed: int, backend: str, threads: Optional[int], workdir: str, precision: str = "fp32"
) -> Any:
    """The same random weights behind the torch backend, or exported to ONNX and run by ONNX Runtime
    (``precision="int8"``: its dynamically quantised frame encoder, the deployed CPU default)."""
    torch.manual_seed(seed)
    model = create_model(preset, num_classes=32)
    names = [f"class {i}" for i in range(32)]
    if backend == "torch":
        meta = {"config": model.cfg.to_dict(), "class_names": names, "checkpoint_sha256": "random-weights"}
        return TorchEngine(model, meta, device)
    ckpt = save_checkpoint(Path(workdir) / "random.safetensors", model, names)
    export_onnx(ckpt, Path(workdir) / "onnx", int8=precision == "int8", int8_samples=2)
    return load_engine(Path(workdir) / "onnx", warmup=False, threads=threads, precision=precision)


def _stream(n: int, size: int, seed: int) -> tuple:
    """``n`` RGB frames ``(n, size*3/4, size, 3)`` and keypoints ``(n, 137, 3)`` (source pixels)."""
    rng = np.random.default_rng(seed)
    h, w = size * 3 // 4, size
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    base = rng.uniform([0.2 * w, 0.1 * h], [0.8 * w, 0.9 * h], (137, 2))
    drift = np.cumsum(rng.normal(0, 1.0, (n, 137, 2)), axis=0)
    kp = np.concatenate([base + drift, rng.uniform(0.3, 1.0, (n, 137, 1))], axis=-1).astype(np.float32)
    return frames, kp


def run(
    preset: str = "clipmg-vitb32",
    stride: int = 8,
    windows: int = 6,
    warmup: int = 2,
    threads: Optional[int] = None,
    device: str = "cpu",
    frame_size: int = 320,
    seed: int = 0,
    backend: str = "torch",
    precision: str = "fp32",
) -> Dict[str, Any]:
    """Time both paths on ``warmup + windows`` consecutive windows; returns the numbers as a dict."""
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="clipmg-bench-") as workdir:
        if precision != "fp32" and backend != "onnxruntime":
            raise ValueError(f"--precision {precision} needs --backend onnxruntime")
        engine = _engine(preset, device, seed, backend, threads, workdir, precision)
        return _measure(engine, preset, stride, windows, warmup, device, frame_size, seed, backend)


WORKERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("worker", {}),
    ("window", {"rgb_batch": "window"}),
    ("frames_only", {"pose_cache": False}),
)


def _measure(
    engine: Any,
    preset: str,
    stride: int,
    windows: int,
    warmup: int,
    device: str,
    frame_size: int,
    seed: int,
    backend: str,
) -> Dict[str, Any]:
    cfg = engine.config
    sched = Schedule.from_config(cfg.clip, stride, 1)
    total = 1 + warmup + windows
    n = sched.window_end(total - 1) + 1
    frames, kp137 = _stream(n, frame_size, seed)
    kp = extract_layout(kp137, cfg.pose.layout)
    base = StreamConfig(stride=stride, pose_every=1, include_logits=True, threshold=0.0)
    h, w_px = frames.shape[1:3]
    drivers = {name: DrivenWorker(engine, base.replace(**opts), h, w_px) for name, opts in WORKERS}
    times: Dict[str, List[float]] = {name: [] for name in (*drivers, "naive")}
    heads: Dict[str, List[float]] = {name: [] for name in drivers}
    encode_calls: Dict[str, int] = {}
    counted = None
    max_diff = 0.0
    try:
        for win in range(total):
            lo = sched.window_end(win - 1) + 1 if win else 0
            seqs = range(lo, sched.window_end(win) + 1)
            if win == 1 + warmup:
                pc = drivers["worker"].worker.sw.pose_cache
                counted = None if pc is None else list(pc.computed)
                encode_calls = {name: d.worker.sw.encode_calls for name, d in drivers.items()}
            logits: Dict[str, np.ndarray] = {}
            for name, d in drivers.items():
                t0 = time.perf_counter()
                out: List[WindowMessage] = []
                for k in seqs:
                    out += d.feed(frames[k], kp137[k], t_wall=float(k))
                dt = time.perf_counter() - t0
                assert [m.window for m in out] == [win], f"{name}: expected window {win}, got {out}"
                logits[name] = np.asarray(out[0].logits, np.float32)
                if win > warmup:
                    times[name].append(dt)
                    heads[name].append(out[0].latency_ms.head / 1e3)
            pose_seqs, rgb_seqs = sched.window_frames(win)
            t0 = time.perf_counter()
            ref = offline_logits(engine, frames[rgb_seqs], kp[pose_seqs], cfg)  # re-encode all eight
            if win > warmup:
                times["naive"].append(time.perf_counter() - t0)
            max_diff = max(max_diff, *(float(np.abs(x - ref).max()) for x in logits.values()))
        sw = drivers["worker"].worker.sw
        per_window = None
        if counted is not None and sw.pose_cache is not None:  # stage inputs computed a window, on average
            per_window = [round((a - b) / windows, 2) for a, b in zip(sw.pose_cache.computed, counted)]
        calls = {
            name: round((d.worker.sw.encode_calls - encode_calls[name]) / windows, 2) for name, d in drivers.items()
        }
    finally:
        for d in drivers.values():
            d.close()
    med = {name: statistics.median(v) for name, v in times.items()}
    nv = med["naive"]
    ms = lambda x: round(x * 1e3, 1)  # noqa: E731
    return {
        "preset": preset,
        "backend": engine.backend,
        "precision": engine.precision,
        "stride": stride,
        "windows": windows,
        "threads": torch.get_num_threads(),
        "device": device,
        "frame_size": f"{frame_size}x{frame_size * 3 // 4}",
        "encodings_per_window": {
            "cached": stride // cfg.clip.group if stride < cfg.clip.pose_frames else cfg.clip.rgb_frames,
            "naive": cfg.clip.rgb_frames,
        },
        "encoder_calls_per_window": calls,
        "pose_cache": sw.pose_cache is not None,
        "pose_stage_inputs_per_window": per_window,
        "head_ms": ms(statistics.median(heads["worker"])),
        "cached_ms": ms(med["worker"]),
        "naive_ms": ms(nv),
        "speedup": round(nv / med["worker"], 2),
        "cached_frames_only_ms": ms(med["frames_only"]),
        "speedup_frames_only": round(nv / med["frames_only"], 2),
        "head_frames_only_ms": ms(statistics.median(heads["frames_only"])),
        "cached_one_call_ms": ms(med["window"]),
        "speedup_one_call": round(nv / med["window"], 2),
        "cached_ms_all": [ms(x) for x in times["worker"]],
        "cached_one_call_ms_all": [ms(x) for x in times["window"]],
        "naive_ms_all": [ms(x) for x in times["naive"]],
        "cached_frames_only_ms_all": [ms(x) for x in times["frames_only"]],
        "max_abs_logit_diff": max_diff,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipmg.bench.cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="clipmg-vitb32", help="model preset (random weights); default %(default)s")
    ap.add_argument("--stride", type=int, default=8, help="S, pose samples between windows (default %(default)s)")
    ap.add_argument("--windows", type=int, default=6, help="windows measured (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=2, help="windows run first and not counted (default %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    ap.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="engine backend; onnxruntime exports the random weights first (default %(default)s)",
    )
    ap.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="onnxruntime only: int8 runs the dynamically quantised frame encoder (default %(default)s)",
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        r = run(
            args.preset,
            args.stride,
            args.windows,
            args.warmup,
            args.threads,
            args.device,
            backend=args.backend,
            precision=args.precision,
        )
    except ValueError as e:
        print(f"clipmg.bench.cache: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**r, "cpu": cpu_line()}, indent=2))
    else:
        print(
            f"{r['preset']} ({r['backend']}, {r['precision']}), S={r['stride']}, {r['threads']} thread(s) "
            f"on {r['device']}, {cpu_line()}, median of {r['windows']} windows:\n"
            f"  naive  (encode all {r['encodings_per_window']['naive']} frames + head): "
            f"{r['naive_ms']:8.1f} ms/window\n"
            f"  live worker, default (the {r['encodings_per_window']['cached']} new frames in "
            f"{r['encoder_calls_per_window']['worker']:g} call(s)"
            f"{', pose-branch cache' if r['pose_cache'] else ''}): "
            f"{r['cached_ms']:8.1f} ms/window  -> {r['speedup']}x\n"
            f"  live worker, --rgb-batch window ({r['encoder_calls_per_window']['window']:g} call): "
            f"{r['cached_one_call_ms']:8.1f} ms/window  -> {r['speedup_one_call']}x\n"
            f"  of which the head (pose branch, cross-attention, classifier): {r['head_ms']:.1f} ms"
            + (
                f" (skeleton-stage inputs computed a window: {r['pose_stage_inputs_per_window']} of "
                f"{r['encodings_per_window']['naive']} each)"
                if r["pose_stage_inputs_per_window"]
                else ""
            )
            + "\n"
            f"  live worker, --no-pose-cache: {r['cached_frames_only_ms']:8.1f} ms/window  "
            f"-> {r['speedup_frames_only']}x (head {r['head_frames_only_ms']:.1f} ms)\n"
            f"  max |logit difference| against naive: {r['max_abs_logit_diff']:.2e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
