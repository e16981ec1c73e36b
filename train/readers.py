"""Readers for the layouts iMiGUE is distributed in (docs/data.md), as pure functions of a path.

Every keypoint reader returns float32 ``(T, 137, 3)`` OpenPose arrays (body 0-24, face 25-94, left
hand 95-115, right hand 116-136; ``x, y`` in pixels, confidence 0 for a missing point). Problems are
reported to an ``Issues`` collector: by default it counts them, logs the first few of each kind and
the caller skips the item; ``Issues(strict=True)`` (or passing ``issues=None``) raises ``DataError``
instead. The pyskl pickle reader lives in ``readers_pyskl.py``, the video reader in
``readers_video.py``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from clipmg.model.keypoint_files import (  # noqa: F401
    FRAME_FILE,
    DataError,
    Issues,
    list_openpose_frames,
    parse_openpose,
    parse_openpose_people,
    read_light_hand_csv,
    read_openpose_folder,
    read_openpose_json,
    read_openpose_xlsx,
    report_issue,
    select_person,
)

log = logging.getLogger("clipmg.data")

# Class names in MiGA id order, short forms (docs/data.md); the class count of a dataset is taken
# from its data, this list only names the indices.
IMIGUE_CLASSES: Tuple[str, ...] = (
    "turtle neck",
    "deep breath",
    "touch hat",
    "touch face",
    "touch forehead",
    "cover face",
    "rub eyes",
    "touch other face part",
    "touch ears",
    "bite nails",
    "touch chin",
    "touch neck",
    "play hair",
    "adjust tie",
    "touch chest",
    "scratch back",
    "fold arm",
    "tidy sleeve",
    "put arm back",
    "move torso",
    "sit straight",
    "scratch arm",
    "rub hand",
    "cross finger",
    "minaret hand",
    "play things",
    "withdraw arms",
    "head up",
    "bite lip",
    "arm akimbo",
    "shake shoulder",
    "illustrative",
)


@dataclass(frozen=True)
class LabelRow:
    """One labelled clip: ``row`` is its 0-based row in the label file (clip id ``<video>_<row>``)."""

    row: int
    label: int
    start: int
    end: int  # inclusive


def miga_label(class_id: int) -> int:
    """MiGA class id -> label index: 99 -> 31, any other id -> id - 1 (every public loader does this)."""
    return 31 if class_id == 99 else class_id - 1


def _int(text: str) -> int:
    v = float(text)
    if not v.is_integer():
        raise ValueError(f"{text!r} is not an integer")
    return int(v)


def read_label_csv(path: str | Path, num_classes: int | None = None, issues: Issues | None = None) -> List[LabelRow]:
    """``<id>_label.csv`` (no header; ``class_id,start_frame,end_frame``, 0-based, end inclusive).

    Bad rows (wrong column count, non-integers, end before start, negative frames, label outside
    ``[0, num_classes)``) are reported and skipped. A missing or unreadable file raises ``DataError``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read label file {path}: {e}") from e
    rows: List[LabelRow] = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 3:
            report_issue(
                issues,
                "wrong column count",
                f"{path} row {i}: expected 3 values class_id,start,end, got {len(cells)} ({line.strip()!r})",
            )
            continue
        try:
            cid, start, end = (_int(c) for c in cells)
        except ValueError:
            report_issue(issues, "bad label row", f"{path} row {i}: values must be integers, got {line.strip()!r}")
            continue
        label = miga_label(cid)
        if label < 0 or (num_classes is not None and label >= num_classes):
            hint = f"[0, {num_classes})" if num_classes is not None else "[0, ...)"
            report_issue(
                issues,
                "label out of range",
                f"{path} row {i}: class id {cid} maps to label {label}, outside {hint}; fix the row or the class list",
            )
            continue
        if start < 0 or end < start:
            report_issue(issues, "bad label row", f"{path} row {i}: frames {start}..{end} are not a valid interval")
            continue
        rows.append(LabelRow(i, label, start, end))
    return rows


def read_class_names(path: str | Path) -> Tuple[str, ...]:
    """Class names, one a line (``classes.txt``), or a JSON list of strings (``classes.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        names = json.loads(text) if path.suffix == ".json" else [n.strip() for n in text.splitlines() if n.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read class names from {path}: {e}") from e
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) < 2:
        raise DataError(f"{path}: expected at least two class names (one a line, or a JSON list of strings)")
    return tuple(names)
