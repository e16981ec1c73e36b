"""Clip index, split by video, background mining and the training/evaluation ``Dataset``.

``build_index(root, layout)`` parses every keypoint file once (kept in memory), validates each
labelled clip against the frames that exist and returns a ``ClipIndex``; ``index.split()`` holds out
20 % of the videos. ``MicroGestureDataset(index, cfg, train=...)`` turns clips into model inputs only
through ``clipmg.model.sampling.clip_samples`` and ``clipmg.model.preprocess.prepare_window`` (the
code path live inference uses), with optional augmentations that move pixels and keypoints together.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from clipmg.model.config import BACKGROUND_LABELS, ModelConfig
from clipmg.model.layouts import extract_layout, get_layout, layout_indices
from clipmg.model.preprocess import prepare_window
from clipmg.model.sampling import clip_samples, rgb_positions

from .config import LAYOUT_NAMES
from .readers import (IMIGUE_CLASSES, DataError, Issues, read_class_names, read_label_csv, read_light_hand_csv,
                      read_openpose_folder, read_openpose_xlsx)
from .readers_pyskl import read_pyskl
from .readers_video import VideoInfo, VideoReader, probe_video

log = logging.getLogger("clipmg.data")
BACKGROUND_NAMES: Tuple[str, ...] = BACKGROUND_LABELS  # what live use never announces
VIDEO_SUFFIXES: Tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov")


@dataclass(frozen=True)
class Clip:
    """One sample: frames ``start..end`` (inclusive) of ``source``; ``video`` groups clips for the split."""

    clip_id: str  # <video>_<row> for labelled clips, <video>_bg<k> for mined background windows
    video: str
    source: str  # key of the keypoint / RGB source (the video itself, or a pyskl frame_dir)
    label: int
    start: int
    end: int
    background: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass
class Source:
    """Keypoints of one video (or pyskl clip), parsed once: ``(T, J, 3)`` in the index's layout."""

    keypoints: np.ndarray
    rgb: VideoInfo | None = None  # None: no readable video (pose only)
    frame_size: Tuple[int, int] | None = None  # (width, height) of the keypoint pixel space if known

    @property
    def num_frames(self) -> int:
        """Frames usable by a clip: the keypoint frames, and the video's when there is one."""
        n = len(self.keypoints)
        return min(n, self.rgb.num_frames) if self.rgb is not None else n


@dataclass
class ClipIndex:
    """Clips of a dataset root plus everything parsed from it (shared by its splits)."""

    root: Path
    layout: str
    keypoint_layout: str  # layout of Source.keypoints (a name from clipmg.model.layouts)
    class_names: Tuple[str, ...]
    clips: List[Clip]
    sources: Dict[str, Source]
    issues: Issues
    missing: Dict[str, int] = field(default_factory=dict)  # videos without keypoints / RGB / unreadable RGB
    official_split: Dict[str, List[str]] = field(default_factory=dict)  # pyskl 'split', if any

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def videos(self) -> List[str]:
        return sorted({c.video for c in self.clips})

    def subset(self, videos: Sequence[str]) -> "ClipIndex":
        """The clips of ``videos`` only (sources, classes and issues are shared)."""
        keep = set(videos)
        return replace(self, clips=[c for c in self.clips if c.video in keep])

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> Tuple["ClipIndex", "ClipIndex"]:
        """(train, val) by video: no video has clips on both sides (``split_by_video``)."""
        train, val = split_by_video(self.videos, val_fraction, seed)
        return self.subset(train), self.subset(val)

    def class_counts(self) -> List[int]:
        counts = [0] * self.num_classes
        for c in self.clips:
            counts[c.label] += 1
        return counts

    def duration_stats(self) -> Dict[str, float]:
        """Length statistics (frames) of the labelled gesture clips; stored in checkpoints."""
        return duration_stats([c.length for c in self.clips if not c.background])


