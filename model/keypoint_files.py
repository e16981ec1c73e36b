"""Keypoint files in the layouts iMiGUE is distributed in (docs/data.md): OpenPose ``--write_json``
frames, MiGA ``_light_hand.csv`` and ``_openpose.xlsx``; NumPy only. Training (``train/readers.py``) and
the live ``replay`` pose backend read keypoints through these functions, with the same checks.

Every reader returns float32 OpenPose arrays (body 0-24, face 25-94, left hand 95-115, right hand
116-136; ``x, y`` in pixels, confidence 0 for a missing point). Problems are reported to an
``Issues`` collector: by default it counts them, logs the first few of each kind and the caller skips
the item; ``Issues(strict=True)`` (or passing ``issues=None``) raises ``DataError`` instead.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np

from .errors import ClipmgError
from .layouts import NUM_OPENPOSE, assemble_openpose137, from_light_hand

log = logging.getLogger("clipmg.data")


class DataError(ClipmgError, ValueError):
    """A malformed, missing or unreadable data file; the message names it and says what to do. (A
    ``ValueError`` too, for callers written before ``ClipmgError``.)"""


@dataclass
class Issues:
    """Counts of skipped items by kind, with the first message of each kind kept for the summary.

    ``strict=True`` turns every report into a ``DataError``. Only the first ``log_first`` reports of
    a kind are logged (``clipmg.data`` logger, WARNING), so a bad dataset does not flood the console.
    """

    strict: bool = False
    log_first: int = 3
    counts: Counter = field(default_factory=Counter)
    first: Dict[str, str] = field(default_factory=dict)

    def report(self, kind: str, message: str, count: int = 1) -> None:
        if self.strict:
            raise DataError(message)
        self.counts[kind] += count
        self.first.setdefault(kind, message)
        if self.counts[kind] - count < self.log_first:
            log.warning("skipped (%s): %s", kind, message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line: ``skipped 3 items: 2 invalid OpenPose JSON, 1 label out of range`` (or nothing skipped)."""
        if not self.counts:
            return "nothing skipped"
        parts = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"skipped {self.total} items: {parts} (use --strict to stop at the first; first of each kind logged)"


def report_issue(issues: Issues | None, kind: str, message: str, count: int = 1) -> None:
    """Report to ``issues``; with no collector every problem is an error."""
    if issues is None:
        raise DataError(message)
    issues.report(kind, message, count)


def miga_class_id(label: int) -> int:
    """Label index -> the MiGA class id a ``<id>_label.csv`` row holds: 31 -> 99, any other -> label + 1
    (the inverse of the loaders' mapping, ``clipmg.train.readers.miga_label``). The writers of label
    files (``clipmg-synth``, ``clipmg-record``) use it."""
    return 99 if label == 31 else label + 1


# ---------------------------------------------------------------------------------- OpenPose JSON
FRAME_FILE = re.compile(r"^(?P<video>.+)_(?P<frame>\d{12})_keypoints\.json$")
_PARTS = (
    ("pose_keypoints_2d", 25),
    ("face_keypoints_2d", 70),
    ("hand_left_keypoints_2d", 21),
    ("hand_right_keypoints_2d", 21),
)


def _person_array(person: Any, where: str) -> np.ndarray:
    """One OpenPose ``people[]`` entry -> ``(137, 3)``; absent parts (empty lists) are zeros."""
    if not isinstance(person, dict):
        raise DataError(f"{where}: a people[] entry is not a JSON object")
    parts = []
    for key, n in _PARTS:
        v = person.get(key) or []
        if not isinstance(v, list):
            raise DataError(f"{where}: {key} is a {type(v).__name__}, expected a list of {3 * n} numbers")
        if len(v) not in (0, 3 * n):
            raise DataError(f"{where}: {key} has {len(v)} values, expected {3 * n} ({n} keypoints x 3)")
        try:  # an absent part (empty list) is zeros, the body too (a file with only hands is valid)
            with np.errstate(over="ignore"):  # a number beyond float32 becomes inf: refused just below
                parts.append(np.asarray(v, dtype=np.float32).reshape(n, 3) if v else np.zeros((n, 3), np.float32))
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"{where}: {key} holds non-numbers") from e
    out = assemble_openpose137(*parts)
    if not np.isfinite(out).all():
        raise DataError(f"{where}: keypoints contain NaN or infinity")
    return out


