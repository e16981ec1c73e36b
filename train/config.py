"""``TrainConfig``: every training setting, from a JSON/TOML file plus command-line overrides.

Each field is declared once with :func:`~clipmg.model.settings.setting` (``model/settings.py``, shared
with the live side's ``StreamConfig``): its default, its help text (the ``--flag``'s help) and its
allowed values (a tuple of names, or a :class:`Range`); the flags are generated from the fields.
``TrainConfig`` checks every field against its declaration when it is made, so a value that cannot
work (a NaN learning rate, a negative step count) is refused with one sentence (``ConfigError``: exit
status 2) before any data is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import tomllib

from clipmg.model import settings
from clipmg.model.config import VARIANTS, ConfigError
from clipmg.model.settings import Range, setting

LAYOUT_NAMES: Tuple[str, ...] = ("openpose_json", "light_hand", "xlsx", "pyskl")  # dataset layouts (docs/data.md)
FREEZE_CHOICES: Tuple[str, ...] = ("preset", "tower", "all-but-head")  # --freeze (train/finetune.py)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


@dataclass(frozen=True)
class TrainConfig:
    # data
    data: str = setting("", "dataset root (a folder, or a pyskl .pkl file); make one with clipmg-synth")
    layout: str = setting("openpose_json", "dataset layout (docs/data.md)", LAYOUT_NAMES)
    val_fraction: float = setting(
        0.2,
        "fraction of the videos held out for validation (the paper's 20 %); 0 = no validation: only `last` is written",
        Range(0.0, 1.0, "hi"),
    )
    background: bool = setting(False, "add a 'no gesture' class mined from unlabelled spans")
    strict: bool = setting(False, "malformed files are errors instead of counted warnings")
    cache_frames: bool = setting(True, "keep decoded video frames in memory (small sets)")
    # model
    preset: str = setting("clipmg-tiny", "model preset name or the path of a model config JSON file")
    variant: str = setting("full", "model variant (paper Table 2)", VARIANTS)
    pretrained: str = setting(
        "", "open_clip tag or local CLIP weights file (.safetensors or torch.save); empty = random init"
    )
    init: str = setting(
        "",
        "fine-tune: start from this checkpoint's weights ('demo': the shipped demo model); every weight whose "
        "name and shape fit is kept, the output layer is re-initialised for classes the checkpoint lacks",
    )
    freeze: str = setting(
        "preset",
        "what is not trained: the preset's frozen ViT stem and blocks; the whole visual tower too; or "
        "everything but the classifier head (quickest few-shot fine-tuning)",
        FREEZE_CHOICES,
    )
    crop: str = setting("center", "crop policy", ("center", "person"))
    # its allowed values are 0 or [0.5, 4]: checked in __post_init__
    person_scale: float = setting(
        0.0, "person crop: box side = this x the keypoints' extent, in [0.5, 4]; 0 = the preset's (1.25)"
    )
    # optimisation (spec section 9: ours, the paper gives none)
    epochs: int = setting(20, "passes over the training clips", Range(1))
    batch_size: int = setting(16, "clips per optimiser step (per process)", Range(1))
    lr_new: float = setting(1e-4, "peak learning rate of the new modules", Range(0.0, 10.0, "lo"))
    lr_vit: float = setting(
        1e-5, "peak learning rate of the unfrozen ViT blocks, ln_post and proj", Range(0.0, 10.0, "lo")
    )
    weight_decay: float = setting(0.05, "AdamW weight decay", Range(0.0))
    warmup_epochs: float = setting(1.0, "epochs of linear learning-rate warm-up before the cosine decay", Range(0.0))
    grad_clip: float = setting(1.0, "max gradient norm; 0 disables clipping", Range(0.0))
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy", Range(0.0, 1.0, "hi"))
    class_balance: str = setting(
        "none", "for the long tail: none, a class-balanced sampler, or a weighted loss", ("none", "sampler", "loss")
    )
    logit_adjust: float = setting(0.0, "tau of logit adjustment by the class prior; 0 disables", Range(0.0))
    augment: bool = setting(True, "random temporal sampling, flips and crop jitter (RGB and keypoints together)")
    colour_jitter: float = setting(
        0.0, "with --augment: brightness/contrast/saturation factors in [1 - c, 1 + c]", Range(0.0, 1.0, "hi")
    )
    roll_jitter: float = setting(
        0.0,
        "with --augment: largest camera roll in degrees; each training window is turned by an angle "
        "drawn from [-r, r] about the frame centre, pixels and keypoints together; 0 = off",
        Range(0.0, 45.0),
    )
    rgb_dropout: float = setting(
        0.0,
        "probability that a training clip's RGB frames are blanked (the normalised mean: grey), so that the "
        "model learns to decide from the pose alone when the pixels say nothing; 0 = off",
        Range(0.0, 1.0, "hi"),
    )
    ema: float = setting(
        0.0,
        "decay of an exponential moving average of the weights, which is validated and "
        "saved; 0 = off (0.99-0.999 are usual)",
        Range(0.0, 1.0, "hi"),
    )
    cache_frozen: bool = setting(False, "cache the frozen ViT blocks' outputs across epochs (needs --no-augment)")
    amp: str = setting(
        "auto",
        "mixed precision: auto (bf16 on CUDA when supported, else fp16; off on CPU)",
        ("auto", "bf16", "fp16", "off"),
    )
    # run
    out: str = setting("runs/clipmg", "run directory: config, logs, best/last checkpoints")
    seed: int = setting(
        0, "random seed of the split, the initialisation, the sampling and the augmentation", Range(0, 2**32 - 1)
    )
    workers: int = setting(0, "DataLoader worker processes (0 = load in the training process)", Range(0))
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    time_limit_min: float = setting(
        0.0, "stop after this many minutes (0 = no limit); checkpoints are kept", Range(0.0)
    )
    max_steps: int = setting(0, "stop after this many optimiser steps in this invocation (0 = no limit)", Range(0))
    save_every: int = setting(0, "also write `last` every N steps (0 = at epoch ends only)", Range(0))
    resume: bool = setting(False, "continue from <out>/last.safetensors exactly")
    tensorboard: bool = setting(False, "write TensorBoard logs besides the CSV log")
    threads: int = setting(0, "torch CPU threads (0 = torch's default)", Range(0, 4096))

    def __post_init__(self) -> None:
        settings.check_fields(self)
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not (self.person_scale == 0 or 0.5 <= self.person_scale <= 4.0):  # NaN fails both
            raise ConfigError(f"--person-scale must lie in [0.5, 4] (0 keeps the preset's), got {self.person_scale}")
        if self.init and self.pretrained:
            raise ConfigError(
                "give --init or --pretrained, not both: the --init checkpoint's weights include its visual tower"
            )
        if self.cache_frozen and self.rgb_dropout:
            raise ConfigError("--rgb-dropout needs the frames themselves; it cannot be used with --cache-frozen")
        if not self.augment and (self.roll_jitter or self.colour_jitter):
            flag = "--roll-jitter" if self.roll_jitter else "--colour-jitter"
            raise ConfigError(f"{flag} is an augmentation: it needs --augment (it is off with --no-augment)")
        if self.cache_frozen and self.augment:
            raise ConfigError(
                "--cache-frozen needs --no-augment: cached ViT outputs are only valid when every "
                "epoch sees the same frames"
            )

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
        raise ConfigError(f"config file {p} does not exist")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from e
    try:
        d = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {e}") from e
    if not isinstance(d, dict) or not isinstance(d.get("train", d), dict):
        raise ConfigError(f"config file {p} must hold a table (object) of settings")
    d = d.get("train", d)
    unknown = set(d) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ConfigError(f"config file {p}: unknown settings {', '.join(sorted(unknown))}")
    return d


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``--config`` and one ``--flag`` per ``TrainConfig`` field, with the field's help (booleans get
    ``--x/--no-x``); a flag not given is ``None``, so that the config file's value stands."""
    ap.add_argument(
        "--config",
        help="JSON or TOML file of settings (a [train] table or the settings at the "
        "top level); command-line flags override it",
    )
    settings.add_arguments(ap, TrainConfig, layered=True)


def from_args(args: argparse.Namespace, base: Dict[str, Any] | None = None) -> TrainConfig:
    d: Dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        d.update(_read_file(args.config))
    d.update(settings.values_from_args(TrainConfig, args, given_only=True))
    return TrainConfig(**d)


def parse(argv: Sequence[str] | None, description: str, prog: str | None = None) -> TrainConfig:
    ap = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(ap)
    return from_args(ap.parse_args(argv))
