"""The checkpoint format without PyTorch: its metadata, and what a checkpoint or artifact must match.

A checkpoint is one safetensors file whose header carries the JSON metadata under ``clipmg`` (model
config, class names, clip-duration statistics, metrics, code version). Reading the metadata needs
only ``safetensors`` and NumPy; the weights are loaded by ``clipmg.model.checkpoint``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence

from safetensors import safe_open

from .config import ModelConfig

FORMAT = "clipmg-checkpoint/1"
META_KEY = "clipmg"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def read_metadata(path: str | Path) -> Dict[str, Any]:
    """The metadata of a checkpoint without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
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


EXPECTATIONS = ("config", "class_names", "num_classes", "variant", "preset", "preprocess", "image_size",
                "num_joints", "layout", "rgb_frames", "pose_frames")


def check_expectations(meta: Dict[str, Any], where: Path | str, what: str = "checkpoint",
                       error: type = CheckpointError, **expect: Any) -> None:
    """Refuse, with one sentence (``error``), metadata that does not match what the caller asked for.

    ``what``: "checkpoint" or "artifact" (the sentence names it and says what to use instead);
    ``expect`` keys: ``EXPECTATIONS``.
    """
    diffs = expectation_differences(meta, what, **expect)
    if diffs:
        use = ("a checkpoint trained for this configuration" if what == "checkpoint" else
               "an artifact exported from a checkpoint trained for this configuration")
        lead = f"checkpoint {where}" if what == "checkpoint" else str(where)
        raise error(f"{lead} does not match the requested configuration: " + "; ".join(diffs[:6])
                    + f". Use {use}, or drop the conflicting options.")


def user_message(e: BaseException) -> str:
    """An error as one line for a command line. torch's refusal of a pickle with code in it spans
    many lines and suggests ``weights_only=False``: it is replaced by what matters (refused, why)."""
    text = str(e) or type(e).__name__
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        text = (text.split("Weights only load failed")[0].rstrip(" :") + ": refused: the file holds pickled "
                f"objects{f' ({found.group(1)})' if found else ''}, not only tensors, and is never run; "
                f"give a .safetensors file or a plain state dict")
    return " ".join(text.split())
