"""CPU int8: ONNX Runtime dynamic quantisation of the frame encoder, and its measured accuracy change.

Only the frame encoder is quantised (it is ~95 % of the FLOPs per window); the head stays float32.
The int8 encoder is offered, never imposed: ``OnnxEngine.load(precision="auto")`` uses it only when
the export measured a top-1 loss under ``INT8_MAX_LOSS_POINTS`` on real validation windows.

Validation samples are an ``.npz`` with ``images (N, T_r, 3, S, S)`` float32 (prepared exactly as
the model sees them: ``clipmg.model.preprocess.prepare_window``), ``keypoints (N, T_p, J, 3)``
float32 in model-input pixels, and optionally ``labels (N,)`` integer class indices.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import onnx

from clipmg.model import ModelConfig

from .base import Engine, EngineError
from .export import example_inputs
from .graphs import FRAME_ENCODER, FRAME_ENCODER_INT8, WINDOW_HEAD
from .metadata import attach_metadata
from .onnx_backend import OnnxEngine

log = logging.getLogger(__name__)

INT8_MAX_LOSS_POINTS = 1.0


@dataclass(frozen=True)
class Top1Comparison:
    """Top-1 of a candidate engine against a reference engine on the same windows."""

    samples: int
    agreement: float  # fraction of windows whose top-1 class is the same
    labelled: bool  # labels were given: the accuracies below are real
    reference_accuracy: float | None
    candidate_accuracy: float | None
    loss_points: float  # accuracy drop in points; without labels 100*(1-agreement), an upper bound
    max_rel_logit_error: float

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def load_samples(path: str | Path, cfg: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(images, keypoints, labels or None)`` from an ``.npz``; shapes checked against ``cfg``."""
    path = Path(path)
    try:
        data = np.load(path)
        images, kp = data["images"].astype(np.float32), data["keypoints"].astype(np.float32)
        labels = data["labels"].astype(np.int64) if "labels" in data.files else None
    except (OSError, ValueError, KeyError) as e:
        raise EngineError(
            f"{path} is not a validation-sample file ({e}); write an .npz with arrays "
            f"images, keypoints and optionally labels"
        ) from e
    s, c, j = cfg.vision.image_size, cfg.clip, cfg.pose.num_joints
    if (
        images.shape[1:] != (c.rgb_frames, 3, s, s)
        or kp.shape[1:] != (c.pose_frames, j, 3)
        or len(images) != len(kp)
        or (labels is not None and labels.shape != (len(images),))
    ):
        raise EngineError(
            f"{path} holds images {images.shape}, keypoints {kp.shape}; this model needs "
            f"(N, {c.rgb_frames}, 3, {s}, {s}) and (N, {c.pose_frames}, {j}, 3) (+ labels (N,))"
        )
    if labels is not None and ((labels < 0) | (labels >= cfg.num_classes)).any():
        raise EngineError(f"{path} has labels outside 0..{cfg.num_classes - 1}")
    return images, kp, labels


def compare_top1(
    reference: Engine,
    candidate: Engine,
    images: np.ndarray,
    keypoints: np.ndarray,
    labels: np.ndarray | None = None,
    batch: int = 1,
) -> Top1Comparison:
    """Run both engines on windows ``images (N, T_r, 3, S, S)``, ``keypoints (N, T_p, J, 3)`` and
    compare their top-1 (and their accuracies when ``labels (N,)`` are given)."""
    ref, cand = [], []
    for i in range(0, len(images), batch):
        ref.append(reference(images[i : i + batch], keypoints[i : i + batch]))
        cand.append(candidate(images[i : i + batch], keypoints[i : i + batch]))
    r, c = np.concatenate(ref), np.concatenate(cand)
    rt, ct = r.argmax(-1), c.argmax(-1)
    agreement = float((rt == ct).mean())
    err = float(np.abs(c - r).max() / max(float(np.abs(r).max()), 1e-12))
    if labels is not None:
        ra, ca = float((rt == labels).mean()), float((ct == labels).mean())
        return Top1Comparison(len(r), agreement, True, ra, ca, 100.0 * (ra - ca), err)
    return Top1Comparison(len(r), agreement, False, None, None, 100.0 * (1.0 - agreement), err)


def quantize_frame_encoder(src: Path, dst: Path, meta: Dict[str, Any]) -> None:
    """Dynamic int8 quantisation (int8 weights, uint8 activations computed per call) of the MatMul
    and Gemm nodes of ``src`` into ``dst``; the metadata is carried over."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # reduce_range: 7-bit weights avoid the u8*s8 accumulation overflow of AVX2 CPUs without VNNI.
    logging.disable(logging.WARNING)  # the quantiser advises pre-processing on the root logger
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=False,
            reduce_range=True,
        )
    finally:
        logging.disable(logging.NOTSET)
    model = onnx.load(str(dst))
    attach_metadata(model, meta, "frame_encoder")
    entry = model.metadata_props.add()
    entry.key, entry.value = "clipmg.precision", "int8-dynamic"
    onnx.save_model(model, str(dst))


def add_int8_frame_encoder(
    stage: Path,
    meta: Dict[str, Any],
    val_samples: str | Path | None,
    n_synthetic: int,
    threads: int | None,
) -> Dict[str, Any]:
    """Write ``frame_encoder.int8.onnx`` into ``stage`` and measure it against the float32 export.

    Returns the manifest's ``int8`` report; ``default`` is true only for a loss under
    ``INT8_MAX_LOSS_POINTS`` measured on real validation samples.
    """
    cfg = ModelConfig.from_dict(meta["config"])
    t0 = time.perf_counter()
    log.info("quantising the frame encoder to int8 (ONNX Runtime dynamic quantisation) ...")
    quantize_frame_encoder(stage / FRAME_ENCODER, stage / FRAME_ENCODER_INT8, meta)
    opts: Dict[str, Any] = {"threads": threads, "providers": ["CPUExecutionProvider"]}
    fp32 = OnnxEngine.from_files(stage / FRAME_ENCODER, stage / WINDOW_HEAD, meta, "fp32", **opts)
    int8 = OnnxEngine.from_files(stage / FRAME_ENCODER_INT8, stage / WINDOW_HEAD, meta, "int8", **opts)
    if val_samples is not None:
        images, kp, labels = load_samples(val_samples, cfg)
        source = Path(val_samples).name
    else:
        images, kp = example_inputs(cfg, n_synthetic, seed=2)
        labels, source = None, "synthetic"
    cmp = compare_top1(fp32, int8, images, kp, labels)
    default = source != "synthetic" and cmp.loss_points < INT8_MAX_LOSS_POINTS
    log.info(
        f"int8 vs fp32 on {cmp.samples} {source} windows: top-1 agreement {100 * cmp.agreement:.1f} %, "
        f"loss {cmp.loss_points:.2f} points{'' if cmp.labelled else ' (upper bound, no labels)'}, "
        f"max relative logit error {cmp.max_rel_logit_error:.1e}; int8 is "
        f"{'the default' if default else 'off by default'} ({time.perf_counter() - t0:.1f} s)"
    )
    return {
        "file": FRAME_ENCODER_INT8,
        "method": "onnxruntime quantize_dynamic, int8 weights, MatMul/Gemm",
        "validation": source,
        **cmp.as_dict(),
        "max_loss_points": INT8_MAX_LOSS_POINTS,
        "default": default,
    }
