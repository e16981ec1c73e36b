"""The open_clip ViT visual tower: construction, CLIP weight loading, frozen/trainable split."""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from safetensors.torch import load_file
from torch import nn

from .config import VisionConfig

log = logging.getLogger(__name__)


def build_visual(cfg: VisionConfig) -> nn.Module:
    """An open_clip ``VisionTransformer`` with random weights (no network access)."""
    if cfg.width % cfg.heads:
        raise ValueError(f"vision width {cfg.width} is not divisible by {cfg.heads} heads")
    vcfg = CLIPVisionCfg(
        layers=cfg.layers,
        width=cfg.width,
        head_width=cfg.width // cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        patch_size=cfg.patch_size,
        image_size=cfg.image_size,
    )
    return _build_vision_tower(cfg.embed_dim, vcfg, quick_gelu=cfg.quick_gelu)


def _visual_state_from_file(path: Path) -> dict:
    """Visual-tower weights from a local file: safetensors, or a plain state-dict pickle loaded with
    ``weights_only=True`` (no code execution). Accepts full CLIP state dicts (``visual.*`` keys)."""
    if path.suffix == ".safetensors":
        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - reported to the user with the file name
            raise ValueError(
                f"cannot read CLIP weights from {path}: {e}. Give a .safetensors file or a "
                f"plain state-dict saved with torch.save"
            ) from e
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict")
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("visual.") for k in sd):
        sd = {k[len("visual.") :]: v for k, v in sd.items() if k.startswith("visual.")}
    return sd


def load_clip_weights(visual: nn.Module, cfg: VisionConfig, pretrained: str) -> None:
    """Load CLIP visual weights into ``visual`` from a local file or an open_clip pretrained tag.

    A tag (for example ``"openai"``) downloads weights through open_clip's hub on first use; that
    happens only because the caller asked for it.
    """
    path = Path(pretrained).expanduser()
    if path.exists():
        sd = _visual_state_from_file(path)
        source = str(path)
    else:
        tags = open_clip.list_pretrained_tags_by_model(cfg.clip_model) if cfg.clip_model != "tiny" else []
        if pretrained not in tags:
            raise ValueError(
                f"{pretrained!r} is neither a local file nor an open_clip pretrained tag for "
                f"{cfg.clip_model}; tags: {', '.join(tags) or 'none'}"
            )
        log.info(
            "downloading open_clip weights %s/%s (asked for by pretrained=%r)", cfg.clip_model, pretrained, pretrained
        )
        clip = open_clip.create_model(cfg.clip_model, pretrained=pretrained)
        sd = clip.visual.state_dict()
        source = f"open_clip:{cfg.clip_model}/{pretrained}"
    missing, unexpected = visual.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"CLIP weights from {source} do not fit the {cfg.clip_model} tower: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    log.info("loaded CLIP visual weights from %s", source)


def freeze_stem(visual: nn.Module, trainable_blocks: int) -> int:
    """Freeze patch embed, class/positional embeddings, ``ln_pre`` and all but the last blocks.

    Returns the number of frozen blocks. ``trainable_blocks == len(blocks)`` freezes nothing, stem
    included (a tower trained from scratch has no pretrained stem worth keeping).
    """
    blocks = visual.transformer.resblocks
    n_frozen = len(blocks) - trainable_blocks
    if n_frozen == 0:
        return 0
    frozen = [visual.conv1, visual.ln_pre, *blocks[:n_frozen]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    visual.class_embedding.requires_grad_(False)
    visual.positional_embedding.requires_grad_(False)
    return n_frozen
