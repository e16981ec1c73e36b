"""Configuration dataclasses and the preset registry.

Presets are JSON files in ``model/presets/``; ``list_presets()`` lists them and
``load_config(name_or_path)`` reads one (or any JSON file of the same shape).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Tuple

from .errors import ClipmgError
from .layouts import get_layout


class ConfigError(ClipmgError, ValueError):
    """A setting the user gave (a flag, a config file, a preset name) that cannot work; the message
    names it and says what is allowed. (A ``ValueError`` too, for callers written before ``ClipmgError``.)"""


VARIANTS: Tuple[str, ...] = ("full", "no_gating", "no_cross_attention", "no_pose_guidance", "no_pose")


CLIP_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalisation
CLIP_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# Class names that mean "no micro-gesture": trained like any class, never announced live as a gesture.
BACKGROUND_LABELS: Tuple[str, ...] = ("no gesture", "idle", "background")


@dataclass(frozen=True)
class VisionConfig:
    """The open_clip ViT visual tower."""

    clip_model: str = "ViT-B-16"  # open_clip architecture name the tower mirrors (for pretrained tags)
    image_size: int = 224  # square input side in pixels
    patch_size: int = 16  # ViT patch side in pixels
    width: int = 768  # D, token width
    layers: int = 12  # L, number of blocks
    heads: int = 12  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio * width
    embed_dim: int = 512  # E, output of `proj`
    quick_gelu: bool = True  # OpenAI CLIP weights were trained with QuickGELU
    # the last blocks that are fine-tuned; the rest are frozen with the stem. ``layers`` trains the
    # whole tower, stem included: for towers without pretrained weights (the tiny preset)
    trainable_blocks: int = 2

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:  # N_p
        return self.grid * self.grid


@dataclass(frozen=True)
class PoseConfig:
    """Pose input: layout, heatmap volume, relevance map (spec sections 4-6)."""

    layout: str = "upper22"  # named keypoint layout (model/layouts.py)
    num_joints: int = 22  # J; must match the layout
    heatmap_size: int = 56  # canvas side H_h = W_h
    heatmap_sigma: float = 0.6  # sigma_h in canvas pixels
    min_confidence: float = 1e-3  # joints below this are absent
    skeleton_channels: Tuple[int, int, int] = (64, 128, 256)  # the three 3D-conv stages
    relevance_sigma: float = 16.0  # sigma_s in model-input pixels
    relevance_alpha: float = 0.1  # alpha: floor of the motion weight
    # W_p's initial weights are PyTorch's default times this (ours: the paper gives no init). With
    # gain 1 the pose part of the gate pre-activations W_q [q ; p] was 8x smaller than the visual
    # part at initialisation and the pose pathway learned slowly (docs/model.md); only the
    # initialisation changes, so checkpoints are unaffected
    proj_init_gain: float = 8.0


@dataclass(frozen=True)
class ClipConfig:
    """Temporal sampling of one window (spec section 1)."""

    pose_frames: int = 32  # T_p
    rgb_frames: int = 8  # T_r; each RGB frame owns pose_frames // rgb_frames pose samples
    rgb_offset: int = 2  # RGB frame t is pose sample group*t + rgb_offset

    @property
    def group(self) -> int:
        return self.pose_frames // self.rgb_frames


@dataclass(frozen=True)
class PreprocessConfig:
    """What every frame goes through before the model; travels inside checkpoints and engines."""

    crop: str = "center"  # 'center' (CLIP standard) or 'person' (box around the keypoints)
    person_scale: float = 1.25  # person crop: box side = scale * keypoint extent
    person_smoothing: float = 0.6  # person crop: causal exponential smoothing factor of the box
    mean: Tuple[float, float, float] = CLIP_MEAN  # CLIP normalisation
    std: Tuple[float, float, float] = CLIP_STD


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a CLIP-MG network and its inputs."""

    name: str = "clipmg-vitb16"
    variant: str = "full"  # one of VARIANTS (paper Table 2)
    num_classes: int = 32  # C; from the dataset's label list
    head_hidden: int = 512  # classifier hidden width
    dropout: float = 0.5  # classifier dropout
    vision: VisionConfig = field(default_factory=VisionConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        v = self.vision
        if v.image_size % v.patch_size:
            raise ValueError(f"image_size {v.image_size} is not a multiple of patch_size {v.patch_size}")
        if not 1 <= v.trainable_blocks <= v.layers:
            raise ValueError(f"trainable_blocks must be in [1, {v.layers}], got {v.trainable_blocks}")
        if not self.pose.proj_init_gain > 0:
            raise ValueError(f"pose.proj_init_gain must be positive, got {self.pose.proj_init_gain}")
        if self.clip.pose_frames % self.clip.rgb_frames:
            raise ValueError("pose_frames must be a multiple of rgb_frames")
        if self.preprocess.crop not in ("center", "person"):
            raise ValueError(f"unknown crop policy {self.preprocess.crop!r}; choose 'center' or 'person'")
        if len(get_layout(self.pose.layout)) != self.pose.num_joints:
            raise ValueError(
                f"layout {self.pose.layout!r} has {len(get_layout(self.pose.layout))} joints, "
                f"but num_joints is {self.pose.num_joints}"
            )

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(sorted(unknown))}")
        subs = {"vision": VisionConfig, "pose": PoseConfig, "clip": ClipConfig, "preprocess": PreprocessConfig}
        for key, sub in subs.items():
            if key in d and isinstance(d[key], dict):
                sd = dict(d[key])
                sknown = {f.name for f in dataclasses.fields(sub)}
                bad = set(sd) - sknown
                if bad:
                    raise ValueError(f"unknown {key} config fields: {', '.join(sorted(bad))}")
                for f in dataclasses.fields(sub):  # JSON gives lists where tuples are declared
                    if f.name in sd and isinstance(sd[f.name], list):
                        sd[f.name] = tuple(sd[f.name])
                d[key] = sub(**sd)
        return cls(**d)

    def replace(self, **overrides: Any) -> "ModelConfig":
        return dataclasses.replace(self, **overrides)


def _preset_files() -> Dict[str, Any]:
    root = resources.files("clipmg.model.presets")
    return {p.name[:-5]: p for p in root.iterdir() if p.name.endswith(".json")}


def list_presets() -> Tuple[str, ...]:
    """Names of the built-in presets, sorted."""
    return tuple(sorted(_preset_files()))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A preset by name, or a JSON file of the same shape by path."""
    presets = _preset_files()
    if str(name_or_path) in presets:
        return ModelConfig.from_dict(json.loads(presets[str(name_or_path)].read_text()))
    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        try:
            return ModelConfig.from_dict(json.loads(p.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as e:
            raise ConfigError(f"model config {p} cannot be used: {e}") from e
    raise ConfigError(
        f"unknown preset {str(name_or_path)!r}; choose one of {', '.join(sorted(presets))} "
        f"or give the path of a model config JSON file"
    )
