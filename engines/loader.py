"""``load_engine(path)``: pick the backend from the artifact, load it, warm it up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Engine, EngineError


def load_engine(path: str | Path, warmup: bool = True, **options: Any) -> Engine:
    """Load a checkpoint (``.safetensors`` -> torch) or an exported artifact directory.

    ``options`` are passed to the backend (e.g. ``device``, expectations such as ``num_classes``).
    """
    p = Path(path)
    if not p.exists():
        raise EngineError(f"{p} does not exist; give a checkpoint (.safetensors) or an exported engine directory")
    if p.is_file() and p.suffix == ".safetensors":
        from .torch_backend import TorchEngine

        engine: Engine = TorchEngine.load(p, **options)
    else:
        raise EngineError(f"{p} is not an artifact clipmg can run: expected a .safetensors checkpoint "
                          f"or a directory written by clipmg-export / clipmg-build")
    if warmup:
        engine.warmup()
    return engine