def select_person(people: Sequence[np.ndarray]) -> np.ndarray | None:
    """The target person of a frame: the largest sum of BODY_25 confidences (most complete and most
    confident skeleton); ties go to the larger body bounding box. ``None`` when nobody was found."""
    best, key = None, None
    for p in people:
        body = p[:25]
        vis = body[body[:, 2] > 0]
        area = float(np.ptp(vis[:, 0]) * np.ptp(vis[:, 1])) if len(vis) else 0.0
        k = (float(body[:, 2].sum()), area)
        if key is None or k > key:
            best, key = p, k
    return best


def parse_openpose_people(doc: Any, where: str = "OpenPose JSON") -> np.ndarray:
    """A parsed OpenPose ``--write_json`` document -> every person, ``(P, 137, 3)`` float32 (P may be 0)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
        raise DataError(f"{where}: not an OpenPose keypoint file (no 'people' list)")
    people = [_person_array(p, where) for p in doc["people"]]
    return np.stack(people) if people else np.zeros((0, NUM_OPENPOSE, 3), np.float32)


def parse_openpose(doc: Any, where: str = "OpenPose JSON") -> np.ndarray:
    """A parsed OpenPose ``--write_json`` document -> the target person's ``(137, 3)`` (zeros: nobody)."""
    people = parse_openpose_people(doc, where)
    person = people[0] if len(people) == 1 else select_person(list(people))
    return person if person is not None else np.zeros((NUM_OPENPOSE, 3), np.float32)


def read_openpose_json(path: str | Path) -> np.ndarray:
    """One ``<vid>_<frame:012d>_keypoints.json`` file -> ``(137, 3)`` float32."""
    path = Path(path)
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"cannot read OpenPose JSON {path}: {e} (truncated or not JSON?)") from e
    return parse_openpose(doc, str(path))


def list_openpose_frames(folder: str | Path, video: str | None = None) -> Dict[int, Path]:
    """Frame number -> file for the ``<video>_<frame:012d>_keypoints.json`` files of ``folder``.

    With ``video=None`` the folder must hold the files of exactly one video.
    """
    folder = Path(folder)
    found: Dict[str, Dict[int, Path]] = {}
    for p in folder.iterdir() if folder.is_dir() else ():
        m = FRAME_FILE.match(p.name)
        if m and (video is None or m["video"] == video):
            found.setdefault(m["video"], {})[int(m["frame"])] = p
    if not found:
        who = f"video {video!r}" if video else "any video"
        raise DataError(f"no OpenPose files <video>_<12-digit frame>_keypoints.json of {who} in {folder}")
    if len(found) > 1:
        raise DataError(
            f"{folder} holds OpenPose files of several videos ({', '.join(sorted(found)[:4])}); name the video to read"
        )
    return next(iter(found.values()))


def read_openpose_folder(folder: str | Path, video: str | None = None, issues: Issues | None = None) -> np.ndarray:
    """All frames of one video -> ``(T, 137, 3)`` float32 with ``T`` = last frame number + 1.

    Unreadable files and frame numbers with no file are reported and left as zeros (no person), so
    frame ``t`` of the array is always frame ``t`` of the video.
    """
    files = list_openpose_frames(folder, video)
    n = max(files) + 1
    out = np.zeros((n, NUM_OPENPOSE, 3), np.float32)
    for t, p in sorted(files.items()):
        try:
            out[t] = read_openpose_json(p)
        except DataError as e:
            report_issue(issues, "invalid OpenPose JSON", str(e))
    if len(files) < n:
        missing = sorted(set(range(n)) - set(files))
        report_issue(
            issues,
            "missing OpenPose frames",
            f"{folder}: {len(missing)} of {n} frame files missing "
            f"(first: {missing[0]}); they count as frames with no person",
            count=len(missing),
        )
    return out


