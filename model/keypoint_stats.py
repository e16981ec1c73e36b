"""Statistics of keypoint sequences that tell real pose estimates from drawn ones (numpy only).

Every sequence is OpenPose's 137-point layout in pixels, ``(T, 137, 3)`` with confidence 0 for a
missing point (what the OpenPose reader, the MediaPipe backend and the synthetic set all produce).
Lengths are in **shoulder widths**: within a frame (hand to face) the frame's own distance between
BODY_25's shoulders, for motion across frames (jitter, sway, speed) the sequence's median one,
times in seconds, so a 1280×720 press conference, a 600×338 GIF and a 160×120 synthetic frame
compare directly. ``labels`` (``(T,)`` int, -1 outside gestures) separates gesture frames from idle
ones where a sequence has them.

The statistics (``keypoint_statistics``):

- ``person``: fraction of frames with any body point.
- ``conf_median`` / ``conf_p10`` per upper-body joint and for hand points: confidence where present.
- ``missing`` per upper-body joint: fraction of person frames where it is absent; ``hand_missing``:
  fraction of person frames where a hand has fewer than 3 points (the person's left / right).
- ``jitter``: median absolute second difference of upper-body joints between consecutive frames
  (``|x[t+1] - 2 x[t] + x[t-1]|``), shoulder widths: the frame-to-frame noise a smooth motion does
  not have.
- ``sway``: the neck's RMS distance from its own mean over 1-second windows of idle frames, median
  over windows, shoulder widths: how much a person who is not gesturing moves.
- ``wrist_speed_p50`` / ``_p90``: wrist speed during gestures, shoulder widths a second.
- ``hand_face_gesture`` / ``hand_face_idle``: the nearer wrist's distance to the nose, median over
  gesture / idle frames, shoulder widths.
- ``near_face`` / ``near_face_above``: hands near the face, read from every frame (no label): the
  share of frames-and-hands (a hand with at least 3 points) whose hand centre (the mean of its
  points) lies within ``NEAR_FACE`` shoulder widths of the nose, and how far above the nose that
  centre is, median over them (negative: below), shoulder widths of the frame. Where a hand is when
  it is at the face, whatever it is doing there.
- ``move_at_start`` / ``move_at_end``: where a labelled clip's ends lie on the hands' movement: for
  each run of one label, the time from its first (last) frame to the fastest frame-to-frame movement of
  a hand centre within ``ENDS_WINDOW_S`` either side, median over the runs whose fastest movement there
  reaches ``ENDS_MIN_SPEED``, seconds (negative: before the label's frame). A label that holds a
  whole reach puts it after the start; one that begins mid-reach, near 0.
- ``rest_lowest``: the lowest of the ``upper22`` points (the skeleton the model reads, which sets the
  person crop's bottom) below the neck, median over idle frames, shoulder widths of the frame.
- ``elbows_off_centre``: how far the neck lies beside the resting elbows' midpoint, the median of
  its absolute value over idle frames, shoulder widths (the person crop is set by the elbows: this is
  how far off the crop's centre the body sits).
- ``upper_arm`` / ``forearm`` (95th percentile of the 2D length), ``neck_nose`` (median), and the
  resting posture ``rest_wrist`` / ``rest_elbow`` (median ``out`` / ``down`` from the neck) over idle
  frames (at least ``POSTURE_MIN_FRAMES``), shoulder widths: ``model/posture.py``'s statistics,
  what ``--posture`` fits, ``hand`` (wrist to middle fingertip, 95th percentile) and ``rest_fingers``
  (degrees below the horizontal of the resting fingertips seen from the wrist), ``rest_palm`` (the
  resting palm's signed width, negative: turned over, ``posture.palm_across``) ``rest_hand`` (the
  resting hand's length as seen, median) and ``rest_thumb`` (the resting thumb tip's angle off the
  hand's line, degrees, median). Also from it:
  ``shoulder_drop`` (the shoulders' midpoint below the neck) and ``ear_rise`` (ears above the
  eyes), medians; ``rest_hands`` (the wrists' midpoint beside the neck, ``p10`` / ``p90``); over
  1-second windows of idle frames ``head_turn`` (the nose beside the neck, median), ``head_motion``
  and ``hand_motion`` (RMS of the nose / a wrist about its mean from the neck, ``p50`` / ``p90``;
  NaN where no window is idle throughout).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .config import ConfigError
from .layouts import SOURCE_OFFSETS, layout_indices
from .posture import beside_neck, fit_posture, rms_about_mean, seen_centre, shoulder_width

NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI, REYE, LEYE, REAR, LEAR = 0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18
UPPER_BODY: Dict[str, int] = {
    "nose": NOSE,
    "neck": NECK,
    "r_shoulder": RSHO,
    "r_elbow": RELB,
    "r_wrist": RWRI,
    "l_shoulder": LSHO,
    "l_elbow": LELB,
    "l_wrist": LWRI,
    "r_eye": REYE,
    "l_eye": LEYE,
    "r_ear": REAR,
    "l_ear": LEAR,
}
HANDS = {"left": SOURCE_OFFSETS["lhand"], "right": SOURCE_OFFSETS["rhand"]}
UPPER22 = layout_indices("upper22")  # the skeleton the model reads, as indices of the 137 points
SWAY_WINDOW_S = 1.0  # the synthetic set's idle gaps last 0.24-1.44 s
NEAR_FACE = 0.6  # a hand centre this near the nose (shoulder widths) is at the face
ENDS_WINDOW_S = 0.6  # move_at_start / _end look for the fastest movement this far either side of an end
ENDS_MIN_SPEED = 0.6  # shoulder widths a second: a clip end with no faster movement near it is not placed
POSTURE_MIN_FRAMES = 10  # fewer idle frames than this give no resting-posture statistics (NaN)


def frame_scale(kp: np.ndarray) -> np.ndarray:
    """``(T,)`` pixels per shoulder width: each frame's own, the sequence median where one is missing."""
    both = (kp[:, RSHO, 2] > 0) & (kp[:, LSHO, 2] > 0)
    own = np.linalg.norm(kp[:, RSHO, :2] - kp[:, LSHO, :2], axis=1)
    return np.where(both & (own > 0), own, shoulder_width(kp))


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else float("nan")


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def nearer_wrist_to_nose(kp: np.ndarray, unit) -> np.ndarray:
    """Per frame, the nearer present wrist's distance to the nose in ``unit`` pixels (a number or
    :func:`frame_scale`'s ``(T,)``; NaN when the nose or both wrists are missing)."""
    out = np.full(len(kp), np.nan)
    nose = kp[:, NOSE]
    for w in (RWRI, LWRI):
        ok = (nose[:, 2] > 0) & (kp[:, w, 2] > 0)
        d = np.linalg.norm(kp[:, w, :2] - nose[:, :2], axis=1) / unit
        out = np.where(ok & ~(out <= d), d, out)  # keeps the smaller; NaN counts as larger
    return out


