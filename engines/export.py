"""``clipmg-export CHECKPOINT OUT_DIR``: the two halves of CLIP-MG as ONNX graphs, checked.

Layout of ``OUT_DIR``::

    frame_encoder.onnx        images (n, 3, S, S) -> tokens (n, 1+N_p, D), frame_emb (n, E); n dynamic
    window_head.onnx          tokens (b, T_r, 1+N_p, D), frame_emb (b, T_r, E), keypoints (b, T_p, J, 3)
                              -> logits (b, C); b dynamic. Inputs a variant does not use are absent.
    frame_encoder.int8.onnx   optional (--int8): ONNX Runtime dynamic int8 quantisation
    pose_stage{0,1,2}.onnx    the skeleton encoder one time step at a time (variants with pose; not with
                              --no-pose-cache): stage 0 group_keypoints (n, G, J, 3), stage i pose_pre
                              (n, C, H, W) -> taps (n, 3, C_out, H', W'); see model/pose_cache.py
    window_head_cached.onnx   the window head fed pose_pre (b, C3, T_r, H', W'), the last stage's
                              pre-activations, instead of computing the pose branch
    manifest.json             written last: files with size + sha256, the metadata, the check results

Each ``.onnx`` carries the metadata (see ``engines/metadata.py``) as JSON under the ``clipmg`` key
of ``metadata_props``. The export uses the TorchScript exporter (``dynamo=False``, opset 17) with
the multi-head-attention fast path disabled and a trace batch of 2, then runs both graphs in ONNX
Runtime against PyTorch; a relative error above the tolerance fails the export and leaves nothing
at ``OUT_DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from clipmg.model import settings
from clipmg.model.config import ConfigError
from clipmg.model.errors import run_command
from clipmg.model.pose_cache import PoseBranchCache, stage_shapes
from clipmg.model.settings import Range, setting

from .artifacts import ONNX_EXPORT, file_entry, staged_directory, write_manifest
from .base import EngineError
from .cli import Expect, file_errors, one_line  # noqa: F401 - one_line: callers import it from here too
from .graphs import (  # noqa: F401
    CACHED_HEAD,
    FE_INPUTS,
    FE_OUTPUTS,
    FRAME_ENCODER,
    FRAME_ENCODER_INT8,
    HEAD_INPUTS,
    HEAD_OUTPUTS,
    WINDOW_HEAD,
    graph_file,
    rel_error,
)
from .metadata import artifact_metadata, attach_metadata, check_expectations, tool_versions
from .onnx_backend import OnnxEngine

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# --opset: 14 is the first with the attention operator (scaled_dot_product_attention) the models use; 23 the
# last the TorchScript exporter writes (torch.onnx ONNX_MAX_OPSET). 14-21 and 23 were exported and checked
# against PyTorch in ONNX Runtime 1.32 (clipmg-tiny, every graph); 7-13 fail in the exporter.
OPSETS = range(14, 24)
DEFAULT_TOLERANCE = 1e-4


class ExportCheckError(EngineError):
    """The exported graphs disagree with PyTorch beyond the tolerance."""


@contextlib.contextmanager
def mha_fastpath_disabled() -> Iterator[None]:
    """open_clip's ``nn.MultiheadAttention`` eval fast path breaks the TorchScript exporter."""
    import torch

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def example_inputs(cfg: Any, windows: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Random model inputs: images ``(B, T_r, 3, S, S)`` (unit normal, like normalised pixels) and
    keypoints ``(B, T_p, J, 3)`` inside the crop with confidences in [0, 1], a tenth of them absent."""
    rng = np.random.default_rng(seed)
    s, c, j = cfg.vision.image_size, cfg.clip, cfg.pose.num_joints
    images = rng.standard_normal((windows, c.rgb_frames, 3, s, s)).astype(np.float32)
    kp = rng.random((windows, c.pose_frames, j, 3)).astype(np.float32)
    kp[..., :2] *= s
    kp[..., 2] *= rng.random(kp.shape[:-1]) > 0.1
    return images, kp


def _to_onnx(
    module: Any,
    args: Tuple[Any, ...],
    inputs: Sequence[str],
    outputs: Sequence[str],
    batch_axis: Dict[str, str],
    opset: int,
) -> Any:
    """Trace ``module`` with the TorchScript exporter into an in-memory ``onnx.ModelProto``."""
    import onnx
    import torch

    buf = io.BytesIO()
    axes = {name: {0: batch_axis[name]} for name in (*inputs, *outputs)}
    with torch.no_grad(), mha_fastpath_disabled(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of the TorchScript exporter
        torch.onnx.export(
            module,
            args,
            buf,  # type: ignore[arg-type]  # the stubs say a path; a file object is documented too
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def export_graphs(
    model: Any,
    out_dir: Path,
    meta: Dict[str, Any],
    opset: int = DEFAULT_OPSET,
    trace_batch: int = 2,
    pose_cache: bool = True,
) -> Dict[str, Any]:
    """Write ``frame_encoder.onnx`` and ``window_head.onnx`` for ``model`` into ``out_dir``, and with
    ``pose_cache`` (for a variant with a pose branch) the pose-stage graphs and the cached head.

    Returns ``meta`` with ``io`` (names and shapes of each graph's inputs and outputs) added.
    """
    import onnx
    import torch

    if trace_batch < 2:
        raise ValueError("trace_batch must be at least 2 so no batch size is frozen into reshapes")
    model = model.eval()
    fe, wh = model.split()
    fe.eval(), wh.eval()  # torch.onnx.export restores each wrapper's own training flag afterwards
    cfg = model.cfg
    s, t = cfg.vision.image_size, cfg.clip.rgb_frames
    images, kp = example_inputs(cfg, trace_batch)
    with torch.no_grad(), mha_fastpath_disabled():
        x, c = fe(torch.from_numpy(images.reshape(-1, 3, s, s)))
    tokens, emb = x.reshape(trace_batch, t, *x.shape[1:]), c.reshape(trace_batch, t, -1)

    io_desc: Dict[str, Any] = {}
    t0 = time.perf_counter()
    log.info(f"exporting the frame encoder ({cfg.name}, opset {opset}) ...")
    fe_proto = _to_onnx(
        fe,
        (torch.from_numpy(images[0, :trace_batch]),),
        FE_INPUTS,
        FE_OUTPUTS,
        {"images": "n", "tokens": "n", "frame_emb": "n"},
        opset,
    )
    log.info(f"exporting the window head ({cfg.variant}) ...")
    wh_proto = _to_onnx(
        wh,
        (tokens, emb, torch.from_numpy(kp)),
        HEAD_INPUTS,
        HEAD_OUTPUTS,
        {"tokens": "b", "frame_emb": "b", "keypoints": "b", "logits": "b"},
        opset,
    )
    graphs = [("frame_encoder", fe_proto, FRAME_ENCODER), ("window_head", wh_proto, WINDOW_HEAD)]
    pose_cache = pose_cache and model.uses_pose
    if pose_cache:
        graphs += _pose_cache_graphs(model, tokens, emb, torch.from_numpy(kp), opset)
    for graph, proto, _ in graphs:
        io_desc[graph] = {
            "inputs": {i.name: _dims(i) for i in proto.graph.input},
            "outputs": {o.name: _dims(o) for o in proto.graph.output},
        }
    want = expected_io(cfg, pose_cache)
    for graph, d in io_desc.items():  # output dims can come out as exporter-made symbols: compare names
        if d["inputs"] != want[graph]["inputs"] or list(d["outputs"]) != list(want[graph]["outputs"]):
            raise ExportCheckError(
                f"the exported {graph} has inputs {d['inputs']} and outputs {list(d['outputs'])}, "
                f"expected {want[graph]['inputs']} and {list(want[graph]['outputs'])}; report "
                f"this with the checkpoint's preset and variant"
            )
    full_meta = {**meta, "io": want}
    for graph, proto, fname in graphs:
        for out in proto.graph.output:  # declare the static output dims the exporter left symbolic
            for dim, value in zip(out.type.tensor_type.shape.dim, want[graph]["outputs"][out.name]):
                if isinstance(value, int):
                    dim.dim_value = value
                else:
                    dim.dim_param = value
        attach_metadata(proto, full_meta, graph)
        onnx.checker.check_model(proto)
        onnx.save_model(proto, str(out_dir / fname))
    dropped = [n for n in HEAD_INPUTS if n not in io_desc["window_head"]["inputs"]]
    log.info(
        f"exported in {time.perf_counter() - t0:.1f} s"
        + (f" (the {cfg.variant} head does not use: {', '.join(dropped)})" if dropped else "")
    )
    return full_meta


def _pose_cache_graphs(model: Any, tokens: Any, emb: Any, kp: Any, opset: int) -> List[Tuple[str, Any, str]]:
    """The pose-stage graphs and the cached head, traced on the example window's own pieces."""
    import torch

    from clipmg.model.clipmg import CachedPoseHead, PoseStage

    cfg = model.cfg
    b = kp.shape[0]
    stages = len(cfg.pose.skeleton_channels)
    log.info(f"exporting the pose branch in pieces ({stages} stages) and the cached head ...")
    examples: Dict[int, Any] = {}

    def partials(stage: int, x: np.ndarray) -> np.ndarray:  # records a trace input (batch 2) for each stage
        examples.setdefault(stage, torch.from_numpy(np.ascontiguousarray(x[:2])))  # a fresh cache: all T inputs
        with torch.no_grad():
            return model.pose_partials(stage, torch.from_numpy(x)).numpy()

    pre = np.stack([PoseBranchCache.for_config(partials, cfg).window(0, kp[i].numpy()) for i in range(b)])
    out: List[Tuple[str, Any, str]] = []
    for stage in range(stages):
        name = "group_keypoints" if stage == 0 else "pose_pre"
        proto = _to_onnx(
            PoseStage(model, stage).eval(), (examples[stage],), (name,), ("taps",), {name: "n", "taps": "n"}, opset
        )
        out.append((f"pose_stage{stage}", proto, graph_file(f"pose_stage{stage}")))
    head_in = (*HEAD_INPUTS, "pose_pre")
    proto = _to_onnx(
        CachedPoseHead(model).eval(),
        (tokens, emb, kp, torch.from_numpy(pre)),
        head_in,
        HEAD_OUTPUTS,
        {**{k: "b" for k in head_in}, "logits": "b"},
        opset,
    )
    out.append(("window_head_cached", proto, CACHED_HEAD))
    return out


def used_head_inputs(variant: str) -> List[str]:
    """The head inputs a variant reads; the others are absent from its exported graph."""
    if variant == "no_pose":
        return ["tokens"]
    if variant == "no_cross_attention":
        return ["frame_emb", "keypoints"]
    return ["tokens", "keypoints"]


def used_cached_head_inputs(variant: str) -> List[str]:
    """The inputs of a variant's cached head: the pose branch's pre-activations replace the
    keypoints, which only the full variant still reads (for its relevance map)."""
    if variant == "no_pose":
        raise ValueError("the no_pose variant has no pose branch to cache")
    return [k for k in used_head_inputs(variant) if k != "keypoints" or variant == "full"] + ["pose_pre"]


def expected_io(cfg: Any, pose_cache: bool = False) -> Dict[str, Any]:
    """Names and symbolic shapes of the graphs' inputs and outputs for ``cfg`` (with ``pose_cache``,
    also the pose-stage graphs and the cached head, for a variant with a pose branch)."""
    v, c = cfg.vision, cfg.clip
    s, n = v.image_size, 1 + v.num_patches
    head_in = {
        "tokens": ["b", c.rgb_frames, n, v.width],
        "frame_emb": ["b", c.rgb_frames, v.embed_dim],
        "keypoints": ["b", c.pose_frames, cfg.pose.num_joints, 3],
    }
    logits = {"logits": ["b", cfg.num_classes]}
    io = {
        "frame_encoder": {
            "inputs": {"images": ["n", 3, s, s]},
            "outputs": {"tokens": ["n", n, v.width], "frame_emb": ["n", v.embed_dim]},
        },
        "window_head": {"inputs": {k: head_in[k] for k in used_head_inputs(cfg.variant)}, "outputs": logits},
    }
    if pose_cache and cfg.variant != "no_pose":
        shapes = stage_shapes(cfg)
        for i, sh in enumerate(shapes):
            inp = (
                {"group_keypoints": ["n", c.group, cfg.pose.num_joints, 3]}
                if i == 0
                else {"pose_pre": ["n", *sh["input"]]}
            )
            io[f"pose_stage{i}"] = {"inputs": inp, "outputs": {"taps": ["n", *sh["taps"]]}}
        _, c3, h3, w3 = shapes[-1]["taps"]
        head_in["pose_pre"] = ["b", c3, c.rgb_frames, h3, w3]
        io["window_head_cached"] = {
            "inputs": {k: head_in[k] for k in used_cached_head_inputs(cfg.variant)},
            "outputs": logits,
        }
    return io


def _dims(value_info: Any) -> List[Any]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def pose_cache_files(directory: Path) -> List[Path] | None:
    """The pose-stage graphs and the cached head in ``directory`` (in stage order, the head last), or
    ``None`` when the export has none (a no_pose variant, ``--no-pose-cache``, an older export)."""
    files = sorted(Path(directory).glob("pose_stage*.onnx"), key=lambda p: int(p.stem[len("pose_stage") :]))
    if not files or not (Path(directory) / CACHED_HEAD).is_file():
        return None
    return [*files, Path(directory) / CACHED_HEAD]


def check_export(
    model: Any,
    out_dir: Path,
    tolerance: float = DEFAULT_TOLERANCE,
    windows: int = 1,
    seed: int = 1,
    threads: int | None = None,
) -> Dict[str, float]:
    """Run the exported graphs in ONNX Runtime (CPU, float32) against eager PyTorch.

    Uses ``windows`` windows (a batch other than the trace batch, so dynamic axes are exercised).
    Returns the relative errors (see ``rel_error``) of the frame encoder's two outputs, of the head
    fed PyTorch's tokens, of the composition (ONNX encoder -> ONNX head) against the monolithic
    PyTorch forward, and (when exported) of the pose-stage graphs + cached head; raises
    ``ExportCheckError`` when one exceeds ``tolerance``.
    """
    import torch

    cfg = model.cfg
    images, kp = example_inputs(cfg, windows, seed)
    b, t = images.shape[:2]
    flat = images.reshape(b * t, *images.shape[2:])
    t0 = time.perf_counter()
    with torch.no_grad():
        x, c = model.eval().encode_frames(torch.from_numpy(flat))
        ref_logits = model.head(x.reshape(b, t, *x.shape[1:]), c.reshape(b, t, -1), torch.from_numpy(kp)).numpy()
        x, c = x.numpy(), c.numpy()
    engine = OnnxEngine.from_files(
        out_dir / FRAME_ENCODER,
        out_dir / WINDOW_HEAD,
        threads=threads,
        providers=["CPUExecutionProvider"],
        pose_files=pose_cache_files(out_dir),
    )
    ox, oc = engine.encode_frames(flat)
    tokens, emb = x.reshape(b, t, *x.shape[1:]), c.reshape(b, t, -1)
    errors = {
        "frame_encoder.tokens": rel_error(ox, x),
        "frame_encoder.frame_emb": rel_error(oc, c),
        "window_head.logits": rel_error(engine.head(tokens, emb, kp), ref_logits),
        "composition.logits": rel_error(engine(images, kp), ref_logits),
    }
    if engine.pose_cache:  # every stage input of a window computed by the stage graphs, then the cached head
        pre = np.stack([PoseBranchCache.for_config(engine.pose_partials, cfg).window(0, k) for k in kp])
        errors["window_head_cached.logits"] = rel_error(engine.head_cached(tokens, emb, kp, pre), ref_logits)
    worst = max(errors, key=lambda k: errors[k])
    log.info(
        "ONNX Runtime vs PyTorch, relative error: "
        + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
        + f" ({time.perf_counter() - t0:.1f} s)"
    )
    if not errors[worst] <= tolerance:
        what = (
            f"allow more with --tolerance (default {DEFAULT_TOLERANCE:.0e})"
            if tolerance < DEFAULT_TOLERANCE
            else "report this with the checkpoint's preset and variant"
        )
        raise ExportCheckError(
            f"the exported {worst} differs from PyTorch by {errors[worst]:.2e} (relative), "
            f"above the tolerance {tolerance:.0e}; nothing was written: {what}"
        )
    return errors


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote."""

    out_dir: Path
    manifest: Dict[str, Any]


def export_onnx(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    check: bool = True,
    int8: bool = False,
    val_samples: str | Path | None = None,
    int8_samples: int = 8,
    threads: int | None = None,
    pose_cache: bool = True,
    **expect: Any,
) -> ExportResult:
    """Export a checkpoint to an ONNX directory (see module docstring); returns the manifest.

    ``expect`` (``num_classes``, ``class_names``, ``variant``, ``preset``, ``config``) is checked
    against the checkpoint first. ``int8`` adds a dynamically quantised frame encoder, evaluated
    on ``val_samples`` (an ``.npz``, see ``engines/quantize.py``) or on ``int8_samples`` synthetic
    windows; it becomes the default precision only when its measured top-1 loss is under 1 point on
    real validation samples. ``pose_cache`` (default on; ignored for no_pose) adds the pose-stage
    graphs and the cached head that let the live recognizer compute the pose branch once per group.
    """
    from clipmg.model.checkpoint import CheckpointError, file_sha256, load_checkpoint

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ExportOptions(  # the flags' checks (ConfigError: one sentence)
        opset=opset, tolerance=tolerance, int8=int8, int8_samples=int8_samples, threads=threads, pose_cache=pose_cache
    )
    if not checkpoint.is_file():
        raise EngineError(f"checkpoint {checkpoint} does not exist; give the .safetensors file written by clipmg-train")
    if val_samples is not None and not Path(val_samples).is_file():
        raise EngineError(f"validation samples {val_samples} do not exist; give an .npz file (see docs/engines.md)")
    try:
        model, ckpt_meta = load_checkpoint(checkpoint)
    except CheckpointError as e:
        raise EngineError(str(e)) from e
    sha = file_sha256(checkpoint)
    meta = artifact_metadata(ckpt_meta, sha, exporter={**tool_versions(), "opset": opset, "exporter": "torchscript"})
    check_expectations(meta, checkpoint, **expect)
    with staged_directory(out_dir) as stage:
        meta = export_graphs(model, stage, meta, opset=opset, pose_cache=pose_cache)
        errors = check_export(model, stage, tolerance, threads=threads) if check else {}
        files = {graph: file_entry(stage / graph_file(graph)) for graph in meta["io"]}
        int8_report = None
        if int8:
            from .quantize import add_int8_frame_encoder

            int8_report = add_int8_frame_encoder(stage, meta, val_samples, int8_samples, threads)
            files["frame_encoder_int8"] = file_entry(stage / FRAME_ENCODER_INT8)
        manifest = {
            "format": ONNX_EXPORT,
            "files": files,
            "metadata": meta,
            "check": {
                "reference": "pytorch float32 eager",
                "metric": "max|a-b| / max|b|",
                "tolerance": tolerance if check else None,
                "errors": errors,
            },
            "int8": int8_report,
            "source": {"checkpoint": checkpoint.name, "sha256": sha},
        }
        write_manifest(stage, manifest)
    log.info(f"wrote {out_dir} ({', '.join(e['file'] for e in files.values())}, manifest.json)")
    return ExportResult(out_dir, manifest)


@dataclass(frozen=True)
class ExportOptions:
    """``clipmg-export``'s flags, each declared once (``model/settings.py``): its parser and its checks
    are generated from these fields; ``export_onnx`` checks its keywords through it as well."""

    opset: int = setting(DEFAULT_OPSET, f"ONNX opset, {OPSETS[0]}-{OPSETS[-1]} (default %(default)s)")
    tolerance: float = setting(
        DEFAULT_TOLERANCE,
        "largest relative error of the check against PyTorch, at least 0 (default %(default)s)",
        Range(0.0),
    )
    int8: bool = setting(False, "also write a dynamically quantised int8 frame encoder")
    val_samples: Optional[Path] = setting(
        None, "validation windows (.npz) to measure the int8 accuracy change", type=Path
    )
    int8_samples: int = setting(8, "synthetic windows when no --val-samples", Range(1, 10_000))
    threads: Optional[int] = setting(None, "ONNX Runtime intra-op threads for the check", Range(1, 1024))
    pose_cache: bool = setting(
        True,
        "leave out the pose-stage graphs and the cached head (smaller export; the live "
        "recognizer then recomputes the whole pose branch every window)",
        flag="--no-pose-cache",
        action="store_false",
        dest="pose_cache",
    )

    def __post_init__(self) -> None:
        if isinstance(self.opset, bool) or self.opset not in OPSETS:
            raise ConfigError(
                f"--opset {self.opset} is not supported: give an ONNX opset from {OPSETS[0]} to "
                f"{OPSETS[-1]} (default {DEFAULT_OPSET})"
            )
        settings.check_fields(self, terse=True)


def build_parser() -> argparse.ArgumentParser:
    """``clipmg-export``'s command line: the two paths, then the flags of ``ExportOptions`` and ``Expect``."""
    ap = argparse.ArgumentParser(
        prog="clipmg-export",
        description="Export a clipmg checkpoint to ONNX "
        "(frame encoder + window head), checked against PyTorch with ONNX Runtime.",
    )
    ap.add_argument("checkpoint", type=Path, help="checkpoint .safetensors written by clipmg-train")
    ap.add_argument("out_dir", type=Path, help="output directory (created; a previous export there is replaced)")
    settings.add_arguments(ap, ExportOptions)
    settings.add_arguments(ap, Expect)
    return ap


def options_from_args(args: argparse.Namespace) -> Tuple[ExportOptions, Expect]:
    """The checked options of a parsed command line (``ConfigError``: one sentence naming the flag)."""
    return ExportOptions(**settings.values_from_args(ExportOptions, args)), Expect.from_args(args)


def main(argv: List[str] | None = None) -> int:
    """``clipmg-export``: 0 exported and checked, 1 the check failed, 2 bad input (one line each)."""
    return run_command("clipmg-export", lambda: _main(argv))


def _main(argv: List[str] | None) -> int:
    args = build_parser().parse_args(argv)
    opts, expect = options_from_args(args)
    try:
        with file_errors():
            export_onnx(args.checkpoint, args.out_dir, **asdict(opts), **expect.as_dict())
    except ExportCheckError as e:  # the export is wrong, not the input: exit 1 (docs/engines.md)
        print(f"clipmg-export: check failed: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
