"""Engines: export to ONNX, TensorRT builds, and one runtime interface over four backends.

Loaded lazily (PEP 562): the ONNX Runtime path (``load_engine`` on an export) imports no PyTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {"Engine": "base", "EngineError": "base", "detect_artifact": "artifacts", "load_engine": "loader"}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
