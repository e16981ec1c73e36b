"""Where ``clipmg-record`` puts what it records: the MiGA layout the training readers accept.

A recording root holds one folder per *round* (every gesture recorded once, in order), so the
training split, which is by video, holds out whole rounds and its validation round has every
gesture::

    ROOT/classes.txt                       the gestures, one a line (label i = line i)
    ROOT/recording.json                    what was recorded: rounds, takes, frames, detections
    ROOT/r001/r001.mp4                     the round's frames (H.264, as clipmg-synth writes them)
    ROOT/r001/openpose/r001_<12 digits>_keypoints.json   MediaPipe's keypoints as OpenPose JSON
    ROOT/r001/r001_label.csv               one row a take: MiGA class id, first frame, last frame

Frames between takes (the countdown, the rest) are in the video but in no label row: they are the
unlabelled spans ``clipmg-train --background`` mines "no gesture" windows from. The label file is
written last, so an interrupted write leaves a round the readers do not see. ``clipmg-data summary
ROOT`` and ``clipmg-train --data ROOT`` read it back (``openpose_json`` layout). NumPy only, and
PyAV for the video (``model/synthetic.py`` ``write_video``: one encoder for every writer).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from clipmg.model.config import BACKGROUND_LABELS
from clipmg.model.errors import ClipmgError
from clipmg.model.files import atomic_write_text
from clipmg.model.keypoint_files import miga_class_id
from clipmg.model.layouts import SOURCE_OFFSETS, SOURCE_SIZES
from clipmg.model.splits import split_by_video
from clipmg.model.synthetic import (
    openpose_json,
    write_video,  # PyAV: clipmg[train], which recording data is for
)

RECORDING = "recording.json"
CLASSES = "classes.txt"
_ROUND = re.compile(r"^r(\d{3,})$")
TRAIN_VAL_FRACTION, TRAIN_SEED = 0.2, 0  # clipmg-train's defaults (train/config.py): the split the summary shows


class RecordError(ClipmgError):
    """Something about the recording the user can fix; the message is one sentence."""


@dataclass
class Take:
    """One take of one gesture inside a round: frames ``start..end`` (inclusive) of the round's video."""

    cls: str
    start: int
    end: int
    person: int = 0  # frames in which the pose backend found a person
    hands: int = 0  # frames with at least one hand detected

    @property
    def frames(self) -> int:
        return self.end - self.start + 1


@dataclass
class RoundBuffer:
    """A round being recorded: its frames (RGB ``(H, W, 3)`` uint8), their keypoints ``(137, 3)`` (None:
    nobody found), and its takes."""

    rid: str
    fps: float
    frames: List[np.ndarray] = field(default_factory=list)
    keypoints: List[Optional[np.ndarray]] = field(default_factory=list)
    takes: List[Take] = field(default_factory=list)

    def add(self, frames: Sequence[np.ndarray], keypoints: Sequence[Optional[np.ndarray]]) -> int:
        """Append frames with their keypoints; returns the index of the first one."""
        first = len(self.frames)
        self.frames.extend(frames)
        self.keypoints.extend(keypoints)
        return first

    def add_take(self, cls: str, start: int, end: int) -> Take:
        """Label frames ``start..end`` as a take of ``cls`` and count its detections."""
        kps = self.keypoints[start : end + 1]
        hand = slice(SOURCE_OFFSETS["lhand"], SOURCE_OFFSETS["rhand"] + SOURCE_SIZES["rhand"])
        take = Take(
            cls,
            start,
            end,
            person=sum(k is not None for k in kps),
            hands=sum(k is not None and bool((k[hand, 2] > 0).any()) for k in kps),
        )
        self.takes.append(take)
        return take


def is_background(name: str) -> bool:
    return name.strip().lower() in BACKGROUND_LABELS


