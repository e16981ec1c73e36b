"""CLIP-MG in PyTorch: the model, its presets and the preprocessing shared by training and inference.

The package loads lazily (PEP 562): ``from clipmg.model import create_model`` imports PyTorch, but
the NumPy-only modules (``config``, ``layouts``, ``sampling``, ``preprocess``, ``crop``,
``pose_cache``, ``metadata``, ``files``, ``synthetic``, ``keypoint_files``) and the names they define
import no PyTorch: the live runtime with an exported engine runs without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "CLIPMG": "clipmg",
    "FrameEncoder": "clipmg",
    "WindowHead": "clipmg",
    "VARIANTS": "config",
    "ClipConfig": "config",
    "ModelConfig": "config",
    "PoseConfig": "config",
    "PreprocessConfig": "config",
    "VisionConfig": "config",
    "list_presets": "config",
    "load_config": "config",
    "build_model": "factory",
    "create_model": "factory",
    "extract_layout": "layouts",
    "list_layouts": "layouts",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
