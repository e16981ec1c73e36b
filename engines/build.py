"""``clipmg-build SOURCE OUT_DIR``: TensorRT engines for the frame encoder and the window head.

Two routes, one output format (``engines/trt_format.py``), one runtime (``tensorrt_backend``):

- ``--via onnx`` (default): the ONNX export (``clipmg-export``'s directory, or a checkpoint that is
  exported first) parsed by TensorRT's ``OnnxParser`` and built with ``build_serialized_network``.
- ``--via torch-tensorrt``: the checkpoint traced by ``torch_tensorrt.dynamo.trace`` and converted
  with ``convert_exported_program_to_serialized_trt_engine``: a raw TensorRT plan as well, so the
  same runtime loads it. Precision comes from the module's dtype (explicit typing).

Defaults: frame encoder FP16 with an optimisation profile for batch 1..8 (tuned for 1, the
streaming case), window head FP32 for batch 1..4 (the head is a few % of the FLOPs per window and
its keypoint geometry squares pixel distances, which overflow FP16 beyond 256 px), LayerNorm kept in
FP32, a persistent timing cache, a 4 GiB workspace. Each build is checked against a float32
reference before the directory is published.

This module decides what to build (``BuildOptions``, the profiles, the float32 check, the manifest) and
holds the command line; the calls into TensorRT itself are ``engines/trt_build.py``.

Layout of ``OUT_DIR``: ``frame_encoder.engine``, ``window_head.engine``, ``manifest.json``.
Exit codes: 0 built, 1 build or check failed, 2 bad input, 3 no GPU or no TensorRT here.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from clipmg.model import ModelConfig, settings
from clipmg.model.config import ConfigError
from clipmg.model.errors import run_command
from clipmg.model.settings import Range, setting

from .artifacts import (
    ONNX_EXPORT,
    TRT_EXPORT,
    detect_artifact,
    file_entry,
    read_manifest,
    staged_directory,
    verify_files,
    write_manifest,
)
from .base import EngineError
from .cli import Expect, file_errors, one_line
from .export import example_inputs, expected_io, export_onnx, used_head_inputs
from .graphs import FE_OUTPUTS, FRAME_ENCODER, HEAD_OUTPUTS, WINDOW_HEAD, rel_error
from .metadata import artifact_metadata, check_checkpoint, check_expectations, tool_versions
from .onnx_backend import OnnxEngine
from .tensorrt_backend import TensorRTEngine
from .trt_build import (
    BuildFailed,
    EnvironmentMissing,
    Shapes,
    build_plan_from_onnx,
    default_timing_cache,
    describe_plan,
    plan_via_torch_tensorrt,
    torch_tensorrt_version,
)
from .trt_format import current_runtime, write_engine_file

__all__ = [
    "BuildOptions",
    "build_engines",
    "main",
    "BuildFailed",
    "EnvironmentMissing",
    "ENGINE_FILES",
    "PRECISIONS",
    "ROUTES",
]

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "bf16")
ROUTES = ("onnx", "torch-tensorrt")
ENGINE_FILES = {"frame_encoder": "frame_encoder.engine", "window_head": "window_head.engine"}
DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 5e-2}
MAX_BATCH = 1024  # --max-batch, --opt-batch, --max-windows: the largest profile this tool builds


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """How to build; every field is a ``clipmg-build`` flag, declared once (``model/settings.py``): the
    parser and the checks of :meth:`validate` are generated from these declarations."""

    precision: str = setting("fp16", "frame encoder precision (%(default)s)", PRECISIONS)
    head_precision: str = setting("fp32", "window head precision (%(default)s)", PRECISIONS)
    via: str = setting("onnx", "build route (%(default)s)", ROUTES)
    max_batch: int = setting(8, "largest frame batch (%(default)s)", Range(1, MAX_BATCH))  # frame encoder profile
    opt_batch: int = setting(1, "frame batch to tune for (%(default)s)", Range(1, MAX_BATCH))  # TensorRT tunes for it
    max_windows: int = setting(4, "largest window batch (%(default)s)", Range(1, MAX_BATCH))  # window head profile
    workspace_gib: float = setting(4.0, "builder workspace (%(default)s GiB)", Range(0.0, 1024.0, "lo"))
    # None: the default cache file; "" (--no-timing-cache) disables it
    timing_cache: Optional[str] = setting(
        None,
        "timing cache file (default: under ~/.cache/clipmg)",
        also=((("--no-timing-cache",), dict(action="store_true", help="build without a timing cache")),),
    )
    device: int = setting(0, "CUDA device index", Range(0, 63))
    tolerance: Optional[float] = setting(None, "relative error limit of the post-build check", Range(0.0))
    check: bool = setting(
        True, "skip the post-build check against float32", flag="--no-check", action="store_false", dest="check"
    )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "BuildOptions":
        values = settings.values_from_args(cls, args)
        if args.no_timing_cache:
            values["timing_cache"] = ""
        return cls(**values)

    def validate(self) -> None:
        """``ConfigError`` (one sentence naming the flag and its allowed values) for options that cannot work."""
        settings.check_fields(self, terse=True)
        if not self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"need 1 <= opt_batch <= max_batch, got {self.opt_batch} and {self.max_batch}: give "
                f"--opt-batch at most --max-batch"
            )


def _profiles(cfg: Any, head_inputs: List[str], opts: BuildOptions) -> Tuple[Shapes, Shapes]:
    v, c = cfg.vision, cfg.clip
    s, n = v.image_size, 1 + v.num_patches
    fe: Shapes = {"images": ((1, 3, s, s), (opts.opt_batch, 3, s, s), (opts.max_batch, 3, s, s))}
    rest = {
        "tokens": (c.rgb_frames, n, v.width),
        "frame_emb": (c.rgb_frames, v.embed_dim),
        "keypoints": (c.pose_frames, cfg.pose.num_joints, 3),
    }
    head: Shapes = {k: ((1, *rest[k]), (1, *rest[k]), (opts.max_windows, *rest[k])) for k in head_inputs}
    return fe, head


def _header(
    meta: Dict[str, Any], graph: str, precision: str, here: Any, route: str, shapes: Shapes, desc: Dict[str, Any]
) -> Dict[str, Any]:
    return {
        "metadata": meta,
        "graph": graph,
        "precision": precision,
        "built_for": here.as_dict(),
        "built_with": route,
        "profile": {k: [list(x) for x in v] for k, v in shapes.items()},
        "built_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **desc,
    }


def build_from_onnx(onnx_dir: Path, stage: Path, opts: BuildOptions, here: Any) -> Dict[str, Any]:
    """ONNX export directory -> the two engine files in ``stage``; returns the metadata."""
    manifest = read_manifest(onnx_dir, ONNX_EXPORT)
    verify_files(onnx_dir, manifest)
    meta = manifest["metadata"]
    # TensorRT engines are built for the two halves only (the live recognizer runs their whole head);
    # the export's pose-branch graphs are not carried over
    meta = {**meta, "io": {g: meta["io"][g] for g in ("frame_encoder", "window_head")}}
    cfg = ModelConfig.from_dict(meta["config"])
    head_inputs = list(meta["io"]["window_head"]["inputs"])
    fe_shapes, head_shapes = _profiles(cfg, head_inputs, opts)
    cache = _cache_path(opts, here)
    for graph, fname, prec, shapes, outs in (
        ("frame_encoder", FRAME_ENCODER, opts.precision, fe_shapes, list(FE_OUTPUTS)),
        ("window_head", WINDOW_HEAD, opts.head_precision, head_shapes, list(HEAD_OUTPUTS)),
    ):
        t0 = time.perf_counter()
        lo, _, hi = next(iter(shapes.values()))
        log.info(
            f"building the {graph} ({prec}, batch {lo[0]}..{hi[0]}) with TensorRT {here.tensorrt} "
            f"on {here.gpu_name} ..."
        )
        plan = build_plan_from_onnx(onnx_dir / fname, prec, shapes, opts.workspace_gib, cache)
        desc = describe_plan(plan, list(shapes), outs)
        write_engine_file(stage / ENGINE_FILES[graph], plan, _header(meta, graph, prec, here, "onnx", shapes, desc))
        log.info(f"  {graph}: {len(plan) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
    return meta


def head_on_used_inputs(model: Any, used: List[str]) -> Any:
    """An ``nn.Module`` whose forward takes only the head inputs ``used`` (the ONNX exporter drops
    unused graph inputs; the torch-tensorrt route drops them the same way)."""
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            a = dict(zip(used, args))
            tokens = a.get("tokens")
            if tokens is None:  # no_cross_attention reads only the shape of tokens
                tokens = a["frame_emb"].unsqueeze(2)
            return self.model.head(tokens, a.get("frame_emb"), a.get("keypoints"))

    return Head().eval()


def build_via_torch_tensorrt(
    checkpoint: Path, stage: Path, opts: BuildOptions, here: Any, **expect: Any
) -> Tuple[Dict[str, Any], Any]:
    """Checkpoint -> the two engine files in ``stage`` through torch-tensorrt; returns
    ``(metadata, float32 CPU model)``."""
    version = torch_tensorrt_version()  # EnvironmentMissing without torch-tensorrt
    import torch

    model, meta = _load_checkpoint(checkpoint, **expect)
    cfg = model.cfg
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    dev = torch.device("cuda", opts.device)
    used = used_head_inputs(cfg.variant)
    fe_shapes, head_shapes = _profiles(cfg, used, opts)
    cache = _cache_path(opts, here)
    meta = {**meta, "io": expected_io(cfg)}
    for graph, prec, shapes, outs in (
        ("frame_encoder", opts.precision, fe_shapes, ["tokens", "frame_emb"]),
        ("window_head", opts.head_precision, head_shapes, ["logits"]),
    ):
        t0 = time.perf_counter()
        dtype = dtypes[prec]
        m = copy.deepcopy(model).to(dev, dtype).eval()
        fe, _ = m.split()
        module = fe.eval() if graph == "frame_encoder" else head_on_used_inputs(m, used)
        log.info(f"building the {graph} ({prec}) with torch-tensorrt {version} on {here.gpu_name} ...")
        plan = plan_via_torch_tensorrt(module, shapes, dtype, opts.workspace_gib, cache)
        desc = describe_plan(plan, list(shapes), outs)
        write_engine_file(
            stage / ENGINE_FILES[graph], plan, _header(meta, graph, prec, here, "torch-tensorrt", shapes, desc)
        )
        log.info(f"  {graph}: {len(plan) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
        del m
    return meta, model


def _load_checkpoint(checkpoint: Path, **expect: Any) -> Tuple[Any, Dict[str, Any]]:
    from clipmg.model.checkpoint import CheckpointError, file_sha256, load_checkpoint

    try:
        model, ck = load_checkpoint(checkpoint)
    except CheckpointError as e:
        raise EngineError(str(e)) from e
    meta = artifact_metadata(ck, file_sha256(checkpoint), exporter={**tool_versions(), "exporter": "torch-tensorrt"})
    check_expectations(meta, checkpoint, **expect)
    return model.eval(), meta


def _cache_path(opts: BuildOptions, here: Any) -> Path | None:
    if opts.timing_cache == "":
        return None
    return Path(opts.timing_cache) if opts.timing_cache else default_timing_cache(here)


def check_build(stage: Path, reference: Any, opts: BuildOptions, windows: int = 2) -> Dict[str, float]:
    """Run the staged engines against a float32 ``reference`` engine on random windows."""
    trt_engine = TensorRTEngine.load(stage, device=opts.device)
    images, kp = example_inputs(trt_engine.config, windows, seed=3)
    ref, got = reference(images, kp), trt_engine(images, kp)
    b, t = images.shape[:2]
    rx, rc = reference.encode_frames(images.reshape(b * t, *images.shape[2:]))
    gx, gc = trt_engine.encode_frames(images.reshape(b * t, *images.shape[2:]))
    errors = {
        "frame_encoder.tokens": rel_error(gx, rx),
        "frame_encoder.frame_emb": rel_error(gc, rc),
        "composition.logits": rel_error(got, ref),
        "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
    }
    tol = opts.tolerance if opts.tolerance is not None else DEFAULT_TOLERANCE[opts.precision]
    log.info(
        "TensorRT vs float32 reference, relative error: "
        + ", ".join(f"{k} {v:.1e}" for k, v in errors.items() if k != "top1_agreement")
    )
    if not errors["composition.logits"] <= tol:
        raise BuildFailed(
            f"the {opts.precision} engines differ from the float32 reference by "
            f"{errors['composition.logits']:.2e} (relative), above {tol:.0e}; nothing was written. "
            f"Try --precision fp32 or report it"
        )
    return errors


def build_engines(source: str | Path, out_dir: str | Path, opts: BuildOptions = BuildOptions(), **expect: Any) -> Path:
    """Build ``out_dir`` from an ONNX export directory or a checkpoint (see module docstring)."""
    opts.validate()
    kind, src = detect_artifact(Path(source))
    if kind == "tensorrt":
        raise EngineError(f"{src} already holds TensorRT engines; give the ONNX export or the checkpoint")
    if opts.via == "torch-tensorrt" and kind != "checkpoint":
        raise EngineError(f"--via torch-tensorrt builds from the checkpoint (.safetensors), not from {src}")
    if kind == "onnx":  # refuse a mismatch before asking for a GPU
        check_expectations(read_manifest(src)["metadata"], src, **expect)
    else:
        check_checkpoint(src, **expect)
    try:
        here = current_runtime(opts.device)
    except EngineError as e:
        raise EnvironmentMissing(str(e)) from e
    import torch

    with (
        staged_directory(Path(out_dir)) as stage,
        tempfile.TemporaryDirectory() as tmp,
        torch.cuda.device(opts.device),
    ):  # TensorRT builds for the current device
        if opts.via == "torch-tensorrt":
            from .torch_backend import TorchEngine

            meta, model = build_via_torch_tensorrt(src, stage, opts, here, **expect)
            reference: Any = TorchEngine(model, meta)
        else:
            onnx_dir = src
            if kind == "checkpoint":
                onnx_dir = Path(tmp) / "onnx"
                export_onnx(src, onnx_dir, **expect)
            meta = build_from_onnx(onnx_dir, stage, opts, here)
            reference = OnnxEngine.load(onnx_dir, precision="fp32", providers=["CPUExecutionProvider"])
        files = {g: file_entry(stage / f) for g, f in ENGINE_FILES.items()}
        manifest = {
            "format": TRT_EXPORT,
            "files": files,
            "metadata": meta,
            "build": {**asdict(opts), "built_for": here.as_dict()},
            "check": None,
        }
        write_manifest(stage, manifest)
        if opts.check:
            manifest["check"] = {
                "reference": f"{reference.backend} float32",
                "metric": "max|a-b| / max|b|",
                "errors": check_build(stage, reference, opts),
            }
            write_manifest(stage, manifest)
    log.info(f"wrote {out_dir} ({', '.join(ENGINE_FILES.values())}, manifest.json)")
    return Path(out_dir)


def main(argv: List[str] | None = None) -> int:
    """``clipmg-build``: 0 built and checked, 1 the build or its check failed, 2 bad input, 3 no GPU or
    no TensorRT here (one line each)."""
    return run_command("clipmg-build", lambda: _main(argv))


def build_parser() -> argparse.ArgumentParser:
    """``clipmg-build``'s command line: the two paths, then the flags of ``BuildOptions`` and ``Expect``."""
    ap = argparse.ArgumentParser(
        prog="clipmg-build",
        description="Build TensorRT engines (frame encoder + window "
        "head) from a clipmg ONNX export or checkpoint. Needs an NVIDIA GPU and TensorRT.",
    )
    ap.add_argument("source", type=Path, help="ONNX export directory (clipmg-export) or checkpoint .safetensors")
    ap.add_argument("out_dir", type=Path, help="output directory (a previous build there is replaced)")
    settings.add_arguments(ap, BuildOptions)
    settings.add_arguments(ap, Expect)
    return ap


def options_from_args(args: argparse.Namespace) -> Tuple[BuildOptions, Expect]:
    """The checked options of a parsed command line (``ConfigError``: one sentence naming the flag)."""
    opts = BuildOptions.from_args(args)
    opts.validate()
    return opts, Expect.from_args(args)


def _main(argv: List[str] | None) -> int:
    args = build_parser().parse_args(argv)
    opts, expect = options_from_args(args)
    try:
        with file_errors():
            build_engines(args.source, args.out_dir, opts, **expect.as_dict())
    except EnvironmentMissing as e:  # not the input's fault, nor a bug: exit 3 (docs/engines.md)
        print(f"clipmg-build: {one_line(e)}", file=sys.stderr)
        return 3
    except BuildFailed as e:
        print(f"clipmg-build: build failed: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