def has_keypoints(keypoints: np.ndarray) -> bool:
    """Whether keypoints ``(T, J, 3)`` hold at least one usable point (finite, confidence above 0).
    The readers turn NaN into missing points, so a video whose files held only NaN has none."""
    kp = np.asarray(keypoints)
    return bool((np.isfinite(kp).all(-1) & (kp[..., 2] > 0)).any())


def duration_stats(lengths: Sequence[int]) -> Dict[str, float]:
    """``{count, mean, median, p10, p90, min, max}`` of clip lengths in frames (zeros when empty)."""
    a = np.asarray(lengths, np.float64)
    if a.size == 0:
        return {k: 0.0 for k in ("count", "mean", "median", "p10", "p90", "min", "max")}
    return {"count": float(a.size), "mean": float(a.mean()), "median": float(np.median(a)),
            "p10": float(np.percentile(a, 10)), "p90": float(np.percentile(a, 90)),
            "min": float(a.min()), "max": float(a.max())}


def split_by_video(videos: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> Tuple[List[str], List[str]]:
    """Seeded hold-out of ``round(val_fraction * n)`` videos (at least one when ``val_fraction > 0``
    and there are two or more videos). Independent of the input order; returns sorted lists."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    vids = sorted(set(videos))
    n_val = min(len(vids) - 1, max(1, round(val_fraction * len(vids)))) if val_fraction > 0 and len(vids) > 1 else 0
    order = np.random.default_rng(seed).permutation(len(vids))
    val = {vids[i] for i in order[:n_val]}
    return [v for v in vids if v not in val], sorted(val)


def mine_background(num_frames: int, intervals: Sequence[Tuple[int, int]], lengths: Sequence[int],
                    rng: np.random.Generator, margin: int = 2) -> List[Tuple[int, int]]:
    """Windows ``(start, end)`` inside ``[0, num_frames)`` that overlap no labelled interval (each
    widened by ``margin``), placed left to right without overlap with random offsets; each window's
    length is drawn from those of ``lengths`` (the labelled clips') that still fit in its span."""
    pool = np.sort(np.asarray(lengths, np.int64))
    if num_frames <= 0 or not len(pool):
        return []
    busy = np.zeros(num_frames + 1, bool)
    busy[num_frames] = True  # sentinel that closes the last span
    for s, e in intervals:
        busy[max(0, s - margin): min(num_frames, e + margin + 1)] = True
    out: List[Tuple[int, int]] = []
    t = 0
    while t < num_frames:
        if busy[t]:
            t += 1
            continue
        end = t + int(np.argmax(busy[t:]))  # first busy frame after the span
        pos = t
        while True:
            fit = int(np.searchsorted(pool, end - pos, side="right"))  # lengths that fit what is left
            if fit == 0:
                break
            n = int(pool[int(rng.integers(fit))])
            pos += int(rng.integers(0, min(n, end - pos - n) + 1))
            out.append((pos, pos + n - 1))
            pos += n
        t = end
    return out


# -------------------------------------------------------------------------------------- indexing
def detect_layout(root: str | Path) -> str:
    """Guess the layout of a dataset root from the first matching file name."""
    root = Path(root)
    if root.is_file():
        if root.suffix in (".pkl", ".pickle"):
            return "pyskl"
        raise DataError(f"{root} is a file but not a pyskl pickle (.pkl); give a dataset folder")
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist")
    for pattern, layout in (("*_light_hand.csv", "light_hand"), ("*_openpose.xlsx", "xlsx"),
                            ("*_keypoints.json", "openpose_json"), ("*.pkl", "pyskl")):
        if next(root.rglob(pattern), None) is not None:
            return layout
    raise DataError(f"cannot tell the layout of {root}: no *_light_hand.csv, *_openpose.xlsx, "
                    f"*_keypoints.json or *.pkl files; pass the layout explicitly")


def _class_names_file(root: Path) -> Path | None:
    base = root if root.is_dir() else root.parent
    for name in ("classes.txt", "classes.json"):
        if (base / name).is_file():
            return base / name
    return None


def _find_video(folder: Path, vid: str) -> Path | None:
    for suf in VIDEO_SUFFIXES:
        if (folder / f"{vid}{suf}").is_file():
            return folder / f"{vid}{suf}"
    return None


def _read_video_keypoints(layout: str, folder: Path, vid: str, issues: Issues) -> np.ndarray:
    if layout == "openpose_json":
        sub = folder / "openpose"
        return read_openpose_folder(sub if sub.is_dir() else folder, vid, issues)
    if layout == "light_hand":
        return read_light_hand_csv(folder / f"{vid}_light_hand.csv", issues)
    return read_openpose_xlsx(folder / f"{vid}_openpose.xlsx", issues)


def build_index(root: str | Path, layout: str = "openpose_json", *, class_names: Sequence[str] | None = None,
                background: bool = False, strict: bool = False, keypoint_layout: str = "openpose137",
                background_ratio: float = 1.0, background_margin: int = 2, seed: int = 0) -> ClipIndex:
    """Parse a dataset root in one of ``LAYOUT_NAMES`` into a ``ClipIndex``.

    Class names: ``class_names`` if given, else ``classes.txt`` / ``classes.json`` beside the data,
    else the iMiGUE list with the class count taken from the data (largest label + 1). With
    ``background`` a "no gesture" class (an existing one named in ``BACKGROUND_NAMES``, else a new
    last class) gets windows mined from unlabelled spans, about ``background_ratio`` times the mean
    clips per class. ``keypoint_layout`` selects the joints kept in memory (``openpose137`` keeps
    all; a model's layout such as ``upper22`` saves memory on the full iMiGUE). Malformed items are
    skipped and counted in ``index.issues`` (``strict``: the first one raises ``DataError``).
    """
    if layout not in LAYOUT_NAMES:
        raise DataError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUT_NAMES)}")
    if background and layout == "pyskl":
        raise DataError("a pyskl file holds cut clips only, so there are no unlabelled spans to mine a "
                        "background class from; use a layout with whole videos or drop the background option")
    get_layout(keypoint_layout)  # fails early with the list of valid names
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist")
    issues = Issues(strict=strict)
    names_file = _class_names_file(root)
    fixed = tuple(class_names) if class_names is not None else (read_class_names(names_file) if names_file else None)
    n_fixed = len(fixed) if fixed is not None else None
    sources: Dict[str, Source] = {}
    clips: List[Clip] = []
    missing = {"videos without keypoints": 0, "videos without RGB": 0, "unreadable RGB": 0}
    official: Dict[str, List[str]] = {}
    if layout == "pyskl":
        official = _index_pyskl(root, issues, keypoint_layout, n_fixed, sources, clips)
        missing["videos without RGB"] = len({c.video for c in clips})
    else:
        label_files = sorted(root.rglob("*_label.csv"))
        if not label_files:
            raise DataError(f"no <id>_label.csv files under {root}; is it a dataset root in the {layout} layout?")
        for lf in label_files:
            vid, folder = lf.name[: -len("_label.csv")], lf.parent
            rows = read_label_csv(lf, n_fixed, issues)
            try:
                kp = _read_video_keypoints(layout, folder, vid, issues)
            except DataError as e:
                missing["videos without keypoints"] += 1
                issues.report("missing keypoints", f"video {vid}: {e}; its {len(rows)} clips are skipped",
                              count=max(1, len(rows)))
                continue
            rgb = None
            vpath = _find_video(folder, vid)
            if vpath is None:
                missing["videos without RGB"] += 1
            else:
                try:
                    rgb = probe_video(vpath)
                except DataError as e:
                    missing["unreadable RGB"] += 1
                    issues.report("unreadable video", f"{e}; video {vid} is used without RGB")
            src = Source(extract_layout(kp, keypoint_layout), rgb, (rgb.width, rgb.height) if rgb else None)
            sources[vid] = src
            for r in rows:
                if r.end >= src.num_frames:
                    issues.report("clip outside frame range", f"{lf} row {r.row}: frames {r.start}..{r.end} but "
                                  f"video {vid} has {src.num_frames} frames (keypoints {len(kp)}"
                                  f"{f', video {rgb.num_frames}' if rgb else ''})")
                    continue
                clips.append(Clip(f"{vid}_{r.row}", vid, vid, r.label, r.start, r.end))
    # a video whose keypoints are all missing or were NaN counts as one without keypoints (its clips
    # stay: a no_pose model can use their RGB; a pose model refuses a set where no video has any)
    empty = sorted(v for v, s in sources.items() if not has_keypoints(s.keypoints))
    if empty:
        missing["videos without keypoints"] += len(empty)
        log.warning("%d videos have no usable keypoint (every point missing, with confidence 0 or NaN), first: %s",
                    len(empty), empty[0])
    if not clips:
        raise DataError(f"no usable clips under {root} ({issues.summary()})")
    if fixed is None:
        n = max(c.label for c in clips) + 1
        fixed = tuple(IMIGUE_CLASSES[i] if i < len(IMIGUE_CLASSES) else f"class {i}" for i in range(n))
    index = ClipIndex(root, layout, keypoint_layout, fixed, clips, sources, issues, missing, official)
    if background:
        _add_background(index, background_ratio, background_margin, seed)
    return index


