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

Layout of ``OUT_DIR``: ``frame_encoder.engine``, ``window_head.engine``, ``manifest.json``.
Exit codes: 0 built, 1 build or check failed, 2 bad input, 3 no GPU or no TensorRT here.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple


from clipmg.model.errors import run_command
from clipmg.model.files import atomic_write_bytes

from .base import EngineError
from .cli import Log, check_flag, file_errors, one_line, stderr as _stderr

PRECISIONS = ("fp16", "fp32", "bf16")
ROUTES = ("onnx", "torch-tensorrt")
ENGINE_FILES = {"frame_encoder": "frame_encoder.engine", "window_head": "window_head.engine"}
DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 5e-2}
MAX_BATCH = 1024  # --max-batch, --opt-batch, --max-windows: the largest profile this tool builds
Shapes = Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]


class EnvironmentMissing(EngineError):
    """No GPU or no TensorRT (or torch-tensorrt) on this machine."""


class BuildFailed(EngineError):
    """TensorRT could not parse or build the model, or the built engines failed the check."""


@dataclass(frozen=True)
class BuildOptions:
    """How to build; every field is a CLI flag of the same name."""

    precision: str = "fp16"  # frame encoder: fp16 | fp32 | bf16
    head_precision: str = "fp32"  # window head: fp32 | fp16 | bf16
    via: str = "onnx"  # onnx | torch-tensorrt
    max_batch: int = 8  # frame encoder profile: frames per call, 1..max_batch
    opt_batch: int = 1  # the batch TensorRT tunes its tactics for
    max_windows: int = 4  # window head profile: windows per call, 1..max_windows
    workspace_gib: float = 4.0  # builder workspace limit
    timing_cache: str | None = None  # path; None: the default cache file; "" disables
    device: int = 0  # CUDA device index
    check: bool = True  # compare the built engines with a float32 reference before publishing
    tolerance: float | None = None  # relative error limit of the check (default by precision)

    def validate(self) -> None:
        """``EngineError`` (one sentence naming the allowed values) for options that cannot work."""
        if self.precision not in PRECISIONS or self.head_precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.via not in ROUTES:
            raise EngineError(f"--via must be one of {', '.join(ROUTES)}, got {self.via!r}")
        check_flag("--max-batch", self.max_batch, 1, MAX_BATCH, integer=True)
        check_flag("--opt-batch", self.opt_batch, 1, MAX_BATCH, integer=True)
        if not self.opt_batch <= self.max_batch:
            raise EngineError(f"need 1 <= opt_batch <= max_batch, got {self.opt_batch} and {self.max_batch}")
        check_flag("--max-windows", self.max_windows, 1, MAX_BATCH, integer=True)
        check_flag("--workspace-gib", self.workspace_gib, 0.0, 1024.0, above=True)
        check_flag("--device", self.device, 0, 63, integer=True)
        check_flag("--tolerance", self.tolerance, 0.0)


