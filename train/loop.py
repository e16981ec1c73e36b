"""Pure pieces of training: the LR schedule, the epoch sampler, the loss, metrics, distributed info."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clipmg.model.config import ConfigError


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 (nanoGPT's ``get_lr`` shape)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        """Set by ``torchrun``: RANK, WORLD_SIZE, LOCAL_RANK."""
        return cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )


class EpochSampler(torch.utils.data.Sampler[int]):
    """Deterministic per-epoch order from ``(seed, epoch)``, sharded across ranks, resumable mid-epoch.

    ``balanced=True`` draws with replacement with probability inversely proportional to class
    frequency (class-balanced sampling for the long tail).
    """

    def __init__(self, labels: Sequence[int], seed: int, dist: DistInfo, balanced: bool = False) -> None:
        self.labels = np.asarray(labels)
        self.seed, self.dist, self.balanced = seed, dist, balanced
        self.epoch, self.start = 0, 0
        self.per_rank = int(math.ceil(len(self.labels) / dist.world))

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Next iteration yields epoch ``epoch`` from position ``start`` (in this rank's share)."""
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.labels)
        total = self.per_rank * self.dist.world
        if self.balanced:
            counts = np.bincount(self.labels)
            w = 1.0 / counts[self.labels]
            idx = rng.choice(n, size=total, replace=True, p=w / w.sum())
        else:
            idx = rng.permutation(n)
            idx = np.concatenate([idx, idx[: total - n]])  # pad so every rank gets the same count
        return idx[self.dist.rank :: self.dist.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.start :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


def class_prior(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_classes).float()
    return (counts + 1.0) / (counts.sum() + num_classes)


def loss_fn(
    logits: torch.Tensor,
    target: torch.Tensor,
    prior: torch.Tensor,
    class_balance: str,
    label_smoothing: float,
    logit_adjust: float,
) -> torch.Tensor:
    """Cross-entropy with the long-tail options: class-balanced weights, logit adjustment
    (Menon et al. 2021: add ``tau * log prior`` to the logits during training), label smoothing."""
    if logit_adjust > 0:
        logits = logits + logit_adjust * prior.log().to(logits)
    weight = None
    if class_balance == "loss":
        weight = (1.0 / prior).to(logits)
        weight = weight / weight.mean()
    return F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=label_smoothing)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, class_names: List[str]) -> Dict[str, object]:
    """Top-1, top-5, per-class and macro accuracy, and the confusion matrix (rows = truth).

    ``top5`` is ``None`` when there are 5 classes or fewer (top-5 would be 1 by construction).
    ``per_class`` holds the classes with clips; ``without_clips`` names the others (no accuracy can be
    given for them, and the macro average leaves them out). ``logits`` ``(N, C)``, ``labels`` ``(N,)``;
    ``N`` must be at least 1 (an empty set has no accuracy: the caller says so instead).
    """
    c = len(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("classification_metrics needs at least one clip")
    pred = logits.argmax(1)
    topk = np.argsort(-logits, axis=1)[:, :5]
    conf = np.zeros((c, c), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    support = conf.sum(1)
    per_class = {class_names[i]: float(conf[i, i] / support[i]) for i in range(c) if support[i] > 0}
    return {
        "count": int(len(labels)),
        "top1": float((pred == labels).mean()),
        "top5": float((topk == labels[:, None]).any(1).mean()) if c > 5 else None,
        "macro": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "without_clips": [class_names[i] for i in range(c) if support[i] == 0],
        "confusion": conf.tolist(),
    }


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPUs "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from e


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA; ``auto`` prefers bf16 where the GPU supports it."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]