def check_root(root: Path, append: bool) -> None:
    """Refuse at once an ``--out`` that cannot take a new recording (see ``prepare_root``)."""
    if root.exists() and not root.is_dir():
        raise RecordError(f"--out {root} is a file; give a new or empty folder")
    if root.is_dir() and any(root.iterdir()) and not append:
        raise RecordError(f"--out {root} is not empty; give a new folder, or --append to add rounds to a recording")
    parent = next((p for p in (root, *root.parents) if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise RecordError(f"--out {root}: {parent} is a file, so the folder cannot be made there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RecordError(f"--out {root}: {parent} is not writable; choose a folder you can write to")


def prepare_root(root: Path, classes: Sequence[str], append: bool) -> List[str]:
    """Make ``root`` ready for recording ``classes``; returns the round ids already there.

    A new or empty folder is started (``classes.txt`` written); a non-empty one needs ``append`` and
    must be a recording of the same gestures. Refused, in one sentence: a path that is a file, a
    folder that cannot be made or written, a non-empty folder without ``append``, another gesture list.
    """
    if root.exists() and not root.is_dir():
        raise RecordError(f"--out {root} is a file; give a new or empty folder")
    existing = root.is_dir() and any(root.iterdir())
    if existing and not append:
        raise RecordError(f"--out {root} is not empty; give a new folder, or --append to add rounds to a recording")
    if existing:
        if not (root / RECORDING).is_file() or not (root / CLASSES).is_file():
            raise RecordError(f"--append: {root} is not a clipmg-record recording (no {RECORDING} and {CLASSES})")
        have = [n.strip() for n in (root / CLASSES).read_text(encoding="utf-8").splitlines() if n.strip()]
        if have != list(classes):
            raise RecordError(
                f"--append: {root} records the gestures {', '.join(have)}, not {', '.join(classes)}; "
                "give the same --classes or a new folder"
            )
        return sorted(d.name for d in root.iterdir() if d.is_dir() and _ROUND.match(d.name))
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / CLASSES, "".join(f"{c}\n" for c in classes))
        atomic_write_text(root / RECORDING, json.dumps({"classes": list(classes), "rounds": []}, indent=1) + "\n")
    except OSError as e:
        raise RecordError(f"--out {root}: cannot write there ({e.strerror or e})") from e
    return []


def round_id(k: int) -> str:
    return f"r{k:03d}"


def next_round_id(existing: Sequence[str]) -> str:
    nums = [int(m.group(1)) for r in existing if (m := _ROUND.match(r))]
    return round_id(max(nums, default=0) + 1)


def openpose_text(keypoints: Optional[np.ndarray]) -> str:
    """One frame's OpenPose 1.3 JSON (``model/synthetic.py`` writes the same format for its set)."""
    return openpose_json(keypoints)


def write_round(root: Path, rnd: RoundBuffer, classes: Sequence[str], source: str) -> Dict[str, Any]:
    """Write a round's video, keypoint files and label rows, and add it to ``recording.json``; returns
    its entry there. A round without a finished take writes nothing (returns ``{}``)."""
    if not rnd.takes:
        return {}
    frames, kps = rnd.frames, rnd.keypoints  # an unfinished take's frames were never added
    folder = root / rnd.rid
    (folder / "openpose").mkdir(parents=True, exist_ok=True)
    for i, kp in enumerate(kps):
        (folder / "openpose" / f"{rnd.rid}_{i:012d}_keypoints.json").write_text(openpose_text(kp))
    h, w = frames[0].shape[:2]
    write_video(folder / f"{rnd.rid}.mp4", iter(frames), w, h, rnd.fps)  # even sizes: see record.py
    rows = "".join(f"{miga_class_id(list(classes).index(t.cls))},{t.start},{t.end}\n" for t in rnd.takes)
    atomic_write_text(folder / f"{rnd.rid}_label.csv", rows)
    entry = {"round": rnd.rid, "fps": rnd.fps, "frames": len(frames), "takes": [asdict(t) for t in rnd.takes]}
    meta = json.loads((root / RECORDING).read_text())
    meta["rounds"] = [r for r in meta["rounds"] if r["round"] != rnd.rid] + [entry]
    meta["source"] = source
    atomic_write_text(root / RECORDING, json.dumps(meta, indent=1) + "\n")
    return entry


def summarize(root: Path) -> Dict[str, Any]:
    """Per gesture: takes, frames, frames with a person, hand-detection rate; and the rounds that
    ``clipmg-train`` (default ``--val-fraction 0.2 --seed 0``) holds out for validation."""
    meta = json.loads((root / RECORDING).read_text())
    per: Dict[str, Dict[str, float]] = {c: {"takes": 0, "frames": 0, "person": 0, "hands": 0} for c in meta["classes"]}
    for r in meta["rounds"]:
        for t in r["takes"]:
            p = per[t["cls"]]
            p["takes"] += 1
            p["frames"] += t["end"] - t["start"] + 1
            p["person"] += t["person"]
            p["hands"] += t["hands"]
    rounds = [r["round"] for r in meta["rounds"]]
    train, val = split_by_video(rounds, TRAIN_VAL_FRACTION, TRAIN_SEED)
    return {
        "root": str(root),
        "classes": [
            {"name": c, **v, "hand_rate": v["hands"] / v["frames"] if v["frames"] else 0.0} for c, v in per.items()
        ],
        "rounds": len(rounds),
        "frames": sum(r["frames"] for r in meta["rounds"]),
        "train_rounds": train,
        "val_rounds": val,
    }


def format_summary(s: Dict[str, Any]) -> str:
    width = max(len(c["name"]) for c in s["classes"])
    lines = [f"recorded {s['rounds']} rounds, {s['frames']} frames in {s['root']}"]
    lines.append(f"  {'gesture':<{width}}  takes  frames  person  hands")
    for c in s["classes"]:
        n = max(1, c["frames"])
        lines.append(
            f"  {c['name']:<{width}}  {c['takes']:5d}  {c['frames']:6d}  {c['person'] / n:6.0%}  {c['hand_rate']:5.0%}"
        )
    weak = [
        c["name"]
        for c in s["classes"]
        if c["frames"] and not is_background(c["name"]) and c["person"] < 0.5 * c["frames"]
    ]
    if weak:
        lines.append(f"  no person in most frames of: {', '.join(weak)} (check the light and that you are in view)")
    if s["val_rounds"]:
        lines.append(f"clipmg-train holds out round {', '.join(s['val_rounds'])} for validation, trains on the others")
    else:
        lines.append("one round only: clipmg-train has nothing to validate on (record --takes 2 or more, or --append)")
    return "\n".join(lines)
