"""Fine-tuning: ``clipmg-train --init CKPT`` (start from a checkpoint's weights) and ``--freeze``.

A few takes of a user's own gestures (``clipmg-record``) are too little data to train CLIP-MG from
random weights, but enough to adapt a model that already learnt what hands near a face look like.
``init_from_checkpoint`` loads a checkpoint through the checkpoint loader (its weight digest is
verified), refuses one whose architecture or preprocessing differs from the run's (only the class
count may differ), keeps every weight whose name and shape match, and re-initialises the output
layer's rows of the classes the checkpoint does not know (a class it knows by name keeps its row).
``apply_freeze`` then chooses what trains: ``preset`` (the preset's frozen ViT stem and blocks, the
paper's default), ``tower`` (the whole visual tower frozen: the pose branch, gates and head train)
or ``all-but-head`` (only the classifier MLP trains).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import torch

from clipmg.model import CLIPMG
from clipmg.model.checkpoint import CheckpointError, config_differences, load_checkpoint, read_metadata
from clipmg.model.config import ConfigError, ModelConfig
from clipmg.stream.demo import DEMO_CHECKPOINT

from .config import FREEZE_CHOICES

DEMO = "demo"  # --init demo: the demo model's checkpoint (stream/assets)


def resolve_init(spec: str) -> Path:
    """The checkpoint ``--init`` names: ``demo`` or a path; refused in one sentence when it is not there."""
    if spec == DEMO:
        if not DEMO_CHECKPOINT.is_file():
            raise ConfigError(f"--init demo: the demo checkpoint {DEMO_CHECKPOINT} is missing from this installation")
        return DEMO_CHECKPOINT
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"--init {spec}: no such checkpoint file (give a .safetensors checkpoint or 'demo')")
    return path


def _flags_for(diffs: Sequence[str], cfg: ModelConfig) -> str:
    """The ``clipmg-train`` flags that would make the run match a checkpoint of ``cfg``, where flags can."""
    hints = []
    if any(d.startswith(("vision.", "pose.", "clip.", "head_hidden", "dropout")) for d in diffs):
        hints.append(f"--preset {cfg.name}")
    if any(d.startswith("variant") for d in diffs):
        hints.append(f"--variant {cfg.variant}")
    if any(d.startswith("preprocess.") for d in diffs):
        hints.append(f"--crop {cfg.preprocess.crop}")
        if cfg.preprocess.crop == "person":
            hints.append(f"--person-scale {cfg.preprocess.person_scale:g}")
    return " ".join(hints)


def check_init(spec: str, run: ModelConfig) -> Path:
    """The ``--init`` checkpoint's path, once its metadata shows the architecture and preprocessing of
    the run's model config ``run`` (only the class count and the preset's name may differ); else one
    sentence naming what differs and the flags that would match. Reads no weights, so a run that
    cannot start from it is refused before its data is read."""
    path = resolve_init(spec)
    ckpt = ModelConfig.from_dict(read_metadata(path)["config"])
    diffs = [d for d in config_differences(run, ckpt) if not d.startswith(("num_classes ", "name "))]
    if diffs:
        hint = _flags_for(diffs, ckpt)
        raise CheckpointError(
            f"--init {path} was trained with another model or preprocessing than this run's: {'; '.join(diffs[:4])}"
            + (f"; train with {hint} to fine-tune from it" if hint else "; choose a checkpoint of this configuration")
        )
    return path


def output_layer(model: CLIPMG) -> torch.nn.Linear:
    """The classifier's last layer: the one whose rows are the classes."""
    layer = model.classifier[-1]
    assert isinstance(layer, torch.nn.Linear)
    return layer


def init_from_checkpoint(model: CLIPMG, spec: str, class_names: Sequence[str]) -> str:
    """Load ``--init``'s weights into ``model`` (built for ``class_names``); returns one line saying what
    was kept. ``CheckpointError``/``ConfigError`` (one sentence) for a checkpoint that cannot be used."""
    path = check_init(spec, model.cfg)
    src, meta = load_checkpoint(path)  # digest verified, no pickled code
    own, theirs = model.state_dict(), src.state_dict()
    head = output_layer(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    head_keys = {f"{prefix}.weight", f"{prefix}.bias"}
    old_names: List[str] = list(meta["class_names"])
    same = old_names == list(class_names)
    keep: Dict[str, torch.Tensor] = {
        k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape and (same or k not in head_keys)
    }
    model.load_state_dict(keep, strict=False)
    skipped = sorted(k for k in own if k not in keep and k not in head_keys)
    if same:
        return f"--init {path}: all {len(keep)} weight tensors loaded (same classes)" + (
            f"; {len(skipped)} had no match and keep their initialisation" if skipped else ""
        )
    src_head = output_layer(src)
    known = [(i, old_names.index(n)) for i, n in enumerate(class_names) if n in old_names]
    with torch.no_grad():
        for i, j in known:  # a class the checkpoint knows by name keeps its output row
            head.weight[i].copy_(src_head.weight[j])
            head.bias[i].copy_(src_head.bias[j])
    new = [n for n in class_names if n not in old_names]
    return (
        f"--init {path}: {len(keep)} weight tensors loaded; the output layer is re-initialised for the new "
        f"class list ({len(known)} of {len(class_names)} classes kept their row"
        + (f", new: {', '.join(new[:6])}{'...' if len(new) > 6 else ''}" if new else "")
        + ")"
        + (f"; {len(skipped)} tensors had no match" if skipped else "")
    )


def apply_freeze(model: CLIPMG, freeze: str) -> int:
    """Turn training off for what ``--freeze`` names; returns the number of parameters still trained."""
    if freeze not in FREEZE_CHOICES:
        raise ConfigError(f"--freeze must be one of {', '.join(FREEZE_CHOICES)}, got {freeze!r}")
    if freeze == "tower":
        model.visual.requires_grad_(False)
    elif freeze == "all-but-head":
        model.requires_grad_(False)
        model.classifier.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
