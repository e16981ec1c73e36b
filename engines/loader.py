"""``load_engine(path)``: pick the backend from the artifact, load it, warm it up.

- ``*.safetensors`` checkpoint (``clipmg-train``) -> ``torch`` on the CPU, ``cuda`` (autocast and CUDA
  graphs) on a GPU (``device="cuda"`` or ``"cuda:N"``), ``torch`` on a GPU with ``"cuda:eager"``
  (``checkpoint_route``)
- directory with a ``clipmg-onnx-export`` manifest (``clipmg-export``) -> ``onnxruntime``
- directory with a ``clipmg-tensorrt-export`` manifest (``clipmg-build``) -> ``tensorrt``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from .artifacts import detect_artifact
from .base import Engine

EAGER = ":eager"  # a device's suffix that keeps a checkpoint on eager PyTorch: cuda:eager, cuda:1:eager


def checkpoint_route(device: Any = "cpu") -> Tuple[str, str]:
    """Which backend runs a checkpoint on ``device`` (``--device``), and the PyTorch device it gets:
    ``cuda`` / ``cuda:N`` -> the cuda engine (autocast + CUDA graphs); ``cuda:eager`` / ``cuda:N:eager``
    -> eager PyTorch on that GPU; anything else (``cpu``, ...) -> eager PyTorch there."""
    d = str(device).strip()
    if d.lower().endswith(EAGER):
        return "torch", d[: -len(EAGER)]
    if d.lower() == "cuda" or (d.lower().startswith("cuda:") and d[5:].isdigit()):
        return "cuda", d.lower()
    return "torch", d


def _checkpoint(path: Path, device: Any = "cpu", **options: Any) -> Engine:
    backend, dev = checkpoint_route(device)
    if backend == "cuda":
        from .cuda_backend import CudaEngine

        return CudaEngine.load(path, device=dev, **options)
    from .torch_backend import TorchEngine

    return TorchEngine.load(path, device=dev, **options)


def _onnx(path: Path, **options: Any) -> Engine:
    from .onnx_backend import OnnxEngine

    return OnnxEngine.load(path, **options)


def _tensorrt(path: Path, **options: Any) -> Engine:
    from .tensorrt_backend import TensorRTEngine

    return TensorRTEngine.load(path, **options)


BACKENDS: Dict[str, Callable[..., Engine]] = {"checkpoint": _checkpoint, "onnx": _onnx, "tensorrt": _tensorrt}


def load_engine(path: str | Path, warmup: bool = True, **options: Any) -> Engine:
    """Load a checkpoint (``.safetensors`` -> torch, or cuda on a GPU) or an exported artifact directory.

    ``options`` go to the backend: expectations checked against the artifact's metadata
    (``config``, ``class_names``, ``num_classes``, ``variant``, ``preset``, ``preprocess``,
    ``image_size``, ``num_joints``, ``layout``, ``rgb_frames``, ``pose_frames``) and backend
    settings (torch: ``device``, see ``checkpoint_route``; cuda: ``device``, ``precision``,
    ``head_precision``, ``cuda_graphs``, ``batch_sizes``, ``window_sizes``; onnxruntime: ``precision``,
    ``providers``, ``threads``, ``graph_optimization``, ``allow_spinning``, ``verify``; tensorrt:
    ``device``, ``cuda_graphs``, ``verify``). Every refusal is an ``EngineError`` whose message says what to do.
    """
    kind, p = detect_artifact(Path(path))
    engine = BACKENDS[kind](p, **options)  # an option a backend does not take is refused as unknown
    if warmup:
        engine.warmup()
    return engine
