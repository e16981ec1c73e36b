"""Benchmark: per-window compute with the frame cache against re-encoding all eight frames.

    python -m clipmg.stream.bench_cache                       # ViT-B/32 preset, S = 8, random weights
    python -m clipmg.stream.bench_cache --preset clipmg-tiny --stride 4 --windows 12 --threads 1

Both paths run the same weights (torch backend, float32, CPU unless --device) on the same
windows of a synthetic stream, and both include the preprocessing (crop, resize, normalise):

- cached: encode only the ``S/4`` RGB frames the window adds (each once, in one call,
  ``StreamingWindows.add_samples``), run the skeleton encoder's stages only for the inputs the window
  adds (the pose-branch cache, ``model/pose_cache.py``, where the engine has it) and the head on the
  cached tokens;
- cached frames only: the same without the pose-branch cache (the head runs the whole pose branch);
- cached, one at a time: the same, each new frame encoded on its own as it arrives (what a
  worker that keeps up does; batch-1 calls use the CPU less efficiently);
- naive: ``offline_logits``: preprocess and encode all eight RGB frames, then the head.

Pose estimation is the same in both and is not timed. The logits of the two paths are compared
(they must agree) so the speed-up is not bought with a wrong answer. Timings are medians over the
measured windows; the first windows warm the caches up and are not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np


def _engine(preset: str, device: str, seed: int, backend: str, threads: Optional[int], workdir: str,
            precision: str = "fp32") -> Any:
    """The same random weights behind the torch backend, or exported to ONNX and run by ONNX Runtime
    (``precision="int8"``: its dynamically quantised frame encoder, the deployed CPU default)."""
    import torch

    from clipmg.model import create_model

    torch.manual_seed(seed)
    model = create_model(preset, num_classes=32)
    names = [f"class {i}" for i in range(32)]
    if backend == "torch":
        from clipmg.engines.torch_backend import TorchEngine

        meta = {"config": model.cfg.to_dict(), "class_names": names, "checkpoint_sha256": "random-weights"}
        return TorchEngine(model, meta, device)
    from pathlib import Path

    from clipmg.engines import load_engine
    from clipmg.engines.export import export_onnx
    from clipmg.train.checkpoint import save_checkpoint

    ckpt = save_checkpoint(Path(workdir) / "random.safetensors", model, names)
    export_onnx(ckpt, Path(workdir) / "onnx", int8=precision == "int8", int8_samples=2, log=lambda m: None)
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


def run(preset: str = "clipmg-vitb32", stride: int = 8, windows: int = 6, warmup: int = 2, threads: Optional[int] = None,
        device: str = "cpu", frame_size: int = 320, seed: int = 0, backend: str = "torch",
        precision: str = "fp32") -> Dict[str, Any]:
    """Time both paths on ``warmup + windows`` consecutive windows; returns the numbers as a dict."""
    import tempfile

    import torch

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="clipmg-bench-") as workdir:
        if precision != "fp32" and backend != "onnxruntime":
            raise ValueError(f"--precision {precision} needs --backend onnxruntime")
        engine = _engine(preset, device, seed, backend, threads, workdir, precision)
        return _measure(engine, preset, stride, windows, warmup, device, frame_size, seed, backend)


def _measure(engine: Any, preset: str, stride: int, windows: int, warmup: int, device: str, frame_size: int,
             seed: int, backend: str) -> Dict[str, Any]:
    import torch

    from clipmg.model.layouts import extract_layout

    from .window import Sample, Schedule, StreamingWindows, offline_logits

    cfg = engine.config
    sched = Schedule.from_config(cfg.clip, stride, 1)
    total = warmup + windows
    n = sched.window_end(total - 1) + 1
    frames, kp137 = _stream(n, frame_size, seed)
    kp = extract_layout(kp137, cfg.pose.layout)
    batch = StreamingWindows(engine, cfg, sched)  # the window's new RGB frames encoded in one call
    single = StreamingWindows(engine, cfg, sched)  # one frame at a time, as a worker keeping up does
    frames_only = StreamingWindows(engine, cfg, sched, pose_cache=False)  # whole pose branch each window
    first = [Sample(k, frames[k], kp[k], k, 0.0, 0.0, True) for k in range(sched.window_end(0))]
    for sw in (batch, single, frames_only):
        sw.add_samples(first)  # the first window but its last sample
    cached: List[float] = []
    heads: List[float] = []
    incremental: List[float] = []
    plain: List[float] = []
    plain_heads: List[float] = []
    naive: List[float] = []
    counted = None
    max_diff = 0.0
    for w in range(total):
        lo = sched.window_end(w - 1) + 1 if w else sched.window_end(0)
        new = [Sample(k, frames[k], kp[k], k, 0.0, 0.0, True) for k in range(lo, sched.window_end(w) + 1)]
        if w == warmup and batch.pose_cache is not None:
            counted = list(batch.pose_cache.computed)  # stage inputs computed before the measured windows
        t0 = time.perf_counter()
        batch.add_samples(new)  # S/4 of the new samples are RGB samples, encoded once
        t_head = time.perf_counter()
        _, logits = batch.run(w)
        t1 = time.perf_counter()
        for smp in new:
            single.add_samples([smp])
        _, logits1 = single.run(w)
        t2 = time.perf_counter()
        pose_seqs, rgb_seqs = sched.window_frames(w)
        ref = offline_logits(engine, frames[rgb_seqs], kp[pose_seqs], cfg)  # re-encode all eight
        t3 = time.perf_counter()
        frames_only.add_samples(new)
        t_plain_head = time.perf_counter()
        _, logits2 = frames_only.run(w)
        t4 = time.perf_counter()
        if w >= warmup:
            cached.append(t1 - t0)
            heads.append(t1 - t_head)
            incremental.append(t2 - t1)
            naive.append(t3 - t2)
            plain.append(t4 - t3)
            plain_heads.append(t4 - t_plain_head)
        max_diff = max(max_diff, *(float(np.abs(x - ref).max()) for x in (logits, logits1, logits2)))
    c, ci, nv = statistics.median(cached), statistics.median(incremental), statistics.median(naive)
    cp = statistics.median(plain)
    per_window = None
    if counted is not None and batch.pose_cache is not None:  # stage inputs computed a window, on average
        per_window = [round((a - b) / windows, 2) for a, b in zip(batch.pose_cache.computed, counted)]
    return {"preset": preset, "backend": engine.backend, "precision": engine.precision,
            "stride": stride, "windows": windows,
            "threads": torch.get_num_threads(), "device": device, "frame_size": f"{frame_size}x{frame_size * 3 // 4}",
            "encodings_per_window": {"cached": stride // cfg.clip.group if stride < cfg.clip.pose_frames else cfg.clip.rgb_frames,
                                     "naive": cfg.clip.rgb_frames},
            "pose_cache": batch.pose_cache is not None, "pose_stage_inputs_per_window": per_window,
            "head_ms": round(statistics.median(heads) * 1e3, 1),
            "cached_ms": round(c * 1e3, 1), "naive_ms": round(nv * 1e3, 1), "speedup": round(nv / c, 2),
            "cached_frames_only_ms": round(cp * 1e3, 1), "speedup_frames_only": round(nv / cp, 2),
            "head_frames_only_ms": round(statistics.median(plain_heads) * 1e3, 1),
            "cached_one_at_a_time_ms": round(ci * 1e3, 1), "speedup_one_at_a_time": round(nv / ci, 2),
            "cached_ms_all": [round(x * 1e3, 1) for x in cached],
            "cached_one_at_a_time_ms_all": [round(x * 1e3, 1) for x in incremental],
            "naive_ms_all": [round(x * 1e3, 1) for x in naive],
            "cached_frames_only_ms_all": [round(x * 1e3, 1) for x in plain],
            "max_abs_logit_diff": max_diff}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipmg.stream.bench_cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="clipmg-vitb32", help="model preset (random weights); default %(default)s")
    ap.add_argument("--stride", type=int, default=8, help="S, pose samples between windows (default %(default)s)")
    ap.add_argument("--windows", type=int, default=6, help="windows measured (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=2, help="windows run first and not counted (default %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    ap.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                    help="engine backend; onnxruntime exports the random weights first (default %(default)s)")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                    help="onnxruntime only: int8 runs the dynamically quantised frame encoder (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        r = run(args.preset, args.stride, args.windows, args.warmup, args.threads, args.device, backend=args.backend,
                precision=args.precision)
    except ValueError as e:
        print(f"bench_cache: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['preset']} ({r['backend']}, {r['precision']}), S={r['stride']}, {r['threads']} thread(s) on {r['device']}, median of {r['windows']} windows:\n"
              f"  naive  (encode all {r['encodings_per_window']['naive']} frames + head): {r['naive_ms']:8.1f} ms/window\n"
              f"  cached (encode the {r['encodings_per_window']['cached']} new frames in one call"
              f"{', pose-branch cache' if r['pose_cache'] else ''} + head): "
              f"{r['cached_ms']:8.1f} ms/window  -> {r['speedup']}x\n"
              f"  cached, new frames encoded one at a time (a worker keeping up): "
              f"{r['cached_one_at_a_time_ms']:8.1f} ms/window  -> {r['speedup_one_at_a_time']}x\n"
              f"  of which the head (pose branch, cross-attention, classifier): {r['head_ms']:.1f} ms"
              + (f" (skeleton-stage inputs computed a window: {r['pose_stage_inputs_per_window']} of "
                 f"{r['encodings_per_window']['naive']} each)" if r['pose_stage_inputs_per_window'] else "") + "\n"
              f"  cached frames only (whole pose branch every window): {r['cached_frames_only_ms']:8.1f} ms/window  "
              f"-> {r['speedup_frames_only']}x (head {r['head_frames_only_ms']:.1f} ms)\n"
              f"  max |logit difference| against naive: {r['max_abs_logit_diff']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
