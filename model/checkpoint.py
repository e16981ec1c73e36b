"""Checkpoints: weights as safetensors with the JSON metadata in the same file's header.

One file (``best.safetensors``, ``last.safetensors``) carries everything inference needs: the model
config (architecture, variant, preprocessing, sampling), class names, clip-duration statistics,
metrics and the code version. Loading never unpickles: safetensors holds only tensors and strings.
Writes are atomic (temporary file + ``os.replace``) so a killed process never leaves half a file.
The format's metadata side, which needs no PyTorch, is ``checkpoint_format``; its names are
re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import torch
from safetensors.torch import load_file, save

from .checkpoint_format import (FORMAT, META_KEY, CheckpointError, check_expectations, config_differences,
                                expectation_differences, read_metadata, user_message)
from .clipmg import CLIPMG
from .config import ModelConfig
from .factory import build_model
from .files import atomic_write, code_version, file_sha256, remove_stale_temporaries

__all__ = ["FORMAT", "META_KEY", "CheckpointError", "check_expectations", "config_differences",
           "expectation_differences", "read_metadata", "user_message", "atomic_write", "code_version",
           "file_sha256", "remove_stale_temporaries", "save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | Path, model: CLIPMG, class_names: Sequence[str],
                    duration_stats: Dict[str, float] | None = None, metrics: Dict[str, Any] | None = None,
                    extra: Dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and metadata to one safetensors file, atomically."""
    if len(class_names) != model.cfg.num_classes:
        raise ValueError(f"{len(class_names)} class names given for a model with {model.cfg.num_classes} classes")
    meta = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "class_names": list(class_names),
        "duration_stats": duration_stats or {},
        "metrics": metrics or {},
        "code_version": code_version(),
        **(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    # Serialised in memory and written by atomic_write: safetensors' own save_file writes through a
    # temporary file of its own (Rust's tempfile crate, ".tmpXXXXXX" in the same folder) that a
    # process killed mid-write leaves behind, outside atomic_write's naming and clean-up.
    data = save(tensors, metadata={META_KEY: json.dumps(meta)})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    **expect: Any) -> Tuple[CLIPMG, Dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (no pickled code runs).

    Keyword expectations (``config``, ``class_names``, ``num_classes``, ``variant``, ``preset``)
    are checked first; a mismatch raises ``CheckpointError`` saying what differs.
    """
    path = Path(path)
    meta = read_metadata(path)
    check_expectations(meta, path, **expect)
    model = build_model(ModelConfig.from_dict(meta["config"]))
    try:
        state = load_file(str(path), device=str(map_location))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read the weights in {path} ({e}); the file may be truncated") from e
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"weights in {path} do not fit its own config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); the file was written by another version")
    return model, meta
