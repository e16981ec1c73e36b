"""Engines: export to ONNX, TensorRT builds, and one runtime interface over three backends."""

from .artifacts import detect_artifact
from .base import Engine, EngineError
from .loader import load_engine

__all__ = ["Engine", "EngineError", "detect_artifact", "load_engine"]
