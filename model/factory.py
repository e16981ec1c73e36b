"""Public constructors: ``list_presets`` and ``create_model``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .clipmg import CLIPMG
from .config import VARIANTS, ModelConfig, load_config
from .tower import load_clip_weights


def create_model(
    preset_or_path: str | Path = "clipmg-vitb16",
    num_classes: int | None = None,
    variant: str | None = None,
    pretrained: str | None = None,
    **overrides: Any,
) -> CLIPMG:
    """Build CLIP-MG from a preset name or a model-config JSON path.

    ``pretrained``: an open_clip tag (e.g. ``"openai"``, downloaded only because it is asked for)
    or a local weights file for the CLIP visual tower; ``None`` keeps random weights.
    Other keyword overrides replace top-level ``ModelConfig`` fields.
    """
    cfg = load_config(preset_or_path)
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    changes: dict[str, Any] = dict(overrides)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if variant is not None:
        changes["variant"] = variant
    if changes:
        unknown = set(changes) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown model option(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(ModelConfig.__dataclass_fields__)}"
            )
        cfg = cfg.replace(**changes)
    return build_model(cfg, pretrained)


def build_model(cfg: ModelConfig, pretrained: str | None = None) -> CLIPMG:
    model = CLIPMG(cfg)
    if pretrained:
        load_clip_weights(model.visual, cfg.vision, pretrained)
    return model
