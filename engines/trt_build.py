"""The TensorRT glue of ``clipmg-build``: everything that calls the ``tensorrt`` (or ``torch_tensorrt``) API.

``build_plan_from_onnx`` parses an ONNX graph, sets the precision flags, one optimisation profile and
the timing cache, and returns a serialized plan; ``plan_via_torch_tensorrt`` does the same from a
PyTorch module through torch-tensorrt; ``describe_plan`` reads a plan's tensors back. What to build,
the manifests and the command line are ``engines/build.py``; ``tensorrt`` is imported inside the
functions, so importing this module needs neither TensorRT nor a GPU.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from clipmg.model.files import atomic_write_bytes

from .base import EngineError
from .export import mha_fastpath_disabled

log = logging.getLogger(__name__)

Shapes = Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]  # input -> (min, opt, max)


class EnvironmentMissing(EngineError):
    """No GPU or no TensorRT (or torch-tensorrt) on this machine."""


class BuildFailed(EngineError):
    """TensorRT could not parse or build the model, or the built engines failed the check."""


def default_timing_cache(here: Any) -> Path:
    """Per TensorRT version and GPU, under ``$XDG_CACHE_HOME/clipmg`` (a cache from another GPU is useless)."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipmg"
    gpu = "".join(ch if ch.isalnum() else "-" for ch in here.gpu_name)
    return root / f"trt-{here.tensorrt}-{gpu}-sm{''.join(map(str, here.compute_capability))}.timing-cache"


def _progress_monitor(trt: Any) -> Any:
    """A ``trt.IProgressMonitor`` that logs the builder's top two levels of phases with timings."""

    class Progress(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth: Dict[str, int] = {}
            self.t0: Dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            d = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name], self.t0[phase_name] = d, time.perf_counter()
            if d < 2:
                log.info(f"  {'  ' * d}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            if self.depth.get(phase_name, 9) < 2:
                log.info(
                    f"  {'  ' * self.depth[phase_name]}{phase_name}: done in "
                    f"{time.perf_counter() - self.t0[phase_name]:.1f} s"
                )

    return Progress()


def _set_precision(trt: Any, config: Any, network: Any, precision: str) -> None:
    """Builder flags for ``precision``; LayerNorm (INormalizationLayer, opset 17) pinned to FP32."""
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 matmuls
        return
    flag = {"fp16": "FP16", "bf16": "BF16"}[precision]
    if not hasattr(trt.BuilderFlag, flag):
        raise EngineError(
            f"TensorRT {trt.__version__} has no {flag} builder flag (weakly typed precision was removed "
            f"in TensorRT 11); build with --via torch-tensorrt (half-precision model) or TensorRT 10"
        )
    config.set_flag(getattr(trt.BuilderFlag, flag))
    if hasattr(trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS"):
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                layer.set_output_type(0, trt.float32)


def _load_cache(path: Path | None) -> bytes:
    return path.read_bytes() if path is not None and path.is_file() else b""


def _save_cache(path: Path | None, data: bytes) -> None:
    if path is None or not data:
        return
    atomic_write_bytes(path, data)
    log.info(f"  timing cache saved to {path}")


def build_plan_from_onnx(
    onnx_path: Path, precision: str, shapes: Shapes, workspace_gib: float, timing_cache: Path | None
) -> bytes:
    """Parse ``onnx_path`` and build a serialized plan with one optimisation profile ``shapes``
    (``{input: (min, opt, max)}``; inputs the graph dropped are ignored)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildFailed(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    _set_precision(trt, config, network, precision)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        lo, opt, hi = shapes[name]
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(_load_cache(timing_cache))
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.info("  the timing cache does not fit this GPU/TensorRT; starting a fresh one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    monitor = _progress_monitor(trt) if hasattr(trt, "IProgressMonitor") else None
    if monitor is not None:
        config.progress_monitor = monitor
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildFailed(
            f"TensorRT could not build an engine from {onnx_path} (see its log above); try a larger "
            f"--workspace-gib or --precision fp32"
        )
    _save_cache(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def describe_plan(plan: bytes, roles_in: List[str], roles_out: List[str]) -> Dict[str, Any]:
    """Deserialize ``plan`` and return its tensors plus the role -> tensor-name map (inputs and
    outputs in the engine's order paired with ``roles_in`` / ``roles_out``)."""
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    if engine is None:
        raise BuildFailed("TensorRT cannot deserialize the plan it just built (see its log above)")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outs = [n for n in names if n not in ins]
    if len(ins) != len(roles_in) or len(outs) != len(roles_out):
        raise BuildFailed(f"the built engine has inputs {ins} and outputs {outs}; expected {roles_in} -> {roles_out}")

    def pair(roles: List[str], tensors: List[str]) -> Dict[str, str]:
        # ONNX route: the tensor names are the roles; torch-tensorrt: positional (output0, ...)
        return {r: r for r in roles} if set(roles) == set(tensors) else dict(zip(roles, tensors))

    tensors = [
        {
            "name": n,
            "mode": "input" if n in ins else "output",
            "dtype": str(engine.get_tensor_dtype(n)),
            "shape": list(engine.get_tensor_shape(n)),
        }
        for n in names
    ]
    return {"io": {"inputs": pair(roles_in, ins), "outputs": pair(roles_out, outs)}, "tensors": tensors}


def torch_tensorrt_version() -> str:
    """The installed torch-tensorrt's version; ``EnvironmentMissing`` when there is none."""
    try:
        import torch_tensorrt
    except ImportError as e:
        raise EnvironmentMissing(
            "torch-tensorrt is not installed (pip install 'clipmg[gpu]'); build with --via onnx instead"
        ) from e
    return str(torch_tensorrt.__version__)


def plan_via_torch_tensorrt(module: Any, shapes: Shapes, dtype: Any, workspace_gib: float, cache: Path | None) -> bytes:
    """Trace ``module`` (on the GPU, in ``dtype``) and convert it to a serialized plan with one
    optimisation profile ``shapes`` (its forward's arguments in order)."""
    import torch
    import torch_tensorrt

    inputs = [
        torch_tensorrt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=dtype) for lo, opt, hi in shapes.values()
    ]
    with torch.no_grad(), mha_fastpath_disabled():
        exported = torch_tensorrt.dynamo.trace(module, arg_inputs=inputs)
        kwargs: Dict[str, Any] = {
            "arg_inputs": inputs,
            "workspace_size": int(workspace_gib * (1 << 30)),
            "disable_tf32": dtype == torch.float32,
        }
        if cache is not None:
            kwargs["timing_cache_path"] = str(cache)
        convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
        try:  # explicit typing: the module's dtype is the precision (torch-tensorrt >= 2.6 default)
            plan = convert(exported, use_explicit_typing=True, **kwargs)
        except TypeError:
            plan = convert(exported, enabled_precisions={dtype}, **kwargs)
    return bytes(plan)
