"""``python -m clipmg.bench.cuda``: the cuda engine against eager float32 PyTorch on the same GPU.

For each preset (random weights: timings do not depend on them): frame-encoder throughput at each
batch size (frames/s), the per-window latency of ``head`` and ``head_cached`` (ms), each as a ratio to
eager float32, for the cuda engine with CUDA graphs and without them (autocast only); the parity of
both against eager float32 (``cuda_backend.parity``: top-1 agreement and relative logit error over
windows run one at a time), the engines' set-up time and memory, and the GPU. Calls are interleaved
round-robin across engines (``bench.engines.round_robin``); every call returns NumPy, so it ends with
the GPU's work done and the wall-clock time is the call's. Example::

    python -m clipmg.bench.cuda --presets clipmg-vitb32 clipmg-vitb16 --json cuda.json --markdown cuda.md

``--device cpu`` runs the same code without a GPU (eager float32 against the autocast path, no
graphs): a check of the benchmark itself, not a figure to quote.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from clipmg.engines.base import Engine, EngineError
from clipmg.engines.cli import file_errors
from clipmg.engines.cuda_backend import PARITY_TARGETS, CudaEngine, parity
from clipmg.engines.export import example_inputs
from clipmg.engines.torch_backend import TorchEngine, torch_device
from clipmg.model import create_model, list_presets
from clipmg.model.checkpoint import save_checkpoint
from clipmg.model.errors import run_command
from clipmg.model.machine import cpu_line
from clipmg.model.pose_cache import PoseBranchCache
from clipmg.model.settings import (
    Range,
    add_arguments,
    check_fields,
    check_number,
    check_output_files,
    setting,
    values_from_args,
)

from .engines import round_robin

log = logging.getLogger(__name__)
EAGER = "eager fp32"
TARGET_SPEEDUP = 3.0  # the cuda engine's frame encoder at batch 1 against eager float32 (ViT-B/32)


@dataclass(frozen=True)
class CudaBenchOptions:
    """``python -m clipmg.bench.cuda``'s settings: each declared once; its flags and checks are generated."""

    presets: Tuple[str, ...] = setting(("clipmg-vitb32",), "model presets to measure", nargs="+", type=str)
    precision: str = setting("auto", "the cuda engine's frame-encoder precision", ("auto", "bf16", "fp16", "fp32"))
    batches: Tuple[int, ...] = setting((1, 8, 32), "frame-encoder batch sizes (1-1024)", nargs="+", type=int)
    repeats: int = setting(30, "timed calls per engine and measurement, interleaved", Range(1, 100_000))
    windows: int = setting(64, "windows of the parity check, run one at a time", Range(1, 100_000))
    device: str = setting("cuda", "the GPU: cuda or cuda:N (cpu: checks the benchmark itself, no graphs)")
    json: Optional[Path] = setting(None, "also write the raw results to this file", type=Path)
    markdown: Optional[Path] = setting(None, "also write the tables to this file", type=Path)

    def __post_init__(self) -> None:
        check_fields(self, terse=True)
        for b in self.batches:
            check_number("--batches", b, Range(1, 1024), integer=True)
        unknown = [p for p in self.presets if p not in list_presets()]
        if unknown:
            raise EngineError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(list_presets())}")
        check_output_files(("--markdown", self.markdown), ("--json", self.json))


def _times(t: List[float]) -> Dict[str, Any]:
    return {"median_s": float(np.median(t)), "min_s": min(t), "runs": len(t)}


def make_engines(preset: str, workdir: Path, args: CudaBenchOptions) -> Tuple[Dict[str, Engine], Dict[str, Any]]:
    """Eager float32 and the cuda engine with and without graphs (label -> engine), from one random
    checkpoint, and each cuda engine's set-up (time, memory, captured sizes)."""
    torch.manual_seed(0)
    model = create_model(preset, num_classes=32)
    ckpt = save_checkpoint(workdir / f"{preset}.safetensors", model, [f"class{i}" for i in range(32)])
    precision = None if args.precision == "auto" else args.precision
    gpu = torch_device(args.device, engine="cuda").type == "cuda"
    engines: Dict[str, Engine] = {EAGER: TorchEngine.load(ckpt, device=args.device)}
    setup: Dict[str, Any] = {}
    for graphs in (True, False) if gpu else (False,):
        e = CudaEngine.load(ckpt, device=args.device, precision=precision, cuda_graphs=graphs)
        label = f"cuda {e.precision}" + (" graphs" if graphs else " autocast only")
        engines[label] = e
        setup[label] = {
            "setup_s": round(e.setup_s, 3),
            "memory": e.memory,
            "graphs": e.graphs,
            "failed_captures": e.failed_captures,
            "precision": e.precision,
            "head_precision": e.head_precision,
            "cast_weights": e.cast_weights,
        }
    for e in engines.values():
        e.warmup()
    return engines, setup