def _index_pyskl(root: Path, issues: Issues, keypoint_layout: str, n_fixed: int | None,
                 sources: Dict[str, Source], clips: List[Clip]) -> Dict[str, List[str]]:
    path = root
    if root.is_dir():
        pkls = sorted(root.glob("*.pkl")) + sorted(root.glob("*.pickle"))
        if len(pkls) != 1:
            raise DataError(f"{root}: expected exactly one pyskl .pkl file, found {len(pkls)}; pass the file itself")
        path = pkls[0]
    split, anns = read_pyskl(path, issues)
    for a in anns:
        if n_fixed is not None and a.label >= n_fixed:
            issues.report("label out of range", f"{path} clip {a.frame_dir}: label {a.label} outside [0, {n_fixed})")
            continue
        if a.frame_dir in sources:
            issues.report("duplicate clip", f"{path}: frame_dir {a.frame_dir} appears twice; the first is kept")
            continue
        m = re.fullmatch(r"(.+)_(\d+)", a.frame_dir)
        video = m.group(1) if m else a.frame_dir
        size = (a.img_shape[1], a.img_shape[0]) if a.img_shape else None
        sources[a.frame_dir] = Source(extract_layout(a.keypoints, keypoint_layout), None, size)
        clips.append(Clip(a.frame_dir, video, a.frame_dir, a.label, 0, len(a.keypoints) - 1))
    return split


