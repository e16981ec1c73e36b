"""Engines: export to ONNX, TensorRT builds, and one runtime interface over three backends."""

from .base import Engine, EngineError
from .loader import load_engine

__all__ = ["Engine", "EngineError", "load_engine"]
