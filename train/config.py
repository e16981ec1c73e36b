"""``TrainConfig``: every training setting, from a JSON/TOML file plus command-line overrides."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

LAYOUT_NAMES: Tuple[str, ...] = ("openpose_json", "light_hand", "xlsx", "pyskl")  # dataset layouts (docs/data.md)


@dataclass(frozen=True)
class TrainConfig:
    # data
    data: str = ""  # dataset root
    layout: str = "openpose_json"  # openpose_json | light_hand | xlsx | pyskl
    val_fraction: float = 0.2  # videos held out for validation (the paper's 20 %)
    background: bool = False  # add a "no gesture" class mined from unlabelled spans
    strict: bool = False  # malformed files are errors instead of counted warnings
    cache_frames: bool = True  # keep decoded video frames in memory (small sets)
    # model
    preset: str = "clipmg-tiny"  # model preset name or config JSON path
    variant: str = "full"  # full | no_gating | no_cross_attention | no_pose_guidance | no_pose
    pretrained: str = ""  # open_clip tag or local CLIP weights file; empty = random init
    crop: str = "center"  # center | person
    person_scale: float = 0.0  # person crop: box side = this × the keypoints' extent; 0 = the preset's (1.25)
    # optimisation (spec section 9: ours, the paper gives none)
    epochs: int = 20
    batch_size: int = 16
    lr_new: float = 1e-4  # new modules
    lr_vit: float = 1e-5  # unfrozen ViT blocks, ln_post, proj
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    label_smoothing: float = 0.0
    class_balance: str = "none"  # none | sampler | loss: for the long tail
    logit_adjust: float = 0.0  # tau of logit adjustment by the class prior; 0 disables
    augment: bool = True  # random temporal sampling, flips and crop jitter (RGB and keypoints together)
    colour_jitter: float = 0.0  # with augment: brightness/contrast/saturation factors in [1 - c, 1 + c]
    ema: float = 0.0  # decay of an exponential moving average of the weights, which is validated and saved; 0 = off
    cache_frozen: bool = False  # cache the frozen ViT blocks' outputs across epochs (needs augment=false)
    amp: str = "auto"  # auto (bf16 on CUDA when supported, else fp16; off on CPU) | bf16 | fp16 | off
    # run
    out: str = "runs/clipmg"  # run directory: config, logs, best/last checkpoints
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    time_limit_min: float = 0.0  # stop after this many minutes (0 = no limit); checkpoints are kept
    max_steps: int = 0  # stop after this many optimiser steps in this invocation (0 = no limit)
    save_every: int = 0  # also write `last` every N steps (0 = at epoch ends only)
    resume: bool = False  # continue from <out>/last.safetensors exactly
    tensorboard: bool = False  # write TensorBoard logs besides the CSV log
    threads: int = 0  # torch CPU threads (0 = torch's default)

    def __post_init__(self) -> None:
        choices = {"class_balance": ("none", "sampler", "loss"), "amp": ("auto", "bf16", "fp16", "off"),
                   "crop": ("center", "person"),
                   "layout": LAYOUT_NAMES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("--epochs and --batch-size must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.colour_jitter < 1.0:
            raise ValueError(f"--colour-jitter must lie in [0, 1), got {self.colour_jitter}")
        if self.person_scale and not 0.5 <= self.person_scale <= 4.0:
            raise ValueError(f"--person-scale must lie in [0.5, 4] (0 keeps the preset's), got {self.person_scale}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"--ema must lie in [0, 1) (0 turns it off; 0.99-0.999 are usual), got {self.ema}")
        if self.cache_frozen and self.augment:
            raise ValueError("--cache-frozen needs --no-augment: cached ViT outputs are only valid when every "
                             "epoch sees the same frames")

    def preprocess(self, base: Any) -> Any:
        """The model's ``PreprocessConfig`` ``base`` with this run's crop policy (--crop, --person-scale)."""
        changes: Dict[str, Any] = {"crop": self.crop}
        if self.person_scale:
            changes["person_scale"] = self.person_scale
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _read_file(path: str) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        d = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"config file {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {e}") from e
    d = d.get("train", d)
    unknown = set(d) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"config file {p}: unknown settings {', '.join(sorted(unknown))}")
    return d


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """One ``--flag`` per ``TrainConfig`` field (booleans get ``--x/--no-x``)."""
    ap.add_argument("--config", help="JSON or TOML file of settings; command-line flags override it")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            ap.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = {"int": int, "float": float}.get(str(f.type), str)
            ap.add_argument(flag, dest=f.name, type=typ, default=None, help=f"(default: {f.default!r})")


def from_args(args: argparse.Namespace, base: Dict[str, Any] | None = None) -> TrainConfig:
    d: Dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        d.update(_read_file(args.config))
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            d[f.name] = v
    return TrainConfig(**d)


def parse(argv: Sequence[str] | None, description: str) -> TrainConfig:
    ap = argparse.ArgumentParser(description=description)
    add_arguments(ap)
    return from_args(ap.parse_args(argv))