def hands_near_face(kp: np.ndarray, unit) -> np.ndarray:
    """Height above the nose (``unit`` pixels; negative: below) of every hand centre within
    ``NEAR_FACE`` units of the nose, and ``NaN`` for every other frame-and-hand with at least 3 hand
    points: a ``(frames × 2,)`` array whose finite share is how often a hand is at the face."""
    unit = np.broadcast_to(np.asarray(unit, np.float64), (len(kp),))
    nose_ok = kp[:, NOSE, 2] > 0
    out = []
    for off in HANDS.values():
        centre, n = seen_centre(kp[:, off : off + 21])
        rel = (centre - kp[:, NOSE, :2]) / unit[:, None]
        near = np.hypot(rel[:, 0], rel[:, 1]) < NEAR_FACE
        above = np.where(near & nose_ok, -rel[:, 1], np.nan)
        out.append(above[(n >= 3) & nose_ok])
    return np.concatenate(out)


def lowest_below_neck(kp: np.ndarray, unit) -> np.ndarray:
    """Per frame, how far the lowest present ``upper22`` point lies below the neck in ``unit`` pixels
    (NaN where the neck is missing)."""
    unit = np.broadcast_to(np.asarray(unit, np.float64), (len(kp),))
    pts = kp[:, UPPER22]
    lowest = np.where(pts[..., 2] > 0, pts[..., 1], -np.inf).max(axis=1)
    return np.where(kp[:, NECK, 2] > 0, (lowest - kp[:, NECK, 1]) / unit, np.nan)


