"""``clipmg-bench``: frame-encoder throughput and window-head latency of every available backend
against eager PyTorch in the same run, with achieved GFLOP/s against a measured matmul ceiling.

Random weights (timings do not depend on them). Measurements are interleaved round-robin across
backends (see ``round_robin``), so load from other processes hits every backend alike; the table
reports the best of the interleaved runs (other processes only ever add time; the medians are in
the JSON) and the load average before and after. Example::

    clipmg-bench --presets clipmg-vitb32 clipmg-vitb16 --threads 2 --markdown bench.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from clipmg.engines.base import Engine, EngineError
from clipmg.engines.build import BuildOptions, build_engines
from clipmg.engines.cli import file_errors
from clipmg.engines.cuda_backend import CudaEngine
from clipmg.engines.export import example_inputs, export_onnx
from clipmg.engines.onnx_backend import OnnxEngine
from clipmg.engines.tensorrt_backend import TensorRTEngine
from clipmg.engines.torch_backend import TorchEngine
from clipmg.engines.trt_format import current_runtime
from clipmg.model import create_model, list_presets
from clipmg.model.checkpoint import save_checkpoint
from clipmg.model.errors import run_command
from clipmg.model.profile import split_flops
from clipmg.model.settings import (
    Range,
    add_arguments,
    check_fields,
    check_number,
    check_output_files,
    setting,
    values_from_args,
)

from .flops import matmul_ceiling

log = logging.getLogger(__name__)
BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt", "cuda")

ORT_VARIANTS: Dict[str, Dict[str, Any]] = {  # session settings compared; "threads2-nospin" is clipmg's default
    "ort-defaults": {"threads": None, "allow_spinning": None},  # ORT's own: all graph optimisations,
    # one intra-op thread per physical core, idle threads spin
    "threads2-spin": {"threads": 2, "allow_spinning": True},
    "threads2-nospin": {"threads": 2, "allow_spinning": False},
    "threads2-nospin-basic": {"threads": 2, "allow_spinning": False, "graph_optimization": "basic"},
}


def _median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs)))


def round_robin(calls: Dict[str, Callable[[], Any]], repeats: int, settle: int = 0) -> Dict[str, List[float]]:
    """Seconds per call of each callable: one warm-up call each, then ``repeats`` rounds in which
    every callable runs ``settle`` untimed calls and one timed call, in turn.

    Interleaving spreads other processes' load over all backends alike; ``settle`` keeps the
    previous backend's idle threads (ONNX Runtime's spin for a while after a run) out of short
    timed calls, as in a live process that runs one engine only.
    """
    for fn in calls.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            for _ in range(settle):
                fn()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def make_engines(
    preset: str,
    workdir: Path,
    backends: Sequence[str],
    ort_variants: Sequence[str],
    int8: bool,
    torch_device: str,
) -> Tuple[Dict[str, Engine], List[str], Any]:
    """Engines to compare for ``preset`` (label -> engine), notes on what was not measured, and the
    PyTorch model."""
    model = create_model(preset, num_classes=32).eval()
    ckpt = save_checkpoint(workdir / f"{preset}.safetensors", model, [f"class{i}" for i in range(32)])
    engines: Dict[str, Engine] = {}
    notes: List[str] = []
    engines[f"torch eager ({torch_device})"] = TorchEngine.load(ckpt, device=torch_device)
    if "onnxruntime" in backends:
        onnx_dir = workdir / f"{preset}-onnx"
        export_onnx(ckpt, onnx_dir, int8=int8, int8_samples=2)  # speed only: accuracy is not measured here
        for v in ort_variants:
            engines[f"onnxruntime {v}"] = OnnxEngine.load(
                onnx_dir, precision="fp32", providers=["CPUExecutionProvider"], **ORT_VARIANTS[v]
            )
        if int8:
            engines["onnxruntime int8 threads2-nospin"] = OnnxEngine.load(
                onnx_dir, precision="int8", threads=2, providers=["CPUExecutionProvider"]
            )
    if "tensorrt" in backends:
        try:
            current_runtime()
        except EngineError as e:
            notes.append(f"tensorrt: not measured: {e}")
        else:
            build_engines(ckpt, workdir / f"{preset}-trt", BuildOptions())
            engines["tensorrt fp16"] = TensorRTEngine.load(workdir / f"{preset}-trt")
    if "cuda" in backends:  # autocast + CUDA graphs (bench/cuda.py measures it in more detail)
        if torch_device.startswith("cuda"):
            cuda = CudaEngine.load(ckpt, device=torch_device)
            engines[f"cuda {cuda.precision} graphs"] = cuda
        else:
            notes.append("cuda: not measured: the cuda engine needs --torch-device cuda")
    return engines, notes, model


def bench_preset(
    preset: str,
    workdir: Path,
    backends: Sequence[str],
    ort_variants: Sequence[str],
    batches: Sequence[int],
    repeats: int,
    int8: bool,
    torch_device: str,
) -> Dict[str, Any]:
    """Measure one preset; returns FLOPs, per-backend timings and notes."""
    engines, notes, model = make_engines(preset, workdir, backends, ort_variants, int8, torch_device)
    flops = split_flops(model)
    cfg = model.cfg
    images, kp = example_inputs(cfg, 1)
    frames = images[0]  # (T_r, 3, S, S)
    ref = next(iter(engines.values()))
    tokens, emb = ref.encode_frames(frames)
    tokens, emb = tokens[None], emb[None]
    result: Dict[str, Any] = {"preset": preset, "flops": flops, "notes": notes, "encoder": {}, "head": {}}
    for b in batches:
        log.info(f"{preset}: frame encoder, batch {b} ...")
        batch = np.ascontiguousarray(np.resize(frames, (b, *frames.shape[1:])))
        reps, settle = (repeats, 0) if b > 1 else (3 * repeats, 1)
        t = round_robin({k: functools.partial(e.encode_frames, batch) for k, e in engines.items()}, reps, settle)
        result["encoder"][b] = {k: {"median_s": _median(v), "min_s": min(v), "runs": len(v)} for k, v in t.items()}
    log.info(f"{preset}: window head ...")
    t = round_robin({k: functools.partial(e.head, tokens, emb, kp) for k, e in engines.items()}, 3 * repeats, 1)
    result["head"] = {k: {"median_s": _median(v), "min_s": min(v), "runs": len(v)} for k, v in t.items()}
    return result


def render(results: List[Dict[str, Any]], ceiling: Dict[str, float], meta: Dict[str, Any]) -> str:
    """The results as Markdown: one table per preset, times, ratios to eager, GFLOP/s."""
    peak = ceiling["best_gflops"]
    load = meta.get("loadavg", {})
    lines = [
        f"Run {meta['date']} on {meta['machine']}, {meta['cpus']} CPUs; PyTorch threads {meta['threads']}; "
        f"load average (1 min) {load.get('before', '?')} before, {load.get('after', '?')} after. "
        f"2048² float32 matmul ceiling: {peak:.0f} GFLOP/s best, {ceiling['median_gflops']:.0f} median "
        f"(measured before, between and after the presets; best kept). Times: best of the interleaved "
        f"runs.",
        "",
    ]
    for r in results:
        fl = r["flops"]
        lines += [
            f"### {r['preset']}",
            "",
            f"FLOPs: frame encoder {fl['frame_encoder_per_frame'] / 1e9:.2f} GFLOP per frame; "
            f"window head {fl['window_head_per_window'] / 1e9:.2f} GFLOP per window.",
            "",
        ]
        batches = sorted(r["encoder"])
        head = (
            "| backend | "
            + " | ".join(f"encoder b={b}: ms/frame (frames/s) | ×eager | GFLOP/s (% ceiling)" for b in batches)
            + " | head: ms/window | ×eager |"
        )
        lines += [head, "|" + "---|" * (1 + 3 * len(batches) + 2)]
        eager = next(iter(r["head"]))
        for k in r["head"]:
            row = [k]
            for b in batches:
                t = r["encoder"][b][k]["min_s"]
                te = r["encoder"][b][eager]["min_s"]
                gf = fl["frame_encoder_per_frame"] * b / t / 1e9
                # the ceiling is the CPU's: a GPU row shows its GFLOP/s alone
                share = "" if "cuda" in k else f" ({100 * gf / peak:.0f} %)"
                row += [f"{1e3 * t / b:.1f} ({b / t:.1f})", f"{te / t:.2f}", f"{gf:.0f}{share}"]
            th, the = r["head"][k]["min_s"], r["head"][eager]["min_s"]
            row += [f"{1e3 * th:.1f}", f"{the / th:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
        lines += [""] + [f"- {n}" for n in r["notes"]] + ([""] if r["notes"] else [])
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    """``clipmg-bench``: 0 measured, 2 bad input (one line)."""
    return run_command("clipmg-bench", lambda: _main(argv))


@dataclass(frozen=True)
class BenchOptions:
    """``clipmg-bench``'s settings: each declared once; its flags and checks are generated."""

    presets: Tuple[str, ...] = setting(
        ("clipmg-vitb32", "clipmg-vitb16"), "model presets to measure", nargs="+", type=str
    )
    backends: Tuple[str, ...] = setting(
        ("torch", "onnxruntime", "tensorrt"),
        "backends to compare; eager torch is always measured",
        nargs="+",
        type=str,
        choices=BACKEND_NAMES,
    )
    ort_variants: Tuple[str, ...] = setting(
        tuple(ORT_VARIANTS), "ONNX Runtime session settings to compare", nargs="+", type=str, choices=list(ORT_VARIANTS)
    )
    batches: Tuple[int, ...] = setting((1, 8), "frame-encoder batch sizes (1-1024)", nargs="+", type=int)
    repeats: int = setting(3, "rounds at the largest batch (3x for batch 1 and the head)", Range(1, 10_000))
    threads: int = setting(2, "PyTorch intra-op threads", Range(1, 1024))
    torch_device: str = setting("cpu", "device of the eager PyTorch baseline: cpu, cuda or cuda:N")
    int8: bool = setting(False, "also measure the ONNX Runtime int8 frame encoder")
    workdir: Optional[Path] = setting(
        None, "where checkpoints and exports go (default: a temporary directory)", type=Path
    )
    markdown: Optional[Path] = setting(None, "also write the tables to this file", type=Path)
    json: Optional[Path] = setting(None, "also write the raw results to this file", type=Path)

    def __post_init__(self) -> None:
        check_fields(self, terse=True)
        for b in self.batches:
            check_number("--batches", b, Range(1, 1024), integer=True)
        if self.torch_device != "cpu" and not self.torch_device.startswith("cuda"):
            raise EngineError(f"--torch-device {self.torch_device!r} is not allowed: give cpu, cuda or cuda:N")
        check_output_files(("--markdown", self.markdown), ("--json", self.json))
        unknown = [p for p in self.presets if p not in list_presets()]
        if unknown:
            raise EngineError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(list_presets())}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipmg-bench", description="Benchmark clipmg engines against eager PyTorch.")
    add_arguments(ap, BenchOptions)
    return ap


def _main(argv: List[str] | None) -> int:
    values = values_from_args(BenchOptions, build_parser().parse_args(argv))
    kw: Dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    args = BenchOptions(**kw)
    torch.set_num_threads(args.threads)
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    meta: Dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": machine,
        "cpus": os.cpu_count(),
        "loadavg": {"before": round(os.getloadavg()[0], 1)},
        "threads": args.threads,
        "command": "clipmg-bench " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    with file_errors(), tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ceilings, results = [matmul_ceiling()], []
        for p in args.presets:  # the ceiling is measured between presets too: the best one is kept
            results.append(
                bench_preset(
                    p,
                    workdir,
                    args.backends,
                    args.ort_variants,
                    sorted(set(args.batches)),
                    args.repeats,
                    args.int8,
                    args.torch_device,
                )
            )
            ceilings.append(matmul_ceiling())
    meta["loadavg"]["after"] = round(os.getloadavg()[0], 1)
    ceiling = {k: max(c[k] for c in ceilings) for k in ceilings[0]}
    text = render(results, ceiling, meta)
    print(text)
    with file_errors():
        if args.markdown:
            args.markdown.write_text(text + "\n")
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "ceiling": ceilings, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