def _add_background(index: ClipIndex, ratio: float, margin: int, seed: int) -> None:
    """Append mined "no gesture" windows to ``index`` (in place), see ``build_index``."""
    names = list(index.class_names)
    lower = [n.lower() for n in names]
    label = next((lower.index(b) for b in BACKGROUND_NAMES if b in lower), None)
    if label is None:
        names.append("no gesture")
        label = len(names) - 1
    lengths = [c.length for c in index.clips]
    rng = np.random.default_rng(seed)
    by_source: Dict[str, List[Clip]] = {}
    for c in index.clips:
        by_source.setdefault(c.source, []).append(c)
    found: List[Clip] = []
    for src, cs in sorted(by_source.items()):
        wins = mine_background(index.sources[src].num_frames, [(c.start, c.end) for c in cs], lengths, rng, margin)
        found += [Clip(f"{cs[0].video}_bg{k}", cs[0].video, src, label, s, e, True) for k, (s, e) in enumerate(wins)]
    target = int(math.ceil(ratio * len(index.clips) / max(1, len(names))))
    if len(found) > target:
        keep = np.sort(rng.choice(len(found), target, replace=False))
        found = [found[i] for i in keep]
    index.class_names = tuple(names)
    index.clips = index.clips + found


# ------------------------------------------------------------------------------------ augmenting
_BODY_MIRROR = {2: 5, 3: 6, 4: 7, 9: 12, 10: 13, 11: 14, 15: 16, 17: 18, 19: 22, 20: 23, 21: 24}
_FACE_MIRROR = ({i: 16 - i for i in range(17)} | {17 + i: 26 - i for i in range(5)} | {31: 35, 32: 34}
                | {36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46} | {48: 54, 49: 53, 50: 52, 55: 59, 56: 58}
                | {60: 64, 61: 63, 65: 67} | {68: 69})


