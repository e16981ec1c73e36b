"""Checkpoints: weights as safetensors with the JSON metadata in the same file's header.

One file (``best.safetensors``, ``last.safetensors``) carries everything inference needs: the model
config (architecture, variant, preprocessing, sampling), class names, clip-duration statistics,
metrics and the code version. Loading never unpickles: safetensors holds only tensors and strings.
Writes are atomic (temporary file + ``os.replace``) so a killed process never leaves half a file.
Every save stores a digest of the weights in the metadata and refuses NaN or infinite weights;
every load checks the digest, so a file corrupted on disk is refused even when its size is right.
The format's metadata side, which needs no PyTorch, is ``checkpoint_format``; its names are
re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import torch
from safetensors.torch import load_file, save

from .checkpoint_format import (
    DIGEST_KEY,
    FORMAT,
    META_KEY,
    CheckpointError,
    check_expectations,
    config_differences,
    expectation_differences,
    read_metadata,
    tensor_digest,
    user_message,
    verify_digest,
    with_digest,
)
from .clipmg import CLIPMG
from .config import ModelConfig
from .factory import build_model
from .files import atomic_write, code_version, file_sha256, remove_stale_temporaries

__all__ = [
    "DIGEST_KEY",
    "FORMAT",
    "META_KEY",
    "CheckpointError",
    "check_expectations",
    "config_differences",
    "expectation_differences",
    "read_metadata",
    "tensor_digest",
    "user_message",
    "verify_digest",
    "atomic_write",
    "code_version",
    "file_sha256",
    "remove_stale_temporaries",
    "save_checkpoint",
    "load_checkpoint",
    "add_digest",
    "non_finite_tensors",
]


def non_finite_tensors(tensors: Dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity, sorted."""
    return sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))


def _write_with_digest(path: Path, data: bytes) -> Path:
    """Write the safetensors bytes ``data`` to ``path`` atomically, with the weights' digest added to
    the clipmg metadata (the tensor bytes are written as they are)."""
    head, body = with_digest(data, path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(body)

    return atomic_write(path, write)


def add_digest(path: str | Path) -> Path:
    """Give a checkpoint written before digests existed its weight digest, in place and atomically,
    without changing its weights (the tensor bytes are copied as they are; only the header grows)."""
    path = Path(path)
    read_metadata(path)  # a readable clipmg checkpoint, or CheckpointError
    return _write_with_digest(path, path.read_bytes())


def save_checkpoint(
    path: str | Path,
    model: CLIPMG,
    class_names: Sequence[str],
    duration_stats: Dict[str, float] | None = None,
    metrics: Dict[str, Any] | None = None,
    extra: Dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights, their digest and the metadata to one safetensors file, atomically.

    Refuses (``CheckpointError``, nothing written) weights that hold NaN or infinity: a diverged
    run must never replace a good checkpoint."""
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
    bad = non_finite_tensors(tensors)
    if bad:
        raise CheckpointError(
            f"refusing to write {path}: {len(bad)} weight tensors hold NaN or infinity (first: "
            f"{bad[0]}); the weights diverged, so the previous checkpoint is kept"
        )
    # Serialised in memory and written by atomic_write: safetensors' own save_file writes through a
    # temporary file of its own (Rust's tempfile crate, ".tmpXXXXXX" in the same folder) that a
    # process killed mid-write leaves behind, outside atomic_write's naming and clean-up.
    data = save(tensors, metadata={META_KEY: json.dumps(meta)})
    return _write_with_digest(path, data)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", **expect: Any
) -> Tuple[CLIPMG, Dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (no pickled code runs).

    Keyword expectations (``config``, ``class_names``, ``num_classes``, ``variant``, ``preset``)
    are checked first; a mismatch raises ``CheckpointError`` saying what differs. Then the weights
    are checked against their digest (``CheckpointError`` when they differ: the file is corrupt).
    """
    path = Path(path)
    meta = read_metadata(path)
    check_expectations(meta, path, **expect)
    verify_digest(path, meta)
    model = build_model(ModelConfig.from_dict(meta["config"]))
    try:
        state = load_file(str(path), device=str(map_location))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read the weights in {path} ({e}); the file may be truncated") from e
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {path} do not fit its own config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); the file was written by another version"
        )
    return model, meta
