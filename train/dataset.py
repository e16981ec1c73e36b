"""The training/evaluation ``Dataset``: model inputs for the clips of a ``ClipIndex``.

``MicroGestureDataset(index, cfg, train=...)`` turns clips into model inputs only through
``clipmg.model.sampling.clip_samples`` and ``clipmg.model.preprocess.prepare_window`` (the code path
live inference uses), with optional augmentations that move pixels and keypoints together. The index
is ``clipmg.train.index`` and the pipeline pieces (background mining, augmentations) are
``clipmg.train.pipeline``; their names stay importable from here.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from clipmg.model.config import ModelConfig
from clipmg.model.layouts import extract_layout
from clipmg.model.preprocess import prepare_window
from clipmg.model.sampling import clip_samples

from .config import LAYOUT_NAMES
from .index import (
    BACKGROUND_NAMES,
    VIDEO_SUFFIXES,
    Clip,
    ClipIndex,
    Source,
    build_index,
    detect_layout,
    duration_stats,
    has_keypoints,
    split_by_video,
)
from .pipeline import (
    AugmentConfig,
    affine_jitter,
    augment_window,
    colour_jitter,
    colour_jitter_images,
    flip_permutation,
    hflip,
    mine_background,
    mirror_137,
    rgb_candidates,
)
from .readers import DataError
from .readers_video import VideoReader

__all__ = [
    "MicroGestureDataset",
    # re-exported from .index, .pipeline and .config (their homes), for the old import path
    "BACKGROUND_NAMES",
    "VIDEO_SUFFIXES",
    "Clip",
    "ClipIndex",
    "Source",
    "build_index",
    "detect_layout",
    "duration_stats",
    "has_keypoints",
    "split_by_video",
    "AugmentConfig",
    "affine_jitter",
    "augment_window",
    "colour_jitter",
    "colour_jitter_images",
    "flip_permutation",
    "hflip",
    "mine_background",
    "mirror_137",
    "rgb_candidates",
    "LAYOUT_NAMES",
]


class MicroGestureDataset(torch.utils.data.Dataset):
    """Model inputs for the clips of a ``ClipIndex``.

    Item ``i`` is ``{"images": (T_r, 3, S, S) float32, "keypoints": (T_p, J, 3) float32 in
    model-input pixels, "label": int, "clip_id": str}``. Training mode samples frames at random
    inside each segment and applies ``augment``; evaluation uses centre samples and no augmentation.

    ``cache_frames``: ``True`` decodes each video once at construction and keeps the frames that
    sampling can reach (uint8, shared with forked DataLoader workers); ``"auto"`` does so when they
    fit in ``cache_budget_mb``; ``False`` decodes per item (a seek and a short decode). Clips with no
    readable video are skipped and counted ("missing video") unless ``require_rgb=False``, which
    feeds black frames of ``frame_size`` instead (pose-only debugging). A clip that fails to decode
    later is counted and replaced by the next clip, so an epoch never stops on one bad file (with
    ``index.issues.strict`` it raises instead).
    """

    def __init__(
        self,
        index: ClipIndex,
        cfg: ModelConfig,
        train: bool = False,
        augment: AugmentConfig | bool | None = None,
        cache_frames: bool | str = "auto",
        cache_budget_mb: float = 2048.0,
        require_rgb: bool = True,
        frame_size: Tuple[int, int] = (1280, 720),
    ) -> None:
        if cfg.num_classes != index.num_classes:
            raise ValueError(
                f"the model has {cfg.num_classes} classes but the dataset has {index.num_classes} "
                f"({', '.join(index.class_names[:4])}, ...); build the model with "
                f"num_classes={index.num_classes}"
            )
        self.cfg, self.train, self.index, self.issues = cfg, train, index, index.issues
        self.class_names = index.class_names
        self.frame_size = frame_size
        if augment is True or (augment is None and train):
            augment = AugmentConfig()
        self.augment: AugmentConfig | None = augment if (train and isinstance(augment, AugmentConfig)) else None
        self.perm = flip_permutation(cfg.pose.layout) if self.augment else None
        self.keypoints = self._layout_keypoints(index, cfg.pose.layout)
        clips = []
        for c in index.clips:
            if require_rgb and index.sources[c.source].rgb is None:
                self.issues.report("missing video", f"clip {c.clip_id}: no readable video for {c.source}")
                continue
            clips.append(c)
        self.clips = clips
        self.cache: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}  # source -> (sorted indices, frames)
        self.cache_misses = 0
        self._bad: set[int] = set()
        if cache_frames not in (True, False, "auto"):
            raise ValueError(f"cache_frames must be True, False or 'auto', got {cache_frames!r}")
        if cache_frames:
            self._fill_cache(cache_frames == "auto", cache_budget_mb)

    @staticmethod
    def _layout_keypoints(index: ClipIndex, layout: str) -> Dict[str, np.ndarray]:
        if index.keypoint_layout == layout:
            return {k: s.keypoints for k, s in index.sources.items()}
        if index.keypoint_layout == "openpose137":
            return {k: extract_layout(s.keypoints, layout) for k, s in index.sources.items()}
        raise ValueError(
            f"the index keeps {index.keypoint_layout!r} keypoints but the model needs {layout!r}; "
            f"build the index with keypoint_layout='openpose137' or {layout!r}"
        )

    def cache_bytes(self) -> int:
        """Bytes the frame cache needs (or holds) for these clips."""
        total = 0
        for s, v in self._wanted().items():
            info = self.index.sources[s].rgb
            assert info is not None  # _wanted() lists sources with RGB only
            total += len(v) * info.height * info.width * 3
        return total

    def _wanted(self) -> Dict[str, np.ndarray]:
        want: Dict[str, List[np.ndarray]] = {}
        for c in self.clips:
            if self.index.sources[c.source].rgb is not None:
                want.setdefault(c.source, []).append(rgb_candidates(c.start, c.end, self.cfg, self.train))
        return {s: np.unique(np.concatenate(v)) for s, v in want.items()}

    def _fill_cache(self, auto: bool, budget_mb: float) -> None:
        if auto and self.cache_bytes() > budget_mb * 2**20:
            return
        for src, idx in sorted(self._wanted().items()):
            try:
                info = self.index.sources[src].rgb
                assert info is not None  # _wanted() lists sources with RGB only
                frames = VideoReader(info.path, info).read_all(idx.tolist())
            except DataError as e:
                n = sum(c.source == src for c in self.clips)
                self.issues.report("unreadable video", f"{e}; its {n} clips are skipped", count=n)
                self.clips = [c for c in self.clips if c.source != src]
                continue
            self.cache[src] = (idx, np.stack([frames[i] for i in idx.tolist()]))

    def __len__(self) -> int:
        return len(self.clips)

    def _frames(self, source: str, idx: np.ndarray) -> np.ndarray:
        """RGB frames ``(N, H, W, 3)`` uint8 for frame numbers ``idx``."""
        src = self.index.sources[source]
        if src.rgb is None:  # pose-only: black frames of the keypoints' pixel space
            w, h = src.frame_size or self.frame_size
            return np.zeros((len(idx), h, w, 3), np.uint8)
        if source in self.cache:
            have, frames = self.cache[source]
            pos = np.searchsorted(have, idx)
            if (pos < len(have)).all() and (have[np.minimum(pos, len(have) - 1)] == idx).all():
                return frames[pos]
            self.cache_misses += 1
        return VideoReader(src.rgb.path, src.rgb).read(idx.tolist())

    def _rng(self) -> np.random.Generator:
        # Drawn from torch's generator, so DataLoader worker seeding and torch.manual_seed apply.
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def sample(self, clip: Clip, rng: np.random.Generator | None = None) -> Dict[str, object]:
        """The model inputs of one clip (see the class docstring)."""
        c = self.cfg.clip
        mode = "random" if self.train else "center"
        pose_idx, rgb_idx = clip_samples(clip.start, clip.end, c.pose_frames, c.rgb_frames, c.rgb_offset, mode, rng)
        kp = self.keypoints[clip.source][pose_idx]  # (T_p, J, 3) source pixels
        frames = self._frames(clip.source, rgb_idx)  # (T_r, H, W, 3)
        if self.augment is not None and rng is not None and self.perm is not None:
            frames, kp = augment_window(frames, kp, self.perm, self.augment, rng)
        images, kp_in, _ = prepare_window(frames, kp, self.cfg)
        if self.augment is not None and rng is not None and self.augment.colour > 0:
            p = self.cfg.preprocess
            images = colour_jitter_images(images, p.mean, p.std, self.augment, rng)
        return {
            "images": torch.from_numpy(images),
            "keypoints": torch.from_numpy(kp_in),
            "label": clip.label,
            "clip_id": clip.clip_id,
        }

    def __getitem__(self, i: int) -> Dict[str, object]:
        rng = self._rng() if self.train else None
        for k in range(len(self.clips)):
            j = (i + k) % len(self.clips)
            if j in self._bad:
                continue
            try:
                return self.sample(self.clips[j], rng)
            except DataError as e:
                self._bad.add(j)
                self.issues.report("unreadable clip", f"clip {self.clips[j].clip_id}: {e}; replaced by another clip")
        raise DataError("every clip of the dataset failed to load; see the warnings above")