# ---------------------------------------------------------------------------- MiGA 2023 / 2024-25
def _numeric(cell: Any) -> bool:
    if cell is None or isinstance(cell, (int, float)) or (isinstance(cell, str) and not cell.strip()):
        return True
    try:
        float(cell)
        return True
    except (TypeError, ValueError):
        return False


def _rows_to_array(
    rows: Sequence[Sequence[Any]], width: int, lead: int, where: str, what: str, issues: Issues | None
) -> np.ndarray:
    """Numeric table rows (one a frame) -> ``(T, width // 3, 3)``; a header row is dropped, bad rows
    become zeros (reported) so frame numbering never shifts. ``lead`` leading columns are skipped."""
    if rows and not all(_numeric(c) for c in rows[0]):
        rows = rows[1:]  # header
    if not rows:
        raise DataError(f"{where}: no data rows")
    out = np.zeros((len(rows), width // 3, 3), np.float32)
    bad = 0
    for t, row in enumerate(rows):
        cells = list(row)
        while cells and (cells[-1] is None or cells[-1] == ""):
            cells.pop()  # ragged rows: trailing empty cells
        if len(cells) != lead + width:
            report_issue(
                issues,
                "wrong column count",
                f"{where} row {t}: {len(cells)} columns, expected "
                f"{lead + width} ({what}); the row counts as a frame with no person",
            )
            bad += 1
            continue
        try:
            vals = np.array([0.0 if c in (None, "") else float(c) for c in cells[lead:]], np.float32)
        except (TypeError, ValueError):
            report_issue(
                issues,
                "bad keypoint row",
                f"{where} row {t}: non-numeric cells; the row counts as a frame with no person",
            )
            bad += 1
            continue
        if not np.isfinite(vals).all():
            vals = np.nan_to_num(vals, nan=0.0, posinf=0.0, neginf=0.0)
        out[t] = vals.reshape(-1, 3)
    if bad == len(rows):
        raise DataError(f"{where}: no valid rows ({what})")
    out[out[..., 2] <= 0] = 0.0
    return out


def read_light_hand_csv(path: str | Path, issues: Issues | None = None) -> np.ndarray:
    """MiGA 2023 ``<id>_light_hand.csv``: a row a frame, column 0 skipped, then 35 joints x (x, y, conf)
    (BODY_25, 5 right fingertips, 5 left fingertips) -> ``(T, 137, 3)``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    rows = [r for r in rows if any(c.strip() for c in r)]
    kp35 = _rows_to_array(rows, 105, 1, str(path), "an index column then 35 joints x 3", issues)
    return from_light_hand(kp35)


def read_openpose_xlsx(path: str | Path, issues: Issues | None = None) -> np.ndarray:
    """MiGA 2024/25 ``<id>_openpose.xlsx``: a row a frame, 137 keypoint triplets (body, face, left hand,
    right hand) -> ``(T, 137, 3)``. A header row and a leading frame-number column are tolerated."""
    import openpyxl

    path = Path(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise DataError(f"cannot read {path} as an .xlsx workbook: {e}") from e
    try:
        rows = [r for r in wb.worksheets[0].iter_rows(values_only=True) if any(c not in (None, "") for c in r)]
    finally:
        wb.close()
    width = 3 * NUM_OPENPOSE
    data = rows[1:] if rows and not all(_numeric(c) for c in rows[0]) else rows
    lens = Counter(len([c for c in r if c not in (None, "")]) for r in data[:50])
    lead = 1 if lens and lens.most_common(1)[0][0] == width + 1 else 0
    return _rows_to_array(rows, width, lead, str(path), "137 keypoint triplets", issues)