def default_timing_cache(here: Any) -> Path:
    """Per TensorRT version and GPU, under ``$XDG_CACHE_HOME/clipmg`` (a cache from another GPU is useless)."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipmg"
    gpu = "".join(ch if ch.isalnum() else "-" for ch in here.gpu_name)
    return root / f"trt-{here.tensorrt}-{gpu}-sm{''.join(map(str, here.compute_capability))}.timing-cache"


def _progress_monitor(trt: Any, log: Log) -> Any:
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
                log(f"  {'  ' * d}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            if self.depth.get(phase_name, 9) < 2:
                log(f"  {'  ' * self.depth[phase_name]}{phase_name}: done in "
                    f"{time.perf_counter() - self.t0[phase_name]:.1f} s")

    return Progress()


def _set_precision(trt: Any, config: Any, network: Any, precision: str) -> None:
    """Builder flags for ``precision``; LayerNorm (INormalizationLayer, opset 17) pinned to FP32."""
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 matmuls
        return
    flag = {"fp16": "FP16", "bf16": "BF16"}[precision]
    if not hasattr(trt.BuilderFlag, flag):
        raise EngineError(f"TensorRT {trt.__version__} has no {flag} builder flag (weakly typed precision was removed "
                          f"in TensorRT 11); build with --via torch-tensorrt (half-precision model) or TensorRT 10")
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


def _save_cache(path: Path | None, data: bytes, log: Log) -> None:
    if path is None or not data:
        return
    atomic_write_bytes(path, data)
    log(f"  timing cache saved to {path}")


def build_plan_from_onnx(onnx_path: Path, precision: str, shapes: Shapes, workspace_gib: float,
                         timing_cache: Path | None, log: Log = _stderr) -> bytes:
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
        log("  the timing cache does not fit this GPU/TensorRT; starting a fresh one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    monitor = _progress_monitor(trt, log) if hasattr(trt, "IProgressMonitor") else None
    if monitor is not None:
        config.progress_monitor = monitor
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildFailed(f"TensorRT could not build an engine from {onnx_path} (see its log above); try a larger "
                          f"--workspace-gib or --precision fp32")
    _save_cache(timing_cache, bytes(config.get_timing_cache().serialize()), log)
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

    tensors = [{"name": n, "mode": "input" if n in ins else "output", "dtype": str(engine.get_tensor_dtype(n)),
                "shape": list(engine.get_tensor_shape(n))} for n in names]
    return {"io": {"inputs": pair(roles_in, ins), "outputs": pair(roles_out, outs)}, "tensors": tensors}


def _profiles(cfg: Any, head_inputs: List[str], opts: BuildOptions) -> Tuple[Shapes, Shapes]:
    v, c = cfg.vision, cfg.clip
    s, n = v.image_size, 1 + v.num_patches
    fe = {"images": ((1, 3, s, s), (opts.opt_batch, 3, s, s), (opts.max_batch, 3, s, s))}
    rest = {"tokens": (c.rgb_frames, n, v.width), "frame_emb": (c.rgb_frames, v.embed_dim),
            "keypoints": (c.pose_frames, cfg.pose.num_joints, 3)}
    head = {k: ((1, *rest[k]), (1, *rest[k]), (opts.max_windows, *rest[k])) for k in head_inputs}
    return fe, head


def _header(meta: Dict[str, Any], graph: str, precision: str, here: Any, route: str, shapes: Shapes,
            desc: Dict[str, Any]) -> Dict[str, Any]:
    import datetime as dt

    return {"metadata": meta, "graph": graph, "precision": precision, "built_for": here.as_dict(),
            "built_with": route, "profile": {k: [list(x) for x in v] for k, v in shapes.items()},
            "built_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **desc}


def build_from_onnx(onnx_dir: Path, stage: Path, opts: BuildOptions, here: Any, log: Log) -> Dict[str, Any]:
    """ONNX export directory -> the two engine files in ``stage``; returns the metadata."""
    from clipmg.model import ModelConfig

    from .artifacts import ONNX_EXPORT, read_manifest, verify_files
    from .export import FE_OUTPUTS, FRAME_ENCODER, HEAD_OUTPUTS, WINDOW_HEAD
    from .trt_format import write_engine_file

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
            ("window_head", WINDOW_HEAD, opts.head_precision, head_shapes, list(HEAD_OUTPUTS))):
        t0 = time.perf_counter()
        lo, _, hi = next(iter(shapes.values()))
        log(f"building the {graph} ({prec}, batch {lo[0]}..{hi[0]}) with TensorRT {here.tensorrt} "
            f"on {here.gpu_name} ...")
        plan = build_plan_from_onnx(onnx_dir / fname, prec, shapes, opts.workspace_gib, cache, log)
        desc = describe_plan(plan, list(shapes), outs)
        write_engine_file(stage / ENGINE_FILES[graph], plan, _header(meta, graph, prec, here, "onnx", shapes, desc))
        log(f"  {graph}: {len(plan) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
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


def _torch_tensorrt_plan(module: Any, inputs: List[Any], dtype: Any, opts: BuildOptions, cache: Path | None) -> bytes:
    import torch
    import torch_tensorrt

    from .export import mha_fastpath_disabled

    with torch.no_grad(), mha_fastpath_disabled():
        exported = torch_tensorrt.dynamo.trace(module, arg_inputs=inputs)
        kwargs: Dict[str, Any] = {"arg_inputs": inputs, "workspace_size": int(opts.workspace_gib * (1 << 30)),
                                  "disable_tf32": dtype == torch.float32}
        if cache is not None:
            kwargs["timing_cache_path"] = str(cache)
        convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
        try:  # explicit typing: the module's dtype is the precision (torch-tensorrt >= 2.6 default)
            plan = convert(exported, use_explicit_typing=True, **kwargs)
        except TypeError:
            plan = convert(exported, enabled_precisions={dtype}, **kwargs)
    return bytes(plan)


def build_via_torch_tensorrt(checkpoint: Path, stage: Path, opts: BuildOptions, here: Any, log: Log,
                             **expect: Any) -> Tuple[Dict[str, Any], Any]:
    """Checkpoint -> the two engine files in ``stage`` through torch-tensorrt; returns
    ``(metadata, float32 CPU model)``."""
    try:
        import torch_tensorrt
    except ImportError as e:
        raise EnvironmentMissing("torch-tensorrt is not installed (pip install 'clipmg[gpu]'); build with "
                                 "--via onnx instead") from e
    import torch

    from .export import expected_io, used_head_inputs
    from .trt_format import write_engine_file

    model, meta = _load_checkpoint(checkpoint, **expect)
    cfg = model.cfg
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    dev = torch.device("cuda", opts.device)
    used = used_head_inputs(cfg.variant)
    fe_shapes, head_shapes = _profiles(cfg, used, opts)
    cache = _cache_path(opts, here)
    meta = {**meta, "io": expected_io(cfg)}
    for graph, prec, shapes, outs in (("frame_encoder", opts.precision, fe_shapes, ["tokens", "frame_emb"]),
                                      ("window_head", opts.head_precision, head_shapes, ["logits"])):
        t0 = time.perf_counter()
        dtype = dtypes[prec]
        m = copy.deepcopy(model).to(dev, dtype).eval()
        fe, _ = m.split()
        module = fe.eval() if graph == "frame_encoder" else head_on_used_inputs(m, used)
        inputs = [torch_tensorrt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=dtype)
                  for lo, opt, hi in shapes.values()]
        log(f"building the {graph} ({prec}) with torch-tensorrt {torch_tensorrt.__version__} on {here.gpu_name} ...")
        plan = _torch_tensorrt_plan(module, inputs, dtype, opts, cache)
        desc = describe_plan(plan, list(shapes), outs)
        write_engine_file(stage / ENGINE_FILES[graph], plan,
                          _header(meta, graph, prec, here, "torch-tensorrt", shapes, desc))
        log(f"  {graph}: {len(plan) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
        del m
    return meta, model


def _load_checkpoint(checkpoint: Path, **expect: Any) -> Tuple[Any, Dict[str, Any]]:
    from clipmg.model.checkpoint import CheckpointError, file_sha256, load_checkpoint

    from .metadata import artifact_metadata, check_expectations, tool_versions

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


def check_build(stage: Path, reference: Any, opts: BuildOptions, log: Log, windows: int = 2) -> Dict[str, float]:
    """Run the staged engines against a float32 ``reference`` engine on random windows."""
    from .export import example_inputs, rel_error
    from .tensorrt_backend import TensorRTEngine

    trt_engine = TensorRTEngine.load(stage, device=opts.device)
    images, kp = example_inputs(trt_engine.config, windows, seed=3)
    ref, got = reference(images, kp), trt_engine(images, kp)
    b, t = images.shape[:2]
    rx, rc = reference.encode_frames(images.reshape(b * t, *images.shape[2:]))
    gx, gc = trt_engine.encode_frames(images.reshape(b * t, *images.shape[2:]))
    errors = {"frame_encoder.tokens": rel_error(gx, rx), "frame_encoder.frame_emb": rel_error(gc, rc),
              "composition.logits": rel_error(got, ref),
              "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean())}
    tol = opts.tolerance if opts.tolerance is not None else DEFAULT_TOLERANCE[opts.precision]
    log("TensorRT vs float32 reference, relative error: "
        + ", ".join(f"{k} {v:.1e}" for k, v in errors.items() if k != "top1_agreement"))
    if not errors["composition.logits"] <= tol:
        raise BuildFailed(f"the {opts.precision} engines differ from the float32 reference by "
                          f"{errors['composition.logits']:.2e} (relative), above {tol:.0e}; nothing was written. "
                          f"Try --precision fp32 or report it")
    return errors


def build_engines(source: str | Path, out_dir: str | Path, opts: BuildOptions = BuildOptions(),
                  log: Log = _stderr, **expect: Any) -> Path:
    """Build ``out_dir`` from an ONNX export directory or a checkpoint (see module docstring)."""
    from .artifacts import TRT_EXPORT, detect_artifact, file_entry, read_manifest, staged_directory, write_manifest
    from .metadata import check_checkpoint, check_expectations
    from .trt_format import current_runtime

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

    with staged_directory(Path(out_dir)) as stage, tempfile.TemporaryDirectory() as tmp, \
            torch.cuda.device(opts.device):  # TensorRT builds for the current device
        if opts.via == "torch-tensorrt":
            from .torch_backend import TorchEngine

            meta, model = build_via_torch_tensorrt(src, stage, opts, here, log, **expect)
            reference: Any = TorchEngine(model, meta)
        else:
            from .export import export_onnx
            from .onnx_backend import OnnxEngine

            onnx_dir = src
            if kind == "checkpoint":
                onnx_dir = Path(tmp) / "onnx"
                export_onnx(src, onnx_dir, log=log, **expect)
            meta = build_from_onnx(onnx_dir, stage, opts, here, log)
            reference = OnnxEngine.load(onnx_dir, precision="fp32", providers=["CPUExecutionProvider"])
        files = {g: file_entry(stage / f) for g, f in ENGINE_FILES.items()}
        manifest = {"format": TRT_EXPORT, "files": files, "metadata": meta,
                    "build": {**asdict(opts), "built_for": here.as_dict()}, "check": None}
        write_manifest(stage, manifest)
        if opts.check:
            manifest["check"] = {"reference": f"{reference.backend} float32", "metric": "max|a-b| / max|b|",
                                 "errors": check_build(stage, reference, opts, log)}
            write_manifest(stage, manifest)
    log(f"wrote {out_dir} ({', '.join(ENGINE_FILES.values())}, manifest.json)")
    return Path(out_dir)


def main(argv: List[str] | None = None) -> int:
    """``clipmg-build``: 0 built and checked, 1 the build or its check failed, 2 bad input, 3 no GPU or
    no TensorRT here (one line each)."""
    return run_command("clipmg-build", lambda: _main(argv))


def _main(argv: List[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="clipmg-build", description="Build TensorRT engines (frame encoder + window "
                                 "head) from a clipmg ONNX export or checkpoint. Needs an NVIDIA GPU and TensorRT.")
    ap.add_argument("source", type=Path, help="ONNX export directory (clipmg-export) or checkpoint .safetensors")
    ap.add_argument("out_dir", type=Path, help="output directory (a previous build there is replaced)")
    d = BuildOptions()
    ap.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                    help="frame encoder precision (%(default)s)")
    ap.add_argument("--head-precision", choices=PRECISIONS, default=d.head_precision,
                    help="window head precision (%(default)s)")
    ap.add_argument("--via", choices=ROUTES, default=d.via, help="build route (%(default)s)")
    ap.add_argument("--max-batch", type=int, default=d.max_batch, help="largest frame batch (%(default)s)")
    ap.add_argument("--opt-batch", type=int, default=d.opt_batch, help="frame batch to tune for (%(default)s)")
    ap.add_argument("--max-windows", type=int, default=d.max_windows, help="largest window batch (%(default)s)")
    ap.add_argument("--workspace-gib", type=float, default=d.workspace_gib, help="builder workspace (%(default)s GiB)")
    ap.add_argument("--timing-cache", help="timing cache file (default: under ~/.cache/clipmg)")
    ap.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    ap.add_argument("--device", type=int, default=0, help="CUDA device index")
    ap.add_argument("--tolerance", type=float, help="relative error limit of the post-build check")
    ap.add_argument("--no-check", action="store_true", help="skip the post-build check against float32")
    ap.add_argument("--num-classes", type=int, help="refuse a model with another class count")
    ap.add_argument("--variant", help="refuse a model of another variant")
    ap.add_argument("--preset", help="refuse a model of another preset")
    args = ap.parse_args(argv)
    check_flag("--num-classes", args.num_classes, 2, integer=True)
    opts = BuildOptions(args.precision, args.head_precision, args.via, args.max_batch, args.opt_batch,
                        args.max_windows, args.workspace_gib, "" if args.no_timing_cache else args.timing_cache,
                        args.device, not args.no_check, args.tolerance)
    expect = {k: v for k, v in (("num_classes", args.num_classes), ("variant", args.variant),
                                ("preset", args.preset)) if v is not None}
    opts.validate()
    try:
        with file_errors():
            build_engines(args.source, args.out_dir, opts, **expect)
    except EnvironmentMissing as e:  # not the input's fault, nor a bug: exit 3 (docs/engines.md)
        print(f"clipmg-build: {one_line(e)}", file=sys.stderr)
        return 3
    except BuildFailed as e:
        print(f"clipmg-build: build failed: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