def mirror_137() -> np.ndarray:
    """Index of each OpenPose-137 joint's left/right partner ``(137,)`` (itself on the midline)."""
    m = np.arange(137)
    for a, b in _BODY_MIRROR.items():
        m[a], m[b] = b, a
    for a, b in _FACE_MIRROR.items():
        m[25 + a], m[25 + b] = 25 + b, 25 + a
    m[95:116], m[116:137] = np.arange(116, 137), np.arange(95, 116)
    return m


def flip_permutation(layout: str) -> np.ndarray:
    """``perm`` ``(J,)`` such that ``kp[perm]`` swaps the left/right joints of a layout."""
    idx = layout_indices(layout)
    pos = {int(j): k for k, j in enumerate(idx)}
    mirror = mirror_137()
    try:
        return np.array([pos[int(mirror[j])] for j in idx], np.int64)
    except KeyError:
        raise ValueError(f"layout {layout!r} is not left/right symmetric; flipping is not possible") from None


def hflip(frames: np.ndarray, keypoints: np.ndarray, perm: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror frames ``(T_r, H, W, 3)`` and keypoints ``(T_p, J, 3)`` (x -> W-1-x, left <-> right joints)."""
    w = frames.shape[2]
    kp = keypoints[:, perm].copy()
    seen = kp[..., 2] > 0
    kp[..., 0] = np.where(seen, (w - 1) - kp[..., 0], 0.0)
    return np.ascontiguousarray(frames[:, :, ::-1]), kp


def affine_jitter(frames: np.ndarray, keypoints: np.ndarray, scale: float, dx: float, dy: float
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Zoom frames ``(T_r, H, W, 3)`` by ``scale`` about their centre and shift by ``(dx, dy)`` pixels;
    keypoints ``(T_p, J, 3)`` move with the pixels. Equivalent to jittering the crop box."""
    h, w = frames.shape[1:3]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([[scale, 0.0, cx - scale * cx + dx], [0.0, scale, cy - scale * cy + dy]])
    out = np.stack([cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                    for f in frames])
    kp = keypoints.copy()
    seen = kp[..., 2] > 0
    kp[..., 0] = np.where(seen, kp[..., 0] * scale + m[0, 2], 0.0)
    kp[..., 1] = np.where(seen, kp[..., 1] * scale + m[1, 2], 0.0)
    return out, kp


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations; each keeps RGB and keypoints consistent."""

    flip: float = 0.5  # probability of a horizontal flip (left/right joints swapped)
    scale: Tuple[float, float] = (0.9, 1.1)  # zoom range about the frame centre
    shift: float = 0.05  # largest shift, as a fraction of the frame's short side
    # colour jitter strength: brightness, contrast and saturation each scaled by a factor drawn from
    # [1 - c, 1 + c] (one draw per window; hue is left alone, colour can be what tells a class)
    colour: float = 0.0


def augment_window(frames: np.ndarray, keypoints: np.ndarray, perm: np.ndarray, aug: AugmentConfig,
                   rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One random draw of ``aug`` applied to a whole window (same transform for every frame)."""
    if rng.random() < aug.flip:
        frames, keypoints = hflip(frames, keypoints, perm)
    s = float(rng.uniform(*aug.scale))
    short = min(frames.shape[1:3])
    dx, dy = rng.uniform(-aug.shift, aug.shift, 2) * short
    if s != 1.0 or dx or dy:
        frames, keypoints = affine_jitter(frames, keypoints, s, float(dx), float(dy))
    return frames, keypoints


def colour_jitter(rgb: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Float ``(..., 3)`` RGB in [0, 255] with brightness, contrast (about the mean grey) and
    saturation (about each pixel's grey) scaled, clipped to [0, 255]."""
    f = np.asarray(rgb, np.float32) * brightness
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    mean = grey.mean()
    f = (f - mean) * contrast + mean
    grey = (grey - mean) * contrast + mean
    return np.clip(grey[..., None] + (f - grey[..., None]) * saturation, 0, 255)


def colour_jitter_images(images: np.ndarray, mean: Sequence[float], std: Sequence[float], aug: AugmentConfig,
                         rng: np.random.Generator) -> np.ndarray:
    """``colour_jitter`` on model-ready images ``(T, 3, S, S)`` (normalised by ``mean``/``std``): one
    draw of the three factors for the whole window, applied after the crop and resize (cheap)."""
    m = np.asarray(mean, np.float32)[:, None, None]
    sd = np.asarray(std, np.float32)[:, None, None]
    rgb = ((images * sd + m) * 255.0).transpose(0, 2, 3, 1)  # (T, S, S, 3) in [0, 255]
    rgb = colour_jitter(rgb, *rng.uniform(1 - aug.colour, 1 + aug.colour, 3))
    return ((rgb.transpose(0, 3, 1, 2) / 255.0 - m) / sd).astype(np.float32)


# --------------------------------------------------------------------------------------- dataset
def rgb_candidates(start: int, end: int, cfg: ModelConfig, train: bool) -> np.ndarray:
    """Every frame that ``clip_samples`` can pick as an RGB frame of clip ``[start, end]``: the
    centre samples at eval, the whole segments at the RGB positions in training (what to cache)."""
    c = cfg.clip
    if not train:
        return np.unique(clip_samples(start, end, c.pose_frames, c.rgb_frames, c.rgb_offset, "center")[1])
    length = end - start + 1
    edges = np.linspace(0.0, length, c.pose_frames + 1)  # the segments of sampling.segment_indices
    out = [np.arange(max(0, int(np.floor(edges[k]))), min(length - 1, int(np.ceil(edges[k + 1])) - 1) + 1)
           for k in rgb_positions(c.pose_frames, c.rgb_frames, c.rgb_offset)]
    return start + np.unique(np.concatenate(out))


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

    def __init__(self, index: ClipIndex, cfg: ModelConfig, train: bool = False,
                 augment: AugmentConfig | bool | None = None, cache_frames: bool | str = "auto",
                 cache_budget_mb: float = 2048.0, require_rgb: bool = True,
                 frame_size: Tuple[int, int] = (1280, 720)) -> None:
        if cfg.num_classes != index.num_classes:
            raise ValueError(f"the model has {cfg.num_classes} classes but the dataset has {index.num_classes} "
                             f"({', '.join(index.class_names[:4])}, ...); build the model with "
                             f"num_classes={index.num_classes}")
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
        raise ValueError(f"the index keeps {index.keypoint_layout!r} keypoints but the model needs {layout!r}; "
                         f"build the index with keypoint_layout='openpose137' or {layout!r}")

    def cache_bytes(self) -> int:
        """Bytes the frame cache needs (or holds) for these clips."""
        want = self._wanted()
        return sum(len(v) * self.index.sources[s].rgb.height * self.index.sources[s].rgb.width * 3
                   for s, v in want.items())

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
        if self.augment is not None and rng is not None:
            frames, kp = augment_window(frames, kp, self.perm, self.augment, rng)
        images, kp_in, _ = prepare_window(frames, kp, self.cfg)
        if self.augment is not None and rng is not None and self.augment.colour > 0:
            p = self.cfg.preprocess
            images = colour_jitter_images(images, p.mean, p.std, self.augment, rng)
        return {"images": torch.from_numpy(images), "keypoints": torch.from_numpy(kp_in),
                "label": clip.label, "clip_id": clip.clip_id}

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