def hand_speed(kp: np.ndarray, fps: float) -> np.ndarray:
    """``(T,)`` the faster hand centre's speed from frame t to t + 1 (a hand: the mean of its present
    points, at least 3), shoulder widths (the sequence's) a second; NaN where no hand is seen in both
    frames, and for the last frame."""
    unit = shoulder_width(kp)
    speeds = []
    for off in HANDS.values():
        h = kp[:, off : off + 21]
        centre, n = seen_centre(h)
        centre = np.where((n >= 3)[:, None], centre, np.nan)
        speeds.append(np.linalg.norm(np.diff(centre, axis=0), axis=1) / unit * fps)
    return np.concatenate([np.fmax(*speeds), [np.nan]])  # fmax: the other hand's where one is NaN


def label_runs(labels: np.ndarray) -> List[Tuple[int, int]]:
    """``[(first, last), ...]``: the runs of one label (>= 0), inclusive."""
    runs: List[Tuple[int, int]] = []
    start = 0
    for i, lab in enumerate(labels):
        if lab >= 0 and (i == 0 or labels[i - 1] != lab):
            start = i
        if lab >= 0 and (i == len(labels) - 1 or labels[i + 1] != lab):
            runs.append((start, i))
    return runs


def movement_at_ends(kp: np.ndarray, labels: np.ndarray, fps: float) -> Tuple[np.ndarray, np.ndarray]:
    """Seconds from each labelled run's first frame and from its last to the fastest hand movement
    within ``ENDS_WINDOW_S`` of it (two arrays; runs without a movement of ``ENDS_MIN_SPEED`` there are
    left out)."""
    speed, reach = hand_speed(kp, fps), max(1, int(round(ENDS_WINDOW_S * fps)))
    out: Tuple[List[float], List[float]] = ([], [])
    for first, last in label_runs(labels):
        for k, ref in enumerate((first, last)):
            lo, hi = max(0, ref - reach), min(len(kp) - 1, ref + reach)
            w = speed[lo : hi + 1]
            if np.isfinite(w).any() and np.nanmax(w) >= ENDS_MIN_SPEED:
                out[k].append((lo + int(np.nanargmax(w)) - ref) / fps)
    return np.array(out[0]), np.array(out[1])


