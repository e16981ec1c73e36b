"""The clip index: a dataset root read into videos, clips, labels and their summary.

``build_index(root, layout)`` parses every keypoint file once (kept in memory), validates each
labelled clip against the frames that exist and returns a ``ClipIndex``; ``index.split()`` holds out
20 % of the videos (``split_by_video``). With ``background`` it adds "no gesture" windows mined from
the unlabelled spans (``clipmg.train.pipeline.mine_background``). No PyTorch here: the torch
``Dataset`` over an index is ``clipmg.train.dataset.MicroGestureDataset``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from clipmg.model.config import BACKGROUND_LABELS
from clipmg.model.layouts import extract_layout, get_layout
from clipmg.model.splits import split_by_video

from .config import LAYOUT_NAMES
from .pipeline import mine_background
from .readers import (
    IMIGUE_CLASSES,
    DataError,
    Issues,
    read_class_names,
    read_label_csv,
    read_light_hand_csv,
    read_openpose_folder,
    read_openpose_xlsx,
)
from .readers_pyskl import read_pyskl
from .readers_video import VideoInfo, probe_video

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
    return {
        "count": float(a.size),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "p10": float(np.percentile(a, 10)),
        "p90": float(np.percentile(a, 90)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


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
    for pattern, layout in (
        ("*_light_hand.csv", "light_hand"),
        ("*_openpose.xlsx", "xlsx"),
        ("*_keypoints.json", "openpose_json"),
        ("*.pkl", "pyskl"),
    ):
        if next(root.rglob(pattern), None) is not None:
            return layout
    raise DataError(
        f"cannot tell the layout of {root}: no *_light_hand.csv, *_openpose.xlsx, "
        f"*_keypoints.json or *.pkl files; pass the layout explicitly"
    )


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


def build_index(
    root: str | Path,
    layout: str = "openpose_json",
    *,
    class_names: Sequence[str] | None = None,
    background: bool = False,
    strict: bool = False,
    keypoint_layout: str = "openpose137",
    background_ratio: float = 1.0,
    background_margin: int = 2,
    seed: int = 0,
) -> ClipIndex:
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
        raise DataError(
            "a pyskl file holds cut clips only, so there are no unlabelled spans to mine a "
            "background class from; use a layout with whole videos or drop the background option"
        )
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
                issues.report(
                    "missing keypoints", f"video {vid}: {e}; its {len(rows)} clips are skipped", count=max(1, len(rows))
                )
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
                    issues.report(
                        "clip outside frame range",
                        f"{lf} row {r.row}: frames {r.start}..{r.end} but "
                        f"video {vid} has {src.num_frames} frames (keypoints {len(kp)}"
                        f"{f', video {rgb.num_frames}' if rgb else ''})",
                    )
                    continue
                clips.append(Clip(f"{vid}_{r.row}", vid, vid, r.label, r.start, r.end))
    # a video whose keypoints are all missing or were NaN counts as one without keypoints (its clips
    # stay: a no_pose model can use their RGB; a pose model refuses a set where no video has any)
    empty = sorted(v for v, s in sources.items() if not has_keypoints(s.keypoints))
    if empty:
        missing["videos without keypoints"] += len(empty)
        log.warning(
            "%d videos have no usable keypoint (every point missing, with confidence 0 or NaN), first: %s",
            len(empty),
            empty[0],
        )
    if not clips:
        raise DataError(f"no usable clips under {root} ({issues.summary()})")
    if fixed is None:
        n = max(c.label for c in clips) + 1
        fixed = tuple(IMIGUE_CLASSES[i] if i < len(IMIGUE_CLASSES) else f"class {i}" for i in range(n))
    index = ClipIndex(root, layout, keypoint_layout, fixed, clips, sources, issues, missing, official)
    if background:
        _add_background(index, background_ratio, background_margin, seed)
    return index


def _index_pyskl(
    root: Path, issues: Issues, keypoint_layout: str, n_fixed: int | None, sources: Dict[str, Source], clips: List[Clip]
) -> Dict[str, List[str]]:
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