def bench_preset(preset: str, workdir: Path, args: CudaBenchOptions) -> Dict[str, Any]:
    """Measure one preset: parity, then encoder throughput and head latencies, all engines interleaved."""
    engines, setup = make_engines(preset, workdir, args)
    eager = engines[EAGER]
    cfg = eager.config
    result: Dict[str, Any] = {"preset": preset, "setup": setup, "parity": {}, "encoder": {}, "head": {}}
    for label, e in engines.items():
        if label != EAGER:
            log.info(f"{preset}: parity of {label} on {args.windows} windows ...")
            result["parity"][label] = parity(e, eager, windows=args.windows, seed=1)
    images, kp = example_inputs(cfg, 1)
    frames = images[0]
    for b in sorted(set(args.batches)):
        log.info(f"{preset}: frame encoder, batch {b} ...")
        batch = np.ascontiguousarray(np.resize(frames, (b, *frames.shape[1:])))
        t = round_robin({k: functools.partial(e.encode_frames, batch) for k, e in engines.items()}, args.repeats)
        result["encoder"][b] = {k: _times(v) for k, v in t.items()}
    x, c = eager.encode_frames(frames)
    x, c = x[None], c[None]
    log.info(f"{preset}: window head ...")
    t = round_robin({k: functools.partial(e.head, x, c, kp) for k, e in engines.items()}, args.repeats)
    result["head"]["head"] = {k: _times(v) for k, v in t.items()}
    if eager.pose_cache:
        pre = PoseBranchCache.for_config(eager.pose_partials, cfg).window(0, kp[0])[None]
        calls: Dict[str, Callable[[], Any]] = {
            k: functools.partial(e.head_cached, x, c, kp, pre) for k, e in engines.items()
        }
        result["head"]["head_cached"] = {k: _times(v) for k, v in round_robin(calls, args.repeats).items()}
    return result


def speedup(result: Dict[str, Any], label: str, batch: int = 1) -> float:
    """Eager float32's best time over ``label``'s at frame-encoder batch ``batch``."""
    enc = result["encoder"][batch]
    return float(enc[EAGER]["min_s"] / enc[label]["min_s"])


def render(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    """The results as Markdown: one table per preset (times, ratios to eager float32), parity, set-up."""
    lines = [
        f"Run {meta['date']} on {meta['gpu']} (PyTorch {meta['torch']}, CUDA {meta['cuda']}); host {meta['cpu']}. "
        f"Times: best of {meta['repeats']} interleaved calls; each call returns NumPy (the GPU's work is done).",
        "",
    ]
    for r in results:
        batches = sorted(r["encoder"])
        heads = list(r["head"])
        labels = list(r["encoder"][batches[0]])
        cols = [f"encoder b={b}: frames/s | ×eager" for b in batches] + [f"{h}: ms/window | ×eager" for h in heads]
        lines += [f"### {r['preset']}", "", "| engine | " + " | ".join(cols) + " |", "|" + "---|" * (1 + 2 * len(cols))]
        for k in labels:
            row = [k]
            for b in batches:
                t, te = r["encoder"][b][k]["min_s"], r["encoder"][b][EAGER]["min_s"]
                row += [f"{b / t:.0f}", f"{te / t:.2f}"]
            for h in heads:
                t, te = r["head"][h][k]["min_s"], r["head"][h][EAGER]["min_s"]
                row += [f"{1e3 * t:.2f}", f"{te / t:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        for label, p in r["parity"].items():
            cached = p.get("cached")
            extra = (
                f"; head_cached: top-1 {100 * cached['top1_agreement']:.1f} %, error {cached['rel_error']:.2e}"
                if cached
                else ""
            )
            lines.append(
                f"- parity of {label} against eager float32 ({p['windows']} windows, one at a time): head: top-1 "
                f"{100 * p['top1_agreement']:.1f} %, relative logit error {p['rel_error']:.2e}{extra} "
                f"({'within' if p['ok'] else 'OUTSIDE'} the targets: top-1 >= "
                f"{100 * PARITY_TARGETS['top1_agreement']:.0f} %, error <= {PARITY_TARGETS['rel_error']:g})"
            )
        for label, s in r["setup"].items():
            mib = s["memory"]["reserved_bytes"] / 2**20
            captured = sum(len(v) for v in s["graphs"].values())
            lines.append(
                f"- {label}: set up in {s['setup_s']:.2f} s, {captured} graphs, {mib:.0f} MiB more reserved on the GPU"
                + (f"; FAILED captures: {s['failed_captures']}" if s["failed_captures"] else "")
            )
        graphs = [k for k in labels if k.endswith("graphs")]
        if graphs and 1 in r["encoder"]:
            x = speedup(r, graphs[0])
            lines.append(
                f"- frame encoder at batch 1: {x:.2f}× eager float32 "
                f"({'meets' if x >= TARGET_SPEEDUP else 'misses'} the {TARGET_SPEEDUP:g}× target)"
            )
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m clipmg.bench.cuda", description="The cuda engine against eager float32 PyTorch on one GPU."
    )
    add_arguments(ap, CudaBenchOptions)
    return ap


def main(argv: List[str] | None = None) -> int:
    """0 measured, 2 bad input or no GPU (one line)."""
    return run_command("clipmg-bench-cuda", lambda: _main(argv))


def _main(argv: List[str] | None) -> int:
    values = values_from_args(CudaBenchOptions, build_parser().parse_args(argv))
    kw: Dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    args = CudaBenchOptions(**kw)
    dev = torch_device(args.device, engine="cuda")  # no GPU: one sentence before anything is built
    meta: Dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no GPU (the cpu check)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": cpu_line(),
        "repeats": args.repeats,
        "command": "python -m clipmg.bench.cuda " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    with file_errors(), tempfile.TemporaryDirectory() as tmp:
        results = [bench_preset(p, Path(tmp), args) for p in args.presets]
    text = render(results, meta)
    print(text)
    with file_errors():
        if args.markdown:
            args.markdown.write_text(text + "\n")
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
