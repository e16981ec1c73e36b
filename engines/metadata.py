"""The metadata every exported artifact carries, and the checks that refuse a mismatch.

One dict describes the model behind an artifact (ONNX export, TensorRT engine) and travels inside
it: the ``ModelConfig`` (architecture, variant, sampling, preprocessing), the class names, the
training clips' duration statistics, the source checkpoint's sha256, and the tool versions that
wrote it. ``Engine.metadata`` is this dict, whatever the backend.
"""

from __future__ import annotations

import datetime as _dt
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, List

from clipmg.model.checkpoint_format import EXPECTATIONS, CheckpointError, expectation_differences, read_metadata
from clipmg.model.checkpoint_format import check_expectations as _check
from clipmg.model.config import ModelConfig
from clipmg.model.files import code_version

from .base import EngineError

FORMAT = "clipmg-engine/1"
META_KEY = "clipmg"  # key of the JSON metadata in ONNX metadata_props and engine headers


def preprocess_summary(cfg: ModelConfig) -> Dict[str, Any]:
    """Everything the live pipeline must do to a frame and to keypoints before the model, flat.

    Derived from ``cfg`` (``cfg.preprocess`` is the source); kept beside it so a reader of the
    artifact sees the input contract without knowing the config layout.
    """
    p, v, c = cfg.preprocess, cfg.vision, cfg.clip
    return {
        "image_size": v.image_size,
        "crop": p.crop,
        "person_scale": p.person_scale,
        "person_smoothing": p.person_smoothing,
        "mean": list(p.mean),
        "std": list(p.std),
        "color": "RGB",
        "layout": "NCHW float32, normalised",
        "keypoint_layout": cfg.pose.layout,
        "num_joints": cfg.pose.num_joints,
        "keypoints": "(x, y, confidence) in model-input pixels",
        "rgb_frames": c.rgb_frames,
        "pose_frames": c.pose_frames,
        "rgb_offset": c.rgb_offset,
    }


def tool_versions() -> Dict[str, str]:
    """Versions of the libraries that write an artifact (those importable here)."""
    out = {"clipmg": code_version()}
    for dist in ("torch", "onnx", "onnxruntime", "tensorrt", "torch_tensorrt"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def artifact_metadata(checkpoint_meta: Dict[str, Any], checkpoint_sha256: str, **extra: Any) -> Dict[str, Any]:
    """Metadata for an artifact built from a checkpoint whose metadata is ``checkpoint_meta``."""
    cfg = ModelConfig.from_dict(checkpoint_meta["config"])
    return {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "preprocess": preprocess_summary(cfg),
        "class_names": list(checkpoint_meta["class_names"]),
        "duration_stats": dict(checkpoint_meta.get("duration_stats") or {}),
        "metrics": dict(checkpoint_meta.get("metrics") or {}),
        "checkpoint_sha256": checkpoint_sha256,
        "checkpoint_code_version": checkpoint_meta.get("code_version", ""),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def encode(meta: Dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True)


def decode(raw: str | bytes, where: Path | str) -> Dict[str, Any]:
    """Parse and validate metadata JSON read from ``where``."""
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise EngineError(
            f"{where} carries unreadable clipmg metadata ({e}); the file is corrupt: export or build it again"
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise EngineError(
            f"{where} has metadata format {got!r} but this version reads {FORMAT}; "
            f"export or build it again with this version of clipmg"
        )
    try:
        cfg = ModelConfig.from_dict(meta["config"])
        names = meta["class_names"]
    except (KeyError, TypeError, ValueError) as e:
        raise EngineError(
            f"{where} carries an invalid model config ({e}); export it again with this version of clipmg"
        ) from e
    if len(names) != cfg.num_classes:
        raise EngineError(
            f"{where} lists {len(names)} class names for a {cfg.num_classes}-class model; "
            f"the metadata is corrupt: export it again"
        )
    if meta.get("preprocess") != preprocess_summary(cfg):
        raise EngineError(
            f"{where} has a preprocessing summary that disagrees with its model config; "
            f"the metadata was edited or is corrupt: export it again"
        )
    return meta


def metadata_differences(meta: Dict[str, Any], **expect: Any) -> List[str]:
    """What differs between an artifact's metadata and what the caller asked for (``[]``: none);
    the expectations are those of ``clipmg.model.checkpoint.expectation_differences``."""
    return expectation_differences(meta, "artifact", **expect)


def check_expectations(meta: Dict[str, Any], where: Path | str, **expect: Any) -> None:
    """Refuse, with one sentence, an artifact whose metadata does not match ``expect`` (the checkpoint
    check, ``clipmg.model.checkpoint_format.check_expectations``, worded for an artifact)."""
    unknown = set(expect) - set(EXPECTATIONS)
    if unknown:
        raise EngineError(
            f"unknown option(s) {', '.join(sorted(unknown))} for this backend; expectations are "
            f"{', '.join(EXPECTATIONS)} (backend options: see load_engine's docstring)"
        )
    _check(meta, where, what="artifact", error=EngineError, **expect)


def split_expectations(options: Dict[str, Any]) -> tuple[Dict[str, Any], Dict[str, Any]]:
    """``options`` -> (expectations, backend options)."""
    expect = {k: v for k, v in options.items() if k in EXPECTATIONS}
    rest = {k: v for k, v in options.items() if k not in EXPECTATIONS}
    return expect, rest


def check_checkpoint(path: Path | str, **expect: Any) -> Dict[str, Any]:
    """A checkpoint's metadata (weights not read), checked against ``expect``; ``EngineError`` for
    an unreadable checkpoint or a mismatch."""
    try:
        meta = read_metadata(path)
        cfg = ModelConfig.from_dict(meta["config"])
    except (CheckpointError, KeyError, TypeError) as e:
        raise EngineError(str(e)) from e
    meta = {**meta, "preprocess": preprocess_summary(cfg)}
    check_expectations(meta, path, **expect)
    return meta


def attach_metadata(model: Any, meta: Dict[str, Any], graph: str) -> None:
    """Store the metadata in ``model.metadata_props`` (replacing any clipmg keys already there)."""
    cfg = meta["config"]
    props = {
        META_KEY: encode(meta),
        "clipmg.graph": graph,
        "clipmg.preset": cfg["name"],
        "clipmg.variant": cfg["variant"],
        "clipmg.num_classes": str(cfg["num_classes"]),
        "clipmg.checkpoint_sha256": meta["checkpoint_sha256"],
    }
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("clipmg")]
    del model.metadata_props[:]
    for k, v in [*keep, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = f"CLIP-MG {graph} ({cfg['name']}, {cfg['variant']}, {cfg['num_classes']} classes)"