def keypoint_statistics(kp: np.ndarray, fps: float, labels: Optional[np.ndarray] = None) -> Dict[str, object]:
    """The statistics above for one sequence ``(T, 137, 3)`` at ``fps``; ``labels`` ``(T,)`` (-1: idle)."""
    kp = np.asarray(kp, np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (137, 3):
        raise ValueError(f"keypoints must be (T, 137, 3), got {kp.shape}")
    if not np.isfinite(kp).all():
        kp = np.where(np.isfinite(kp), kp, 0.0).astype(np.float32)
        kp[kp[..., 2] <= 0] = 0.0
    t = len(kp)
    labels = np.full(t, -1) if labels is None else np.asarray(labels)
    unit = np.full(t, shoulder_width(kp))  # motion across frames: one scale for the sequence
    body = kp[:, :25]
    person = (body[..., 2] > 0).any(axis=1)
    gesture, idle = person & (labels >= 0), person & (labels < 0)
    stats: Dict[str, object] = {
        "frames": t,
        "fps": fps,
        "shoulder_px": shoulder_width(kp),
        "person": float(person.mean()) if t else 0.0,
        "gesture_frames": int(gesture.sum()),
        "idle_frames": int(idle.sum()),
    }
    conf_med, conf_p10, missing = {}, {}, {}
    for name, j in UPPER_BODY.items():
        c = kp[person, j, 2]
        conf_med[name], conf_p10[name] = _median(c[c > 0]), _pct(c[c > 0], 10)
        missing[name] = float((c <= 0).mean()) if c.size else float("nan")
    hand_conf, hand_missing = [], {}
    for side, off in HANDS.items():
        h = kp[person, off : off + 21, 2]
        hand_conf.append(h[h > 0])
        hand_missing[side] = float(((h > 0).sum(axis=1) < 3).mean()) if h.size else float("nan")
    hc = np.concatenate(hand_conf)
    conf_med["hand points"], conf_p10["hand points"] = _median(hc), _pct(hc, 10)
    stats.update(conf_median=conf_med, conf_p10=conf_p10, missing=missing, hand_missing=hand_missing)

    ub = np.array(list(UPPER_BODY.values()))
    xy, ok = kp[:, ub, :2] / unit[:, None, None], kp[:, ub, 2] > 0
    if t >= 3:
        acc = np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)
        acc_ok = ok[2:] & ok[1:-1] & ok[:-2]
        stats["jitter"] = _median(acc[acc_ok])
    else:
        stats["jitter"] = float("nan")

    n = max(2, int(round(SWAY_WINDOW_S * fps)))
    neck_ok = idle & (kp[:, NECK, 2] > 0)
    sway = []
    for s in range(0, t - n + 1, n):
        if neck_ok[s : s + n].all():
            p = kp[s : s + n, NECK, :2] / unit[s : s + n, None]
            sway.append(rms_about_mean(p))
    stats["sway"] = _median(np.array(sway))
    stats["sway_windows"] = len(sway)

    speeds = []
    for w in (RWRI, LWRI):
        v = np.linalg.norm(np.diff(kp[:, w, :2], axis=0), axis=1) / unit[1:] * fps
        v_ok = (kp[1:, w, 2] > 0) & (kp[:-1, w, 2] > 0) & gesture[1:] & gesture[:-1]
        speeds.append(v[v_ok])
    sp = np.concatenate(speeds) if speeds else np.zeros(0)
    stats["wrist_speed_p50"], stats["wrist_speed_p90"] = _median(sp), _pct(sp, 90)

    scale = frame_scale(kp)  # within a frame: the frame's own scale
    d = nearer_wrist_to_nose(kp, scale)
    stats["hand_face_gesture"] = _median(d[gesture & np.isfinite(d)])
    stats["hand_face_idle"] = _median(d[idle & np.isfinite(d)])
    at_face = hands_near_face(kp[person], scale[person])
    stats["near_face"] = float(np.isfinite(at_face).mean()) if at_face.size else float("nan")
    stats["near_face_above"] = _median(at_face[np.isfinite(at_face)])
    elbows_off = beside_neck(kp[idle], RELB, LELB, scale[idle])
    stats["elbows_off_centre"] = _median(np.abs(elbows_off))
    at_start, at_end = movement_at_ends(kp, labels, fps)
    stats["move_at_start"], stats["move_at_end"] = _median(at_start), _median(at_end)
    low = lowest_below_neck(kp[idle], scale[idle])
    stats["rest_lowest"] = _median(low[np.isfinite(low)])
    seat = None
    if idle.sum() >= POSTURE_MIN_FRAMES:
        try:
            seat = fit_posture(kp, idle, "", "", fps=fps, require_motion=False)
        except ConfigError:  # no idle frame shows the arms
            pass

    def mid(key: str, at: int = 1) -> float:  # the fit's middle value (the arms: the 95th percentile); NaN: none
        return float(getattr(seat, key)[at]) if seat is not None else float("nan")

    stats.update(
        upper_arm=mid("upper_arm"),
        forearm=mid("forearm"),
        hand=mid("hand"),
        rest_fingers=mid("rest_fingers"),
        rest_palm=mid("rest_palm"),
        rest_hand=mid("rest_hand"),
        rest_thumb=mid("rest_thumb"),
        neck_nose=mid("neck_nose"),
        rest_wrist={"out": mid("rest_wrist_x"), "down": mid("rest_wrist_y")},
        rest_elbow={"out": mid("rest_elbow_x"), "down": mid("rest_elbow_y")},
        rest_hands={"p10": mid("rest_hands_x", 0), "p90": mid("rest_hands_x", 2)},
        shoulder_drop=mid("shoulder_drop"),
        ear_rise=mid("ear_rise"),
        head_turn=mid("head_turn"),
        head_motion={"p50": mid("head_motion"), "p90": mid("head_motion", 2)},
        hand_motion={"p50": mid("hand_motion"), "p90": mid("hand_motion", 2)},
    )
    return stats


def labels_from_segments(frames: int, segments) -> np.ndarray:
    """``(frames,)`` labels from ``(label, start, end)`` rows (inclusive ends; -1 elsewhere)."""
    out = np.full(frames, -1, np.int64)
    for label, start, end in segments:
        out[max(0, start) : min(frames, end + 1)] = label
    return out
