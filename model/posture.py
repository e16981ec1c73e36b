"""How real people sit: body proportions and the resting posture, fitted to real keypoints (numpy only).

Set v1's drawn people have short arms (an upper arm of 0.55 shoulder widths against a real 0.9), a
long neck, and rest their hands on their lap beside the hips. The speaker of iMiGUE video 298,
between gestures, leans on the table: elbows out beyond the shoulders, hands together in front of
the chest. A pose-only model that learnt "hands up near the midline" from the drawn people reads
every real idle moment as a gesture. ``PostureProfile`` keeps what real keypoints say about this,
as quantiles in shoulder widths (BODY_25's shoulder-to-shoulder distance, the frame's own):

- ``upper_arm`` / ``forearm``: 2D shoulder-elbow and elbow-wrist lengths; a limb seen in 2D is never
  longer than it is, so a high quantile is its length (``ARM_QUANTILE``);
- ``hand``: the hand's length, wrist to the middle fingertip (OpenPose hand points 0 and 12), a high
  quantile as for the arms. Set v1 drew hands two thirds of a real one's size (0.34 shoulder widths
  against 0.52 on video 298; anatomy says about 0.54: a hand is near 0.108 of a person's height, the
  shoulder points about 0.2), so a drawn hand near the face covered less of it and sat lower than a
  real one;
- ``neck_nose``: the nose's height above BODY_25's neck (a camera above the eyes, a head held
  forward: short);
- ``rest_wrist_x`` / ``rest_wrist_y`` and ``rest_elbow_x`` / ``rest_elbow_y``: where a resting
  wrist and elbow are, from the neck, x toward the person's own side, y down;
- ``rest_fingers``: which way a resting hand points: the angle (degrees) below the horizontal,
  toward the midline, of its fingertips' centroid (OpenPose hand points 4, 8, 12, 16, 20) seen from
  its wrist. Drawn at the fitted length, set v1's resting hand (22° down) reached 0.15 shoulder
  widths below the real ones' lowest point and stretched the person box down with it;
- ``rest_hand``: a resting hand's length as seen (wrist to middle fingertip, 10th/50th/90th
  percentiles): a hand lying on the table points partly toward the camera, so it is seen shorter than
  ``hand`` (video 298: a median 0.33 against 0.52), and a resting person's hands are seen at
  lengths all through that range. Drawn at full length, fitted resting hands reached past the midline
  and crossed, where real ones meet there;
- ``rest_thumb``: how far a resting thumb stands off the hand: its tip's angle (degrees, either way)
  off the line from the wrist to the middle knuckle (``thumb_angle``). A real resting thumb lies
  along the hand (median 13°, its tip near the index fingertip); set v1's stood out at 33°;
- ``rest_palm``: which way a resting hand is turned about its own axis: its signed palm width, index
  knuckle to little knuckle (hand points 5 and 17) across the wrist-to-middle-knuckle line (0 to 9),
  positive where the hand shows its palm as ``model/synthetic.py`` draws one (the thumb toward the
  midline when the fingers point up), negative where it is turned over (``palm_across``). A real
  resting hand lies on the table with its thumb up: turned over, seen from the front. Set v1's
  resting hand showed its palm, so its thumb hung below the wrist, the drawn person's lowest point;
- ``rest_hands_x``: where the two wrists' midpoint lies beside the neck (x, image right positive): a
  person at rest does not hold one pose but moves both hands to one side, back, to the other
  (measured and reported; ``seat_subject`` does not draw it, see docs/data.md);
- ``rest_elbows_x``: where the two elbows' midpoint lies beside the neck (x, image right positive):
  a person leaning on the table does not hold the body centred between the elbows. The person crop
  is set by the elbows, so this is where the neck sits in the model's input: a drawn body always
  centred there read as *move torso* (the upper body shifted between the arms) whenever a real one
  was not;
- ``shoulder_drop``: how far the shoulders' midpoint lies below the neck (OpenPose's neck is about
  the shoulders' midpoint, so near 0; set v1 drew the shoulders 0.07 shoulder widths lower, which is
  what a pose-only model learnt as a drawn person's shoulders *at rest*);
- ``ear_rise``: how far the ears sit above the eyes (a camera a little below the eyes, a head held up);
- ``head_turn``: how far the nose sits beside the neck (``|x|``, mean over ``MOTION_WINDOW_S``): a
  speaker looks at someone off camera, so the face is seen turned;
- ``head_motion`` and ``hand_motion``: how much the head (the nose, from the neck) and a wrist (from
  the neck) move while the person is not gesturing: the RMS distance from their own mean over
  ``MOTION_WINDOW_S`` windows whose frames the fit may all read. A talking person turns and nods;
  the quantiles are over windows, so they say how often the head is still and how often it moves.

Each is kept as its 10th, 50th and 90th percentile; the synthetic set (``--posture seated``) draws
each subject's value uniformly between the 10th and 90th. Only frames a fit is allowed to read are
used (``clipmg.train.fit_observer``: outside the labelled clips), and no class is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .config import ConfigError
from .files import load_shipped_json, shipped_json_names
from .layouts import HAND_FINGERTIPS, SOURCE_OFFSETS

PACKAGE = "clipmg.model.postures"
NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI, REYE, LEYE, REAR, LEAR = 0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18
LHAND, RHAND = SOURCE_OFFSETS["lhand"], SOURCE_OFFSETS["rhand"]  # OpenPose's hand blocks (the person's)
MIDDLE_TIP = HAND_FINGERTIPS[2]  # a hand's point: the middle fingertip
PERCENTILES = (10.0, 50.0, 90.0)
ARM_QUANTILE = 95.0  # a limb's length: the 95th percentile of its 2D length (foreshortening only shortens)
FIELDS = (
    "upper_arm",
    "forearm",
    "hand",
    "neck_nose",
    "rest_wrist_x",
    "rest_wrist_y",
    "rest_elbow_x",
    "rest_elbow_y",
    "rest_fingers",
    "rest_palm",
    "rest_hand",
    "rest_thumb",
    "rest_hands_x",
    "rest_elbows_x",
    "shoulder_drop",
    "ear_rise",
    "head_turn",
    "head_motion",
    "hand_motion",
)
MOTION_WINDOW_S = 1.0  # the window of the motion statistics, seconds
Quantiles = Tuple[float, float, float]
NAN3: Quantiles = (float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class PostureProfile:
    """Body proportions and resting posture of real people, in shoulder widths: 10th/50th/90th
    percentiles, except the arm lengths (see ``upper_arm``)."""

    name: str
    source: str
    frames: int
    upper_arm: Quantiles  # for the arm lengths: (p50, ARM_QUANTILE, max of the two sides' ARM_QUANTILE)
    forearm: Quantiles
    hand: Quantiles  # as the arm lengths
    neck_nose: Quantiles
    rest_wrist_x: Quantiles
    rest_wrist_y: Quantiles
    rest_elbow_x: Quantiles
    rest_elbow_y: Quantiles
    rest_fingers: Quantiles  # degrees
    rest_palm: Quantiles
    rest_hand: Quantiles
    rest_thumb: Quantiles  # degrees
    rest_hands_x: Quantiles
    rest_elbows_x: Quantiles
    shoulder_drop: Quantiles
    ear_rise: Quantiles
    head_turn: Quantiles
    head_motion: Quantiles
    hand_motion: Quantiles

    def to_dict(self) -> Dict[str, object]:
        out: Dict[str, object] = {"name": self.name, "source": self.source, "frames": self.frames}
        out.update({k: [round(float(v), 4) for v in getattr(self, k)] for k in FIELDS})
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, object]) -> "PostureProfile":
        values = {}
        for k in FIELDS:
            v = d.get(k)
            numbers = isinstance(v, list) and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)
            if not isinstance(v, list) or len(v) != 3 or not numbers:
                raise ConfigError(f"posture profile {d.get('name')!r}: {k} must be three numbers, got {v!r}")
            values[k] = (float(v[0]), float(v[1]), float(v[2]))
        return cls(name=str(d["name"]), source=str(d["source"]), frames=int(d["frames"]), **values)  # type: ignore[call-overload]

    def at_quantile(self, key: str, u: float) -> float:
        """``key``'s value at quantile ``u`` (0.1-0.9), read off the line through its three quantiles."""
        return float(np.interp(u, (0.1, 0.5, 0.9), getattr(self, key)))

    def draw(self, rng: np.random.Generator, key: str) -> float:
        """One subject's value of ``key``: uniform between its 10th and 90th percentile (for the arm
        lengths, between the length and the longer side's). ``rest_palm`` and ``rest_thumb`` follow
        their three quantiles instead (``at_quantile`` of a uniform quantile between the 10th and 90th):
        most real resting hands are turned over and a few show the palm, most thumbs lie along the hand
        and a few stand out, so the middle of their ranges is not where their people are."""
        lo, mid, hi = getattr(self, key)
        if key in ("rest_palm", "rest_thumb"):
            return self.at_quantile(key, float(rng.uniform(0.1, 0.9)))
        if key in ("upper_arm", "forearm", "hand"):
            lo, hi = mid, hi
        return float(rng.uniform(min(lo, hi), max(lo, hi)))


