"""Checkpoints: weights as safetensors with the JSON metadata in the same file's header.

One file (``best.safetensors``, ``last.safetensors``) carries everything inference needs: the model
config (architecture, variant, preprocessing, sampling), class names, clip-duration statistics,
metrics and the code version. Loading never unpickles: safetensors holds only tensors and strings.
Writes are atomic (temporary file + ``os.replace``) so a killed process never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

from clipmg.model import CLIPMG, ModelConfig, build_model

FORMAT = "clipmg-checkpoint/1"
META_KEY = "clipmg"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def code_version() -> str:
    """Package version plus the git commit of the source tree when available."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("clipmg")
    except PackageNotFoundError:
        v = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+g{sha}" if sha else v


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(directory: Path, names: Sequence[str]) -> List[Path]:
    """Delete the temporary files ``atomic_write`` leaves when a process is killed mid-write
    (``.<name>.XXXXXXXX`` beside ``<name>``); returns what was removed. The real files are never
    touched: a kill leaves either the previous complete file or the new complete one in place."""
    removed = []
    for name in names:
        for p in Path(directory).glob(f".{name}.*"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def save_checkpoint(path: str | Path, model: CLIPMG, class_names: Sequence[str],
                    duration_stats: Dict[str, float] | None = None, metrics: Dict[str, Any] | None = None,
                    extra: Dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and metadata to one safetensors file, atomically."""
    from safetensors.torch import save

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


def read_metadata(path: str | Path) -> Dict[str, Any]:
    """The metadata of a checkpoint without loading its weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise CheckpointError(f"{path} is not a readable clipmg checkpoint ({e}); it may be truncated or "
                              f"corrupt: re-copy it or retrain") from e
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without clipmg metadata; export it from "
                              f"clipmg-train or load plain CLIP weights with create_model(pretrained=...)")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this version reads {FORMAT}")
    return meta


def config_differences(expected: ModelConfig, actual: ModelConfig) -> List[str]:
    """Human-readable differences between two model configs (``[]`` when they agree)."""
    out: List[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix[:-1]} is {b!r} in the checkpoint but {a!r} was requested")

    walk(json.loads(json.dumps(expected.to_dict())), json.loads(json.dumps(actual.to_dict())), "")
    return out


def expectation_differences(meta: Dict[str, Any], what: str = "checkpoint", config: ModelConfig | None = None,
                            class_names: Sequence[str] | None = None, num_classes: int | None = None,
                            variant: str | None = None, preset: str | None = None,
                            preprocess: Any = None, image_size: int | None = None, num_joints: int | None = None,
                            layout: str | None = None, rgb_frames: int | None = None,
                            pose_frames: int | None = None) -> List[str]:
    """What differs between a checkpoint's or artifact's metadata and what the caller asked for
    (``[]``: nothing). ``what`` names the thing in the sentences ("checkpoint", "artifact")."""
    cfg = ModelConfig.from_dict(meta["config"])
    diffs: List[str] = []
    if config is not None:
        diffs += [d.replace("in the checkpoint", f"in the {what}") for d in config_differences(config, cfg)]
    if preset is not None and cfg.name != preset:
        diffs.append(f"preset is {cfg.name!r} in the {what} but {preset!r} was requested")
    if variant is not None and cfg.variant != variant:
        diffs.append(f"variant is {cfg.variant!r} in the {what} but {variant!r} was requested")
    if num_classes is not None and cfg.num_classes != num_classes:
        diffs.append(f"the {what} has {cfg.num_classes} classes but {num_classes} were requested")
    if class_names is not None and list(class_names) != list(meta["class_names"]):
        diffs.append(f"class names differ ({what}: {list(meta['class_names'])[:4]}..., requested: "
                     f"{list(class_names)[:4]}...)")
    if preprocess is not None:
        want = preprocess if isinstance(preprocess, dict) else json.loads(json.dumps(preprocess.__dict__))
        have = json.loads(json.dumps(cfg.preprocess.__dict__))
        for k in sorted(set(want) | set(have)):
            if want.get(k, have.get(k)) != have.get(k):
                diffs.append(f"preprocess.{k} is {have.get(k)!r} in the {what} but {want.get(k)!r} was requested")
    scalars = {"image_size": (image_size, cfg.vision.image_size), "num_joints": (num_joints, cfg.pose.num_joints),
               "keypoint layout": (layout, cfg.pose.layout), "rgb_frames": (rgb_frames, cfg.clip.rgb_frames),
               "pose_frames": (pose_frames, cfg.clip.pose_frames)}
    for name, (want_v, have_v) in scalars.items():
        if want_v is not None and want_v != have_v:
            diffs.append(f"{name} is {have_v!r} in the {what} but {want_v!r} was requested")
    return diffs


def check_expectations(meta: Dict[str, Any], path: Path, **expect: Any) -> None:
    """Refuse, with one sentence, metadata that does not match what the caller asked for."""
    diffs = expectation_differences(meta, "checkpoint", **expect)
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not match the requested configuration: "
                              + "; ".join(diffs[:6]) + ". Use a checkpoint trained for this configuration "
                              "or drop the conflicting options.")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    **expect: Any) -> Tuple[CLIPMG, Dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (no pickled code runs).

    Keyword expectations (``config``, ``class_names``, ``num_classes``, ``variant``, ``preset``)
    are checked first; a mismatch raises ``CheckpointError`` saying what differs.
    """
    from safetensors.torch import load_file

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


def user_message(e: BaseException) -> str:
    """An error as one line for a command line. torch's refusal of a pickle with code in it spans
    many lines and suggests ``weights_only=False``: it is replaced by what matters (refused, why)."""
    import re

    text = str(e) or type(e).__name__
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        text = (text.split("Weights only load failed")[0].rstrip(" :") + ": refused: the file holds pickled "
                f"objects{f' ({found.group(1)})' if found else ''}, not only tensors, and is never run; "
                f"give a .safetensors file or a plain state dict")
    return " ".join(text.split())


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
