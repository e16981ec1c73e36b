"""``load_engine(path)``: pick the backend from the artifact, load it, warm it up.

- ``*.safetensors`` checkpoint (``clipmg-train``) -> ``torch``
- directory with a ``clipmg-onnx-export`` manifest (``clipmg-export``) -> ``onnxruntime``
- directory with a ``clipmg-tensorrt-export`` manifest (``clipmg-build``) -> ``tensorrt``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict

from .artifacts import detect_artifact
from .base import Engine


def _torch(path: Path, **options: Any) -> Engine:
    from .torch_backend import TorchEngine

    return TorchEngine.load(path, **options)


def _onnx(path: Path, **options: Any) -> Engine:
    from .onnx_backend import OnnxEngine

    return OnnxEngine.load(path, **options)


def _tensorrt(path: Path, **options: Any) -> Engine:
    from .tensorrt_backend import TensorRTEngine

    return TensorRTEngine.load(path, **options)


BACKENDS: Dict[str, Callable[..., Engine]] = {"checkpoint": _torch, "onnx": _onnx, "tensorrt": _tensorrt}


def load_engine(path: str | Path, warmup: bool = True, **options: Any) -> Engine:
    """Load a checkpoint (``.safetensors`` -> torch) or an exported artifact directory.

    ``options`` go to the backend: expectations checked against the artifact's metadata
    (``config``, ``class_names``, ``num_classes``, ``variant``, ``preset``, ``preprocess``,
    ``image_size``, ``num_joints``, ``layout``, ``rgb_frames``, ``pose_frames``) and backend
    settings (torch: ``device``; onnxruntime: ``precision``, ``providers``, ``threads``,
    ``graph_optimization``, ``allow_spinning``, ``verify``; tensorrt: ``device``, ``cuda_graphs``,
    ``verify``). Every refusal is an ``EngineError`` whose message says what to do.
    """
    kind, p = detect_artifact(Path(path))
    engine = BACKENDS[kind](p, **options)  # an option a backend does not take is refused as unknown
    if warmup:
        engine.warmup()
    return engine
