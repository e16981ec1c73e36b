"""From a ``TrainConfig`` to the train/val datasets, class names, split and statistics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List

from clipmg.model import ModelConfig

from .config import TrainConfig
from .dataset import MicroGestureDataset
from .index import build_index, has_keypoints
from .pipeline import AugmentConfig
from .readers import DataError

log = logging.getLogger("clipmg.train")


@dataclass
class TrainData:
    train: MicroGestureDataset
    val: MicroGestureDataset
    class_names: List[str]
    train_labels: List[int]
    duration_stats: Dict[str, float]
    split: Dict[str, Any]  # how the validation videos were chosen, and which they are
    summary: Dict[str, Any]  # clip counts and skipped items


def build_data(cfg: TrainConfig, model_cfg: ModelConfig) -> TrainData:
    """Index ``cfg.data`` once, split it by video, and make the two datasets for ``model_cfg``."""
    index = build_index(
        cfg.data,
        cfg.layout,
        background=cfg.background,
        strict=cfg.strict,
        keypoint_layout=model_cfg.pose.layout,
        seed=cfg.seed,
    )
    if cfg.variant != "no_pose" and not any(has_keypoints(s.keypoints) for s in index.sources.values()):
        raise DataError(
            f"no video in {cfg.data} has usable keypoints (every point is missing, has confidence 0 or "
            f"was NaN), and the {cfg.variant} model needs them; fix the keypoint files, or train "
            f"--variant no_pose on the RGB alone"
        )
    model_cfg = model_cfg.replace(num_classes=index.num_classes, preprocess=cfg.preprocess(model_cfg.preprocess))
    tr_idx, va_idx = index.split(cfg.val_fraction, cfg.seed)
    cache = True if cfg.cache_frames else False
    # augment=False means the same frames every epoch (centre sampling, no flips or jitter), which is
    # also what makes caching the frozen ViT outputs valid
    augment = AugmentConfig(colour=cfg.colour_jitter, roll=cfg.roll_jitter) if cfg.augment else False
    train = MicroGestureDataset(tr_idx, model_cfg, train=cfg.augment, augment=augment, cache_frames=cache)
    val = MicroGestureDataset(va_idx, model_cfg, train=False, cache_frames=cache)
    if len(train) == 0:
        raise DataError(f"no usable training clips in {cfg.data} ({index.issues.summary()})")
    log.info(
        "data: %d train clips (%d videos), %d val clips (%d videos), %d classes; %s",
        len(train),
        len(tr_idx.videos),
        len(val),
        len(va_idx.videos),
        index.num_classes,
        index.issues.summary(),
    )
    return TrainData(
        train=train,
        val=val,
        class_names=list(index.class_names),
        train_labels=[c.label for c in train.clips],
        duration_stats=index.duration_stats(),
        split={
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "val_videos": va_idx.videos,
            "background": cfg.background,
        },
        summary={
            "train_clips": len(train),
            "val_clips": len(val),
            "skipped": dict(index.issues.counts),
            "skipped_summary": index.issues.summary(),
        },
    )