def _lengths(kp: np.ndarray, a: int, b: int, sw: np.ndarray) -> np.ndarray:
    ok = (kp[:, a, 2] > 0) & (kp[:, b, 2] > 0) & np.isfinite(sw)
    return np.linalg.norm(kp[ok, a, :2] - kp[ok, b, :2], axis=1) / sw[ok]


def shoulder_width(kp: np.ndarray) -> float:
    """Median shoulder width in pixels over frames with both shoulders (NaN when none has)."""
    both = (kp[:, RSHO, 2] > 0) & (kp[:, LSHO, 2] > 0)
    if not both.any():
        return float("nan")
    return float(np.median(np.linalg.norm(kp[both, RSHO, :2] - kp[both, LSHO, :2], axis=1)))


def rms_about_mean(p: np.ndarray) -> float:
    """RMS distance of points ``(T, 2)`` from their own mean."""
    return float(np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1).mean()))


def seen_centre(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The centre ``(T, 2)`` of each frame's present points ``(T, P, 3)`` (confidence > 0; 0 where none)
    and how many there are ``(T,)``."""
    seen = points[..., 2] > 0
    n = seen.sum(axis=1)
    return (points[..., :2] * seen[..., None]).sum(axis=1) / np.maximum(n, 1)[:, None], n


def _hand_axes(hand: np.ndarray, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """A hand's axes ``(T, 2)`` each, unnormalised: along it, wrist (0) to middle knuckle (9), and across
    it, the same length, toward the side a showing palm's thumb is on (``side``: -1 the person's right
    hand, on the image's left; 1 the left hand): ``model/synthetic.py``'s drawing convention."""
    d = hand[:, 9, :2] - hand[:, 0, :2]
    return d, np.stack([d[:, 1] * side, -d[:, 0] * side], axis=1)


def palm_across(hand: np.ndarray, side: int) -> np.ndarray:
    """Signed palm width ``(T,)`` of hand points ``(T, 21, 3)`` (OpenPose's order; pixels, NaN where
    point 0, 5, 9 or 17 is missing): the index knuckle (5) from the little knuckle (17) across the line
    from the wrist (0) to the middle knuckle (9), positive toward the side the thumb is on when the palm
    faces the camera (``side``: -1 the person's right hand, on the image's left; 1 the left hand)."""
    seen = (hand[:, [0, 5, 9, 17], 2] > 0).all(axis=1)
    d, n = _hand_axes(hand, side)
    length = np.linalg.norm(d, axis=1)
    seen &= length > 0
    across = ((hand[:, 5, :2] - hand[:, 17, :2]) * n).sum(axis=1) / np.where(seen, length, 1.0)
    return np.where(seen, across, np.nan)


def thumb_angle(hand: np.ndarray, side: int) -> np.ndarray:
    """Signed angle ``(T,)`` (degrees; NaN where point 0, 4 or 9 is missing) of the thumb tip (4) of hand
    points ``(T, 21, 3)``, seen from the wrist (0), off the line to the middle knuckle (9): positive
    toward the side a showing palm's thumb is on (``palm_across``'s sign)."""
    seen = (hand[:, [0, 4, 9], 2] > 0).all(axis=1)
    d, n = _hand_axes(hand, side)
    t = hand[:, 4, :2] - hand[:, 0, :2]
    angle = np.degrees(np.arctan2((t * n).sum(axis=1), (t * d).sum(axis=1)))
    return np.where(seen & (np.abs(d).sum(axis=1) > 0), angle, np.nan)


def beside_neck(kp: np.ndarray, right: int, left: int, sw: np.ndarray) -> np.ndarray:
    """How far the midpoint of joints ``right`` and ``left`` lies beside the neck (x, image right
    positive), in the shoulder widths ``sw`` ``(T,)``, over the frames showing all three (and a width)."""
    ok = (kp[:, NECK, 2] > 0) & (kp[:, right, 2] > 0) & (kp[:, left, 2] > 0) & np.isfinite(sw) & (sw > 0)
    return (0.5 * (kp[ok, right, 0] + kp[ok, left, 0]) - kp[ok, NECK, 0]) / sw[ok]


def window_starts(use: np.ndarray, n: int) -> List[int]:
    """Starts of back-to-back ``n``-frame windows inside each run of frames ``use`` marks."""
    starts, run = [], 0
    for t, u in enumerate(np.asarray(use, bool)):
        run = run + 1 if u else 0
        if run == n:
            starts.append(t - n + 1)
            run = 0
    return starts


def motion_windows(kp: np.ndarray, use: np.ndarray, fps: float) -> Dict[str, np.ndarray]:
    """Per ``MOTION_WINDOW_S`` window of ``(T, 137, 3)`` keypoints whose frames ``use`` all marks, in
    shoulder widths (the sequence's median): ``head_turn`` (``|nose x - neck x|``, the window's mean),
    ``head_motion`` (RMS of the nose from the neck about its window mean) and ``hand_motion`` (the
    same for each wrist). Windows lie back to back inside each run of frames ``use`` marks; a window
    counts only where its frames show every point it reads."""
    kp = np.where(np.isfinite(kp), kp, 0.0)
    use = np.asarray(use, bool)
    n = max(2, int(round(MOTION_WINDOW_S * fps)))
    sw = shoulder_width(kp)
    out: Dict[str, List[float]] = {"head_turn": [], "head_motion": [], "hand_motion": []}
    if not sw > 0:  # NaN: no frame shows both shoulders
        return {k: np.zeros(0) for k in out}
    for s in window_starts(use, n):
        w = kp[s : s + n]
        if (w[:, [NOSE, NECK], 2] > 0).all():
            p = (w[:, NOSE, :2] - w[:, NECK, :2]) / sw
            out["head_turn"].append(abs(float(p[:, 0].mean())))
            out["head_motion"].append(rms_about_mean(p))
        for j in (RWRI, LWRI):
            if (w[:, [j, NECK], 2] > 0).all():
                out["hand_motion"].append(rms_about_mean((w[:, j, :2] - w[:, NECK, :2]) / sw))
    return {k: np.array(v) for k, v in out.items()}


def fit_posture(
    kp: np.ndarray, use: np.ndarray, name: str, source: str, *, fps: float, require_motion: bool = True
) -> PostureProfile:
    """Fit a profile to real keypoints ``(T, 137, 3)`` at ``fps``, reading only the frames ``use`` marks.

    ``require_motion=False`` gives NaN motion quantiles where no window can be read (statistics of
    short sequences); a profile to ship needs them."""
    moving = motion_windows(kp, use, fps)
    kp = np.where(np.isfinite(kp), kp, 0.0)[np.asarray(use, bool)]
    both = (kp[:, RSHO, 2] > 0) & (kp[:, LSHO, 2] > 0)
    sw = np.where(both, np.linalg.norm(kp[:, RSHO, :2] - kp[:, LSHO, :2], axis=1), np.nan)
    sw = np.where(sw > 0, sw, np.nan)

    def q(x: np.ndarray) -> Quantiles:
        if x.size == 0:
            raise ConfigError(
                f"cannot fit the posture profile {name!r}: no frame (or {MOTION_WINDOW_S:g}-second window) "
                "shows the points it needs"
            )
        p = np.percentile(x, PERCENTILES)
        return float(p[0]), float(p[1]), float(p[2])

    def arm(pairs: Tuple[Tuple[int, int], Tuple[int, int]], what: str = "an arm") -> Quantiles:
        sides = [_lengths(kp, a, b, sw) for a, b in pairs]
        if any(s.size == 0 for s in sides):
            raise ConfigError(f"cannot fit the posture profile {name!r}: {what} is never seen")
        both_sides = np.concatenate(sides)
        return (
            float(np.percentile(both_sides, 50)),
            float(np.percentile(both_sides, ARM_QUANTILE)),
            max(float(np.percentile(s, ARM_QUANTILE)) for s in sides),
        )

    neck_ok = (kp[:, NECK, 2] > 0) & np.isfinite(sw)

    def from_neck(right: int, left: int) -> Tuple[np.ndarray, np.ndarray]:
        """Both sides' joint (out toward its own side, down) from the neck, shoulder widths."""
        outs, downs = [], []
        for j, outward in ((right, -1.0), (left, 1.0)):  # the person's right is on the image's left
            ok = neck_ok & (kp[:, j, 2] > 0)
            d = (kp[ok, j, :2] - kp[ok, NECK, :2]) / sw[ok, None]
            outs.append(outward * d[:, 0])
            downs.append(d[:, 1])
        return np.concatenate(outs), np.concatenate(downs)

    def window_q(key: str) -> Quantiles:
        return q(moving[key]) if moving[key].size or require_motion else NAN3

    fingers = []
    for wrist, hand, inward in ((RWRI, RHAND, 1.0), (LWRI, LHAND, -1.0)):  # the midline: image right of the right hand
        centre, n = seen_centre(kp[:, [hand + i for i in HAND_FINGERTIPS]])
        ok = (n >= 3) & (kp[:, wrist, 2] > 0)
        d = centre[ok] - kp[ok, wrist, :2]
        fingers.append(np.degrees(np.arctan2(d[:, 1], inward * d[:, 0])))
    palms, thumbs = [], []
    for hand, side in ((RHAND, -1), (LHAND, 1)):
        across = palm_across(kp[:, hand : hand + 21], side) / sw
        palms.append(across[np.isfinite(across)])
        thumb = np.abs(thumb_angle(kp[:, hand : hand + 21], side))
        thumbs.append(thumb[np.isfinite(thumb)])
    wrist_out, wrist_down = from_neck(RWRI, LWRI)
    elbow_out, elbow_down = from_neck(RELB, LELB)
    nose_ok = neck_ok & (kp[:, NOSE, 2] > 0)
    hands_x = beside_neck(kp, RWRI, LWRI, sw)
    elbows_x = beside_neck(kp, RELB, LELB, sw)
    shoulders = (kp[:, NECK, 2] > 0) & both & np.isfinite(sw)
    drop = (0.5 * (kp[shoulders, RSHO, 1] + kp[shoulders, LSHO, 1]) - kp[shoulders, NECK, 1]) / sw[shoulders]
    rise = []
    for ear, eye in ((REAR, REYE), (LEAR, LEYE)):
        ok = (kp[:, ear, 2] > 0) & (kp[:, eye, 2] > 0) & np.isfinite(sw)
        rise.append((kp[ok, eye, 1] - kp[ok, ear, 1]) / sw[ok])
    return PostureProfile(
        name=name,
        source=source,
        frames=int(len(kp)),
        upper_arm=arm(((RSHO, RELB), (LSHO, LELB))),
        forearm=arm(((RELB, RWRI), (LELB, LWRI))),
        hand=arm(((RHAND, RHAND + MIDDLE_TIP), (LHAND, LHAND + MIDDLE_TIP)), "a hand"),
        neck_nose=q((kp[nose_ok, NECK, 1] - kp[nose_ok, NOSE, 1]) / sw[nose_ok]),
        rest_wrist_x=q(wrist_out),
        rest_wrist_y=q(wrist_down),
        rest_elbow_x=q(elbow_out),
        rest_elbow_y=q(elbow_down),
        rest_fingers=q(np.concatenate(fingers)),
        rest_palm=q(np.concatenate(palms)),
        rest_thumb=q(np.concatenate(thumbs)),
        rest_hand=q(np.concatenate([_lengths(kp, h, h + MIDDLE_TIP, sw) for h in (RHAND, LHAND)])),
        rest_hands_x=q(hands_x),
        rest_elbows_x=q(elbows_x),
        shoulder_drop=q(drop),
        ear_rise=q(np.concatenate(rise)),
        head_turn=window_q("head_turn"),
        head_motion=window_q("head_motion"),
        hand_motion=window_q("hand_motion"),
    )


def list_postures() -> Tuple[str, ...]:
    """Names of the shipped posture profiles, sorted."""
    return shipped_json_names(PACKAGE)


def load_posture(name: str) -> PostureProfile:
    """A shipped posture profile by name; a ``ConfigError`` naming the known ones otherwise."""
    return PostureProfile.from_dict(load_shipped_json(PACKAGE, name, "posture profile"))
