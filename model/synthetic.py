"""The synthetic subject: a drawn seated upper body performing iMiGUE-like micro-gestures, with the
exact 2D keypoints of every frame (NumPy and OpenCV only).

One subject a video (random size, position, colours, background) sits behind a desk in one long
take; gesture episodes are separated by idle spans. Keypoints are in the ``openpose137`` layout
(body 0-24, face 25-94, left hand 95-115, right hand 116-136; the face is approximate).
``synthetic_stream(seed, config)`` yields ``SynthFrame`` (RGB image, exact and observed keypoints,
current label) forever: the live recognizer's synthetic camera (``stream/sources.py``) and the
synthetic dataset writer (``train/synth.py``, which also explains the class scripts) both use it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np

from .layouts import HAND_FINGERTIPS
from .observation import ProfileObserver, list_profiles, load_profile
from .posture import PostureProfile, list_postures, load_posture, thumb_angle
from .synthetic_pixels import PIXEL_STYLES, apply_camera, draw_props, make_look, photo_background

SYNTH_CLASSES: Tuple[str, ...] = (
    "touch chin",
    "touch forehead",
    "touch ears",
    "touch face",
    "rub eyes",
    "cover face",
    "fold arm",
    "arm akimbo",
    "rub hand",
    "shake shoulder",
    "scratch arm",
    "minaret hand",
    "play things",
    "touch chest",
    "adjust tie",
    "no gesture",
)
# Set v2 adds motion scripts for the frequent iMiGUE classes v1 lacks (docs/data.md); "no gesture" stays last.
V2_ADDED: Tuple[str, ...] = (
    "illustrative",
    "bite lip",
    "move torso",
    "touch other face part",
    "cross finger",
    "deep breath",
    "sit straight",
    "touch neck",
)
SYNTH_CLASSES_V2: Tuple[str, ...] = SYNTH_CLASSES[:-1] + V2_ADDED + ("no gesture",)
CLASS_SETS: Dict[str, Tuple[str, ...]] = {"v1": SYNTH_CLASSES, "v2": SYNTH_CLASSES_V2}
# What a class set brings unless told otherwise (clipmg-synth): v1 as it was made; v2 the set made for
# real people: keypoints as real OpenPose sees them, people built and seated as real ones, varied pixels.
SET_DEFAULTS: Dict[str, Dict[str, object]] = {
    "v1": {
        "observer": "v1",
        "posture": "v1",
        "pixels": "v1",
        "talking": False,
        "scripts": "v1",
        "hands": "v1",
        "timing": "v1",
    },
    "v2": {
        "observer": "openpose",
        "posture": "seated",
        "pixels": "varied",
        "talking": True,
        "scripts": "v2",
        "hands": "v1",
        "timing": "straddle",
    },
}
SCRIPT_STYLES = ("v1", "v2")  # SynthConfig.scripts
HAND_STYLES = ("v1", "fitted")  # SynthConfig.hands
TIMING_STYLES = ("v1", "straddle")  # SynthConfig.timing
# Share of iMiGUE's 18 498 clips by class (%), from its full label file: the 15 most frequent
# classes exactly; arm akimbo (8 clips), cover face (32) and rub eyes (90) by count; the other
# scripted classes are among the 17 with 0.8 % or less each, so 0.8 is their upper bound.
IMIGUE_SHARE: Dict[str, float] = {
    "illustrative": 30.9,
    "shake shoulder": 15.6,
    "bite lip": 8.4,
    "move torso": 6.6,
    "touch other face part": 6.1,
    "rub hand": 5.6,
    "cross finger": 4.8,
    "scratch arm": 2.8,
    "deep breath": 2.8,
    "touch chin": 2.5,
    "play things": 2.3,
    "fold arm": 2.2,
    "touch face": 1.5,
    "sit straight": 1.2,
    "touch neck": 1.1,
    "rub eyes": 100 * 90 / 18498,
    "cover face": 100 * 32 / 18498,
    "arm akimbo": 100 * 8 / 18498,
    "touch forehead": 0.8,
    "touch ears": 0.8,
    "minaret hand": 0.8,
    "touch chest": 0.8,
    "adjust tie": 0.8,
}
_UPPER_BOUND_SHARES = ("touch forehead", "touch ears", "minaret hand", "touch chest", "adjust tie")


def imigue_coverage(classes: Sequence[str]) -> float:
    """Share of iMiGUE's clips (%) whose class is among ``classes``: a lower bound (the classes whose
    share is known only as at most 0.8 % count 0 here)."""
    return sum(IMIGUE_SHARE.get(c, 0.0) for c in set(classes) if c not in _UPPER_BOUND_SHARES)


# Oscillating scripts: frequency range (Hz) and amplitude range (torso units).
_OSCILLATION = {
    "illustrative": ((1.0, 2.5), (0.05, 0.12)),
    "move torso": ((0.3, 0.8), (0.03, 0.06)),
    "rub eyes": ((3.0, 5.0), (0.05, 0.09)),
    "scratch arm": ((4.0, 6.0), (0.04, 0.08)),
    "rub hand": ((2.0, 4.0), (0.05, 0.1)),
    "shake shoulder": ((1.5, 3.0), (0.06, 0.12)),
    "minaret hand": ((0.5, 1.2), (0.02, 0.05)),
    "play things": ((0.5, 1.2), (0.02, 0.05)),
    "touch chest": ((0.8, 1.5), (0.02, 0.04)),
    "adjust tie": ((0.8, 1.5), (0.02, 0.04)),
}
_OBJECT_KIND = {"play things": (0, 1), "adjust tie": (2,)}  # 0 pen, 1 phone (held), 2 tie (worn)
OBJECT_COLOURS = ((230, 40, 40), (40, 90, 230), (250, 210, 30), (40, 200, 80), (240, 120, 20), (170, 60, 200))
# (x, y) of the 68 iBUG points + 2 pupils in head units (centre 0, radius 1); image-left is the
# person's right, as OpenPose numbers them.
_JAW = [(-0.95 * math.cos(a), 0.1 + 0.85 * math.sin(a)) for a in np.linspace(-0.15, math.pi + 0.15, 17)]
_FACE_TEMPLATE = np.array(
    _JAW
    + [(-0.7 + 0.1 * i, -0.45 - 0.06 * math.sin(math.pi * i / 4)) for i in range(5)]
    + [(0.3 + 0.1 * i, -0.45 - 0.06 * math.sin(math.pi * i / 4)) for i in range(5)]
    + [(0.0, -0.3 + 0.13 * i) for i in range(4)]
    + [(-0.2 + 0.1 * i, 0.3 + 0.04 * (1 - abs(i - 2) / 2)) for i in range(5)]
    + [
        (c + 0.16 * math.cos(a), -0.2 + 0.07 * math.sin(a))
        for c in (-0.38, 0.38)
        for a in np.linspace(math.pi, 3 * math.pi, 6, endpoint=False)
    ]
    + [(0.35 * math.cos(a), 0.55 + 0.14 * math.sin(a)) for a in np.linspace(math.pi, 3 * math.pi, 12, endpoint=False)]
    + [(0.22 * math.cos(a), 0.55 + 0.05 * math.sin(a)) for a in np.linspace(math.pi, 3 * math.pi, 8, endpoint=False)]
    + [(-0.38, -0.2), (0.38, -0.2)],
    dtype=np.float64,
)
assert _FACE_TEMPLATE.shape == (70, 2)


@dataclass(frozen=True)
class SynthConfig:
    """Size and randomness of the synthetic set."""

    width: int = 160  # frame width in pixels (even: H.264 yuv420p)
    height: int = 120  # frame height in pixels (even)
    fps: float = 25.0  # frame rate written into the mp4 (motion frequencies are in Hz)
    clip_frames: Tuple[int, int] = (24, 64)  # gesture clip length range, inclusive
    gap_frames: Tuple[int, int] = (6, 36)  # unlabelled idle span between clips, inclusive
    noise_px: Tuple[float, float] = (0.2, 1.0)  # per-video keypoint noise sigma range (in 120-px units)
    dropout: Tuple[float, float] = (0.01, 0.04)  # per-video probability that one keypoint is missed
    classes: Tuple[str, ...] = SYNTH_CLASSES  # motion scripts to use (names from SYNTH_CLASSES)
    # how the keypoints are observed: "v1" (the first, guessed noise and dropout: what the shipped
    # demo model was trained on) or a profile fitted to a real estimator (model/observers/, e.g. "openpose")
    observer: str = "v1"
    # the person talks throughout, gesturing or not (small nods with phrases, a moving mouth: set v2);
    # False: a still face, as in set v1
    talking: bool = False
    # "varied": a photograph behind, props in front, a camera that zooms, tilts, exposes, blurs and
    # compresses, per video (model/synthetic_pixels.py); "v1": the drawing as set v1 made it
    pixels: str = "v1"
    # the people's proportions and resting posture: "v1" (set v1's drawn body: short arms, hands on the lap)
    # or a profile fitted to real people (model/postures/, e.g. "seated": long arms, elbows out on the table)
    posture: str = "v1"
    # where set v1's look-alike pairs put the hands: "v1" as set v1 drew them (touch face where rub eyes
    # rubs, minaret hand where play things holds its object, touch chest where adjust tie tugs: told apart
    # by motion or pixels only); "v2": each with a place and a hand of its own (fingers on the cheek;
    # fingertips steepled in front of the chest; a flat palm on the breastbone, fingers pinching the knot)
    scripts: str = "v1"
    # the people's hands: "v1" (set v1's, 0.3 torso long: two thirds of a real hand; resting fingers 22
    # degrees down, showing the palm, the thumb standing out) or "fitted": the posture profile's hand length
    # and, at rest, its fingers' angle, turn, foreshortening and thumb, and the scripts whose contact is
    # the palm put the palm there (docs/data.md); needs a fitted posture
    hands: str = "v1"
    # where a clip's label lies on its movement: "v1" (the label holds the whole movement: the reach
    # after its first frame, the return before its last, still hands in the gaps) or "straddle" (the
    # label starts half-way through the reach and ends half-way through the return, the rest of them
    # in the gaps around it, as video 298's labelled clips lie on its speaker's movements; set v2's
    # default; docs/data.md)
    timing: str = "v1"

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or not (64 <= self.height <= 1080 and 64 <= self.width <= 1920):
            raise ValueError(
                f"frame size must be even and between 64 and 1920x1080 pixels, got {self.width}x{self.height}"
            )
        if self.width < self.height:
            raise ValueError(f"frames must be landscape (width >= height), got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must lie in [1, 120], got {self.fps}")
        lo, hi = self.clip_frames
        if not 8 <= lo <= hi:
            raise ValueError(f"clip_frames must be (lo, hi) with 8 <= lo <= hi, got {self.clip_frames}")
        if not 0 <= self.gap_frames[0] <= self.gap_frames[1]:
            raise ValueError(f"gap_frames must be (lo, hi) with 0 <= lo <= hi, got {self.gap_frames}")
        if self.observer != "v1" and self.observer not in list_profiles():
            raise ValueError(f"observer must be one of v1, {', '.join(list_profiles())}; got {self.observer!r}")
        if self.posture != "v1" and self.posture not in list_postures():
            raise ValueError(f"posture must be one of v1, {', '.join(list_postures())}; got {self.posture!r}")
        if self.scripts not in SCRIPT_STYLES:
            raise ValueError(f"scripts must be one of {', '.join(SCRIPT_STYLES)}; got {self.scripts!r}")
        if self.hands not in HAND_STYLES:
            raise ValueError(f"hands must be one of {', '.join(HAND_STYLES)}; got {self.hands!r}")
        if self.timing not in TIMING_STYLES:
            raise ValueError(f"timing must be one of {', '.join(TIMING_STYLES)}; got {self.timing!r}")
        if self.hands != "v1" and self.posture == "v1":
            raise ValueError("hands 'fitted' come from a fitted posture profile; choose one with --posture")
        if self.pixels not in PIXEL_STYLES:
            raise ValueError(f"pixels must be one of {', '.join(PIXEL_STYLES)}; got {self.pixels!r}")
        unknown = [c for c in self.classes if c not in SYNTH_CLASSES_V2]
        if unknown or len(self.classes) < 2:
            raise ValueError(f"classes must be at least two of {', '.join(SYNTH_CLASSES_V2)}; unknown: {unknown}")


@dataclass(frozen=True)
class Wander:
    """Small smooth motion whose RMS over about a second swings between ``lo`` and ``hi`` px.

    A talking person's head (or a resting hand) is still for a while, then moves: the amplitude
    follows a slow wave (``period`` s) from ``lo`` to ``hi`` on a log scale, and the motion itself is
    two sinusoids near 1 Hz (x and y; RMS ``0.8 a`` and ``0.6 a``, so ``a`` in all)."""

    lo: float
    hi: float
    freq: Tuple[float, float]  # Hz, x and y
    period: float  # seconds of the amplitude's wave
    phase: Tuple[float, float, float]  # x, y, amplitude

    @staticmethod
    def draw(rng: np.random.Generator, lo: float, hi: float) -> "Wander":
        f, period, ph = rng.uniform(0.7, 1.4, 2), rng.uniform(5.0, 11.0), rng.uniform(0, 2 * math.pi, 3)
        return Wander(lo, hi, (float(f[0]), float(f[1])), float(period), (float(ph[0]), float(ph[1]), float(ph[2])))

    def offset(self, f: int, fps: float) -> np.ndarray:
        """The ``(dx, dy)`` px of frame ``f``."""
        tt = f / fps
        u = 0.5 + 0.5 * math.sin(2 * math.pi * tt / self.period + self.phase[2])
        lo = max(self.lo, 1e-6)
        a = lo * (max(self.hi, lo) / lo) ** u * math.sqrt(2.0)
        return a * np.array(
            [
                0.8 * math.sin(2 * math.pi * self.freq[0] * tt + self.phase[0]),
                0.6 * math.sin(2 * math.pi * self.freq[1] * tt + self.phase[1]),
            ]
        )


@dataclass(frozen=True)
class Foreshortening:
    """How long a person's resting hands are seen, over time: a hand lying on the table points partly at
    the camera and is seen shorter than it is, by an amount that changes as the person shifts. Each hand
    goes through the posture profile's ``rest_hand`` quantiles (10th to 90th, read off the line through
    them) on a slow wave of its own phase, so a person's frames span the real spread; a curled resting hand
    is seen at most as long as it is square to the camera (``_reach_for``), a little short of the 90th."""

    quantiles: Tuple[float, float, float]  # the 10th/50th/90th percentile seen length, in hand lengths
    period_s: float  # one wave through them
    phases: Tuple[float, float]  # the right and the left hand's
    PERIOD_S = (4.0, 12.0)  # the range of ``period_s`` drawn

    def seen(self, side: int, t: int, fps: float) -> float:
        """Hand ``side``'s (-1 the right, on the image's left) length as seen at frame ``t``, hand lengths."""
        u = 0.5 + 0.4 * math.sin(2 * math.pi * t / (fps * self.period_s) + self.phases[0 if side < 0 else 1])
        return float(np.interp(u, (0.1, 0.5, 0.9), self.quantiles))


@dataclass(frozen=True)
class Subject:
    """One person, one background: everything about a video that does not move."""

    cx: float  # body midline x (px)
    neck_y: float  # neck y at rest (px)
    torso: float  # neck-to-hip length (px): the unit of every other length
    shoulder: float  # half shoulder width (px)
    head_r: float  # head radius (px)
    desk_y: float  # desk top y (px)
    skin: Tuple[int, int, int]  # RGB of face and hands
    shirt: Tuple[int, int, int]
    hair: Tuple[int, int, int]
    desk: Tuple[int, int, int]
    short_sleeves: bool  # forearms drawn in skin colour
    rest_dx: Tuple[float, float]  # resting hand offsets from the midline, right and left (torso units)
    breath_period: float  # frames
    noise_px: float  # keypoint noise sigma of the observations (px)
    dropout: float  # per-keypoint miss probability of the observations
    # A posture profile's subject (``seat_subject``); None: set v1's drawn body.
    upper_arm_px: float | None = None
    forearm_px: float | None = None
    hand_px: float | None = None  # wrist to the middle fingertip (px); None: set v1's 0.3 torso
    rest_fingers: float | None = None  # a resting hand's fingertips this many degrees below the horizontal
    rest_across: float = 1.0  # a resting hand turned about its own axis (``HandPose.across``); 1: set v1's
    rest_seen: Foreshortening | None = None  # how long the resting hands are seen; None: as long as they are
    rest_thumb: float = 0.0  # a resting thumb's spread moved by this many degrees (``HandPose.thumb``)
    neck_gap: float | None = None  # neck to the bottom of the head (px); None: 0.19 torso
    rest_y: float | None = None  # resting wrist height below the neck (px); None: the hand on the desk's edge
    rest_elbow: Tuple[float, float] | None = None  # resting elbow (outward, down) from the shoulder, torso units
    shoulder_drop_px: float | None = None  # shoulders below the neck (px); None: 0.06 torso
    ear_rise_px: float | None = None  # ears above the eyes (px); None: 0.15 head radii below them
    head_turn_px: float | None = None  # the face's features this far beside the head's centre (px, + image right)
    head_wander: Wander | None = None  # the head's motion while talking or resting
    hand_wander: Tuple[Wander, Wander] | None = None  # each resting hand's (right, left); None: set v1's drift
    elbows_shift_px: float | None = None  # both resting elbows this far aside of the neck (px, + image right)

    @property
    def upper_arm(self) -> float:
        return 0.5 * self.torso if self.upper_arm_px is None else self.upper_arm_px

    @property
    def forearm(self) -> float:
        return 0.47 * self.torso if self.forearm_px is None else self.forearm_px

    @property
    def hand(self) -> float:
        return 0.3 * self.torso if self.hand_px is None else self.hand_px


@dataclass(frozen=True)
class Episode:
    """A span of frames ``[start, end]`` (inclusive): one gesture clip, or an idle gap (``cls`` None)."""

    start: int
    end: int
    cls: str | None  # class name; None = unlabelled idle span
    side: int = -1  # active hand for one-hand gestures: -1 right (image left), +1 left
    amp: float = 0.0  # oscillation amplitude (torso units)
    freq: float = 0.0  # oscillation frequency (Hz)
    phase: float = 0.0
    ramp: Tuple[float, float] = (0.3, 0.3)  # reach and return fractions of the episode
    jitter: Tuple[float, float] = (0.0, 0.0)  # target offset (head / torso units)
    talking: bool = False  # the person talks meanwhile (nods, a moving mouth)
    scripts: str = "v1"  # SynthConfig.scripts
    obj: Tuple[int, int, int] | None = None  # colour of the object that tells the class (play things, adjust tie)
    obj_kind: int = 0  # 0 pen, 1 phone, 2 tie
    obj_angle: float = 0.0  # radians
    lead: int = 0  # frames the movement starts before ``start`` (timing "straddle"), in the gap before
    tail: int = 0  # frames it ends after ``end``, in the gap after


@dataclass(frozen=True)
class SynthFrame:
    """One frame of a synthetic take. image ``(H, W, 3)`` uint8 RGB; keypoints ``(137, 3)`` float32
    exact (confidence 1 where drawn, 0 for the hidden lower body); observed ``(137, 3)`` float32 with
    the noise and dropout written to the JSON files; label: class index or -1 in unlabelled gaps."""

    index: int
    image: np.ndarray
    keypoints: np.ndarray
    observed: np.ndarray
    label: int
    class_name: str | None


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> Tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def make_subject(rng: np.random.Generator, cfg: SynthConfig) -> Subject:
    """Draw a subject that fits the frame's centre square (the ``center`` crop keeps it whole)."""
    w, h = cfg.width, cfg.height
    torso = h * rng.uniform(0.36, 0.48)
    head_r = torso * rng.uniform(0.21, 0.26)
    top = 0.19 * torso + 2.3 * head_r + 0.04 * h  # neck-to-head-top plus a margin
    desk_frac = rng.uniform(0.78, 0.9)
    lo, hi = top, h * 0.93 - desk_frac * torso
    neck_y = rng.uniform(lo, max(lo, hi))
    skins = ((241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (120, 75, 50))
    skin = np.clip(np.array(skins[rng.integers(len(skins))]) + rng.integers(-12, 13, 3), 0, 255)
    s = cfg.height / 120.0
    return Subject(
        cx=w / 2 + rng.uniform(-0.06, 0.06) * h,
        neck_y=neck_y,
        torso=torso,
        shoulder=torso * rng.uniform(0.4, 0.5),
        head_r=head_r,
        desk_y=neck_y + desk_frac * torso,
        skin=(int(skin[0]), int(skin[1]), int(skin[2])),
        shirt=_colour(rng),
        hair=_colour(rng, 0, 120),
        desk=_colour(rng, 60, 230),
        short_sleeves=bool(rng.random() < 0.3),
        rest_dx=(float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.3, 0.5))),
        breath_period=float(rng.uniform(3.0, 5.0) * cfg.fps),
        noise_px=float(rng.uniform(*cfg.noise_px) * s),
        dropout=float(rng.uniform(*cfg.dropout)),
    )


def set_config(class_set: str, **changes: object) -> SynthConfig:
    """The ``SynthConfig`` of a class set: its classes and ``SET_DEFAULTS``, then ``changes`` (a change of
    None keeps the set's value). ``ValueError`` for a bad value, ``KeyError`` for an unknown set."""
    fields = {"classes": CLASS_SETS[class_set], **SET_DEFAULTS[class_set]}
    fields.update({k: v for k, v in changes.items() if v is not None})
    return SynthConfig(**fields)  # type: ignore[arg-type]


def seat_subject(s: Subject, profile: PostureProfile, rng: np.random.Generator, fitted_hands: bool = False) -> Subject:
    """``s`` with the proportions and resting posture of a real person (``model/posture.py``): arm
    and hand lengths, the nose's height above the neck, where the resting wrists and elbows are, and the
    table top just under the resting wrists; the shoulders level with the neck and the ears as high
    as real ones; the head turned aside and moving, the resting hands moving, as much as the
    profile's (``Wander``); the body not centred between the resting elbows (``rest_elbows_x``).
    Lengths in the profile are shoulder widths. The profile's ``rest_hands_x`` is measured, not drawn
    (docs/data.md says why). ``fitted_hands``: also the hand's length and, at rest, the fingers' angle, the
    hand's turn about its own axis (``rest_palm``), how foreshortened it is seen (``rest_hand``,
    ``Foreshortening``) and how far its thumb stands off (``rest_thumb``); drawn either way, so a subject is
    the same person with or without them."""
    sw, t = 2.0 * s.shoulder, s.torso
    upper, fore, nose = (profile.draw(rng, k) * sw for k in ("upper_arm", "forearm", "neck_nose"))
    wx = tuple(profile.draw(rng, "rest_wrist_x") * sw / t for _ in range(2))
    wy = profile.draw(rng, "rest_wrist_y") * sw
    ex, ey = profile.draw(rng, "rest_elbow_x") * sw, profile.draw(rng, "rest_elbow_y") * sw
    drop, rise = profile.draw(rng, "shoulder_drop") * sw, profile.draw(rng, "ear_rise") * sw
    turn = profile.draw(rng, "head_turn") * sw * (1.0 if rng.random() < 0.5 else -1.0)  # either way
    head = Wander.draw(rng, profile.head_motion[0] * sw, profile.head_motion[2] * sw)
    lo, hi = profile.hand_motion[0] * sw, profile.hand_motion[2] * sw
    hands = (Wander.draw(rng, lo, hi), Wander.draw(rng, lo, hi))
    # both elbows moved the same way, each kept inside the real elbows' range (a lean on the table):
    # the further elbow stays where a real one reaches
    lo_x, _, hi_x = profile.rest_elbow_x
    room = max(0.0, 0.5 * (hi_x - lo_x)) * sw
    elbows = float(np.clip(profile.draw(rng, "rest_elbows_x") * sw, -room, room))
    if room > 0:
        ex = lo_x * sw + abs(elbows) + (ex - lo_x * sw) * (1.0 - abs(elbows) / room)
    # drawn last: every earlier draw is what it was before the hand was fitted
    hand, fingers = profile.draw(rng, "hand") * sw, profile.draw(rng, "rest_fingers")
    palm = profile.draw(rng, "rest_palm") * sw  # the signed palm width, as drawn: PALM_SPAN hands at most
    seen = Foreshortening(
        tuple(v * sw / hand for v in profile.rest_hand),  # type: ignore[arg-type]
        float(rng.uniform(*Foreshortening.PERIOD_S)),
        (float(rng.uniform(0.0, 2 * math.pi)), float(rng.uniform(0.0, 2 * math.pi))),
    )
    thumb = profile.draw(rng, "rest_thumb")  # degrees off the hand's line
    across = float(np.clip(palm / (PALM_SPAN * hand), -1.0, 1.0))
    if fitted_hands:  # the thumb's spread that puts it there, at the median foreshortening
        thumb = _thumb_for(thumb, REST_CURL, across, _reach_for(seen.quantiles[1], REST_CURL, across))
    return replace(
        s,
        hand_px=hand if fitted_hands else None,
        rest_fingers=fingers if fitted_hands else None,
        rest_across=across if fitted_hands else 1.0,
        rest_seen=seen if fitted_hands else None,
        rest_thumb=thumb if fitted_hands else 0.0,
        elbows_shift_px=elbows,
        shoulder_drop_px=drop,
        ear_rise_px=rise,
        head_turn_px=turn,
        head_wander=head,
        hand_wander=hands,
        upper_arm_px=upper,
        forearm_px=fore,
        neck_gap=max(0.0, nose - 0.8 * s.head_r),  # the nose sits 0.2 head radii below the head's centre
        rest_y=wy,
        rest_dx=(float(wx[0]), float(wx[1])),
        rest_elbow=((ex - s.shoulder) / t, (ey - drop) / t),
        desk_y=s.neck_y + wy + 0.04 * t,
    )


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A press-conference-like backdrop ``(H, W, 3)`` uint8: gradient plus blurred logo shapes."""
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = np.ascontiguousarray(np.broadcast_to(a * (1 - t) + b * t, (height, width, 3)).astype(np.uint8))
    for _ in range(int(rng.integers(4, 10))):
        c = _colour(rng)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(height // 20, height // 5))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), c, -1)
        else:
            cv2.circle(img, (x, y), r // 2, c, -1)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


# ----------------------------------------------------------------------------------------- motion
def _smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def _envelope(u: float, ramp: Tuple[float, float]) -> float:
    """0 at rest, 1 while the gesture holds: eased reach over ``ramp[0]``, return over ``ramp[1]``."""
    return min(_smooth(u / ramp[0]), _smooth((1.0 - u) / ramp[1]))


def _toward_mid(side: int, elev_deg: float) -> float:
    """Angle (radians, image coordinates, y down) pointing toward the midline, raised by ``elev_deg``."""
    return math.radians(-elev_deg) if side < 0 else math.radians(180.0 + elev_deg)


def _talking(s: "Subject", f: int, fps: float, phase: float) -> np.ndarray:
    """The face of a person talking at frame ``f``: ``(press 0, mouth opening 0..1, nod px)``.

    Syllables at 3-5 Hz grouped into phrases by a slower wave, and small nods with the phrases;
    deterministic in ``f`` and the subject's phase.
    """
    tt = f / fps
    phrase = max(0.0, math.sin(2 * math.pi * 0.35 * tt + phase))
    syllable = 0.5 + 0.5 * math.sin(2 * math.pi * (3.5 + 0.8 * math.sin(phase)) * tt + 2 * phase)
    nod = 0.08 * s.head_r * phrase * math.sin(2 * math.pi * 1.3 * tt + phase)
    return np.array([0.0, phrase * syllable, nod])


class HandPose(NamedTuple):
    """Where a hand is and how it is held."""

    anchor: np.ndarray  # (x, y) on the fingers, ``FINGERS_AT`` along the hand from the wrist
    phi: float  # the fingers' direction (radians, image coordinates, y down)
    curl: float  # 0 open .. 1 a fist
    elbow: Tuple[float, float]  # the preferred elbow: (outward, down) from the shoulder, torso units
    # the hand turned about its own axis, as the cosine of the turn: 1 shows the palm (the thumb toward the
    # midline when the fingers point up), -1 the back (the thumb on the other side), 0 edge on
    across: float = 1.0
    # the hand foreshortened: the share of its length seen along its direction (1: square to the camera; a
    # hand lying on the table and pointing partly at the camera is seen shorter)
    reach: float = 1.0
    thumb: float = 0.0  # degrees added to the thumb's spread from the fingers (negative: along the hand)


RAISED = (0.2, 0.3)  # elbow preference when a hand goes up to the head


FINGERS_AT = 0.75  # a HandPose's anchor: this far along the hand from the wrist (hand lengths)
PALM_AT = 0.3  # the palm's centre (the middle of its points 0, 1, 5, 9, 13, 17), the same way


def _palm_on(point: np.ndarray, phi: float, hand: float) -> np.ndarray:
    """The anchor of a hand pointing along ``phi`` (radians) whose palm's centre is on ``point``: for the
    scripts whose contact is the palm (palms over the face), not the fingers."""
    return point + (FINGERS_AT - PALM_AT) * hand * np.array([math.cos(phi), math.sin(phi)])


def _arm(
    shoulder: np.ndarray, wrist: np.ndarray, elbow: np.ndarray, a: float, b: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Elbow and (reach-clamped) wrist of a 2D arm projection: the preferred elbow moved until the
    upper arm is at most ``a`` and the forearm at most ``b`` long (shorter = foreshortened).

    Alternating projections onto the two discs are continuous in their inputs, so motion is smooth.
    """
    sx, sy = float(shoulder[0]), float(shoulder[1])
    wx, wy = float(wrist[0]), float(wrist[1])
    ex, ey = float(elbow[0]), float(elbow[1])
    for _ in range(4):
        n = math.hypot(ex - sx, ey - sy)
        if n > a:
            ex, ey = sx + (ex - sx) * a / n, sy + (ey - sy) * a / n
        n = math.hypot(ex - wx, ey - wy)
        if n > b:
            ex, ey = wx + (ex - wx) * b / n, wy + (ey - wy) * b / n
    n = math.hypot(ex - sx, ey - sy)
    if n > a:  # out of reach: keep the upper arm, bring the wrist in along the forearm
        ex, ey = sx + (ex - sx) * a / n, sy + (ey - sy) * a / n
        f = max(math.hypot(wx - ex, wy - ey), b)
        wx, wy = ex + (wx - ex) * b / f, ey + (wy - ey) * b / f
    return np.array([ex, ey]), np.array([wx, wy])


# index, middle, ring, pinky: MCP offset across the palm (palm widths), length (hand lengths), spread (deg)
_FINGERS = ((0.45, 0.5, 8.0), (0.15, 0.55, 2.0), (-0.15, 0.5, -4.0), (-0.42, 0.4, -10.0))
_PALM_WIDTH = 0.5  # the palm's width (hand lengths)
PALM_SPAN = (_FINGERS[0][0] - _FINGERS[-1][0]) * _PALM_WIDTH  # index to little knuckle (hand lengths)
_JOINT_AT = (0.0, 0.45, 0.75, 1.0)  # MCP, PIP, DIP, tip along a finger
_THUMB_AT = (0.0, 0.35, 0.68, 1.0)  # CMC, MCP, IP, tip along the thumb
_FINGER_CHAINS = ([0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20])


def _hand_points(
    wrist: np.ndarray,
    phi: float,
    curl: float,
    length: float,
    side: int,
    across: float = 1.0,
    reach: float = 1.0,
    thumb: float = 0.0,
) -> np.ndarray:
    """OpenPose hand ``(21, 2)``: wrist 0, thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20.
    ``across``: the hand turned about its own axis (``HandPose.across``): everything across it scales;
    ``reach``: the hand foreshortened (``HandPose.reach``): everything along it scales; ``thumb``:
    degrees added to the thumb's spread (``HandPose.thumb``).

    Plain floats, not small numpy arrays: this runs twice a frame and numpy's per-call cost dominates.
    """
    dx, dy = math.cos(phi), math.sin(phi)
    # across the palm, toward the thumb (the midline when fingers point up and the palm shows)
    nx, ny = dy * side * across, -dx * side * across
    dx, dy = dx * reach, dy * reach  # along the fingers
    palm, width = 0.45 * length, _PALM_WIDTH * length
    wx, wy = float(wrist[0]), float(wrist[1])
    pts = [(wx, wy)]
    a = math.radians(55 - 25 * curl + thumb)
    tx, ty = math.cos(a) * dx + math.sin(a) * nx, math.cos(a) * dy + math.sin(a) * ny
    cx, cy = wx + 0.15 * palm * dx + 0.35 * width * nx, wy + 0.15 * palm * dy + 0.35 * width * ny
    seg = 0.45 * length * (1 - 0.3 * curl)
    pts += [(cx + f * seg * tx, cy + f * seg * ty) for f in _THUMB_AT]
    for off, lf, spread in _FINGERS:
        mx, my = wx + palm * dx + off * width * nx, wy + palm * dy + off * width * ny
        a = math.radians(spread * (1 - curl))
        fx, fy = math.cos(a) * dx + math.sin(a) * nx, math.cos(a) * dy + math.sin(a) * ny
        seg = length * lf * (1 - 0.6 * curl)  # curling shortens the projected finger
        pts += [(mx + f * seg * fx, my + f * seg * fy) for f in _JOINT_AT]
    return np.array(pts)


REST_CURL = 0.35  # a resting hand's curl


def _tips_below_direction(curl: float, across: float = 1.0, reach: float = 1.0, thumb: float = 0.0) -> float:
    """Degrees by which a drawn hand's fingertips' centroid (points 4, 8, 12, 16, 20) seen from its wrist
    lies below the hand's direction, pointing toward the midline (the side a showing palm's thumb is on:
    the same for both hands; turned over, ``across`` < 0, it lies above)."""
    h = _hand_points(np.zeros(2), _toward_mid(-1, 0.0), curl, 1.0, -1, across, reach, thumb)
    c = h[list(HAND_FINGERTIPS)].mean(axis=0)
    return math.degrees(math.atan2(float(c[1]), float(c[0])))


def _thumb_off_line(curl: float, across: float, reach: float, thumb: float) -> float:
    """Degrees by which a drawn thumb tip (point 4) seen from the wrist lies off the line to the middle
    knuckle (9), toward the thumb's own side: ``posture.thumb_angle``, as real hands are read, with the
    turn's sign taken out (a turned-over hand's thumb is on the other side)."""
    h = _hand_points(np.zeros(2), 0.0, curl, 1.0, -1, across, reach, thumb)
    angle = float(thumb_angle(np.concatenate([h, np.ones((21, 1))], axis=1)[None], -1)[0])
    return angle if across >= 0 else -angle


def _thumb_for(angle: float, curl: float, across: float, reach: float) -> float:
    """The ``thumb`` (degrees added to the spread) that puts a drawn thumb tip ``angle`` degrees off the
    hand's line (``_thumb_off_line``), by bisection: the spread only narrows, down to along the hand."""
    lo, hi = -(55.0 - 25.0 * curl) - 30.0, 0.0
    if _thumb_off_line(curl, across, reach, hi) <= angle:
        return hi
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _thumb_off_line(curl, across, reach, mid) > angle:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def _reach_for(seen: float, curl: float, across: float) -> float:
    """The ``reach`` at which a hand of length 1, curled and turned so, is seen ``seen`` long from the wrist
    to the middle fingertip (at most 1: a hand is not seen longer than it is drawn square to the camera)."""
    h = _hand_points(np.zeros(2), 0.0, curl, 1.0, -1, across)
    along, off = float(h[12, 0]), float(h[12, 1])  # the fingertip along and across the hand
    return float(min(1.0, math.sqrt(max(seen * seen - off * off, 0.0)) / along))


_MOUTH = slice(48, 68)  # the mouth's outer (48-59) and inner (60-67) points in the face template
_MOUTH_Y = 0.55  # the mouth's centre line (head units)


def _face(face: np.ndarray | None) -> np.ndarray:
    """The face template ``(70, 2)`` with the mouth pressed (``face[0]`` 0..1: lips drawn in, as
    biting them) and opened (``face[1]`` 0..1: talking); ``None``: the template itself."""
    if face is None:
        return _FACE_TEMPLATE
    press, opened = float(face[0]), float(face[1])
    t = _FACE_TEMPLATE.copy()
    m = t[_MOUTH]
    m[:, 1] = _MOUTH_Y + (m[:, 1] - _MOUTH_Y) * (1.0 - 0.7 * press) * (1.0 + 1.5 * opened)
    m[:, 0] *= 1.0 - 0.2 * press
    t[_MOUTH] = m
    return t


class Body:
    """Geometry of one subject: landmark positions and full keypoints for a pose state."""

    def __init__(self, subj: Subject) -> None:
        self.s = subj

    def joints(self, sway: np.ndarray, shrug: Tuple[float, float]) -> Dict[str, np.ndarray]:
        s = self.s
        neck = np.array([s.cx, s.neck_y]) + sway
        gap = 0.19 * s.torso if s.neck_gap is None else s.neck_gap
        head = neck + np.array([0.0, -gap - s.head_r])
        drop = 0.06 * s.torso if s.shoulder_drop_px is None else s.shoulder_drop_px
        return {
            "neck": neck,
            "head": head,
            "sh-1": neck + np.array([-s.shoulder, drop + shrug[0]]),
            "sh1": neck + np.array([s.shoulder, drop + shrug[1]]),
        }

    def rest_pose(self, side: int, t: int, phase: float, fps: float) -> HandPose:
        s = self.s
        dx = s.rest_dx[0 if side < 0 else 1] * s.torso
        if s.hand_wander is None:
            drift = 0.03 * s.torso * np.array([math.sin(t / 37.0 + phase), math.sin(t / 23.0 + 2 * phase)])
        else:
            drift = s.hand_wander[0 if side < 0 else 1].offset(t, fps)
        if s.rest_y is None or s.rest_elbow is None:  # set v1: fingers on the desk's edge, elbows down
            return HandPose(
                np.array([s.cx + side * dx, s.desk_y + 0.02 * s.torso]) + drift,
                _toward_mid(side, -15.0),
                REST_CURL,
                (0.12, 0.5),
            )
        # a posture profile's: the wrist where real resting wrists are, the fingers on toward the midline,
        # pointing as far down as real resting fingertips do (set v1's 15-degree drop without a fitted angle),
        # the hand turned about its axis as far as real resting ones are
        reach = 1.0 if s.rest_seen is None else _reach_for(s.rest_seen.seen(side, t, fps), REST_CURL, s.rest_across)
        if s.rest_fingers is None:
            elev = -15.0
        else:
            elev = _tips_below_direction(REST_CURL, s.rest_across, reach, s.rest_thumb) - s.rest_fingers
        phi = _toward_mid(side, elev)
        wrist = np.array([s.cx + side * dx, s.neck_y + s.rest_y])
        out, down = s.rest_elbow
        if s.elbows_shift_px is not None:  # both elbows moved the same way: the body not centred between them
            out += side * s.elbows_shift_px / s.torso
        return HandPose(
            wrist + FINGERS_AT * s.hand * reach * np.array([math.cos(phi), math.sin(phi)]) + drift,
            phi,
            REST_CURL,
            (out, down),
            s.rest_across,
            reach,
            s.rest_thumb,
        )

    def keypoints(
        self, j: Dict[str, np.ndarray], hands: Dict[int, HandPose]
    ) -> Tuple[np.ndarray, Dict[int, np.ndarray]]:
        """Exact ``(137, 3)`` keypoints and per-side elbow+wrist arrays for drawing."""
        s = self.s
        kp = np.zeros((137, 3))
        head, r = j["head"], s.head_r
        if "face" in j:  # a nod moves the whole head
            head = head + np.array([0.0, float(j["face"][2])])
        body = {
            1: j["neck"],
            0: head + np.array([0.0, 0.2 * r]),
            15: head + np.array([-0.38 * r, -0.2 * r]),
            16: head + np.array([0.38 * r, -0.2 * r]),
            17: head + np.array([-r, -0.05 * r]),
            18: head + np.array([r, -0.05 * r]),
        }
        if s.ear_rise_px is not None:  # a posture profile's: the ears this far above the eyes
            for i in (17, 18):
                body[i] = np.array([body[i][0], head[1] - 0.2 * r - s.ear_rise_px])
        arms: Dict[int, np.ndarray] = {}
        for side, (si, ei, wi, hoff) in ((-1, (2, 3, 4, 116)), (1, (5, 6, 7, 95))):
            sh = j[f"sh{side}"]
            anchor, phi, curl, (out, down), across, reach, thumb = hands[side]
            d = reach * np.array([math.cos(phi), math.sin(phi)])
            wrist = anchor - FINGERS_AT * s.hand * d
            pref = sh + s.torso * np.array([side * out, down])
            elbow, wrist = _arm(sh, wrist, pref, s.upper_arm, s.forearm)
            body.update({si: sh, ei: elbow, wi: wrist})
            hand = _hand_points(wrist, phi, curl, s.hand, side, across, reach, thumb)
            kp[hoff : hoff + 21, :2], kp[hoff : hoff + 21, 2] = hand, 1.0
            arms[side] = np.stack([sh, elbow, wrist])
        for i, p in body.items():
            kp[i] = (p[0], p[1], 1.0)
        kp[25:95, :2] = head + _face(j.get("face")) * r
        kp[25:95, 2] = 1.0
        if s.head_turn_px is not None:  # the face turned aside: its features move, the ears stay
            for i in (0, 15, 16):
                kp[i, 0] += s.head_turn_px
            kp[25:95, 0] += s.head_turn_px
        return kp, arms


def _move_head(j: Dict[str, np.ndarray], s: "Subject", f: int, fps: float) -> Dict[str, np.ndarray]:
    """``j`` with the head moved by the subject's ``head_wander`` (none for set v1's body)."""
    if s.head_wander is not None:
        j["head"] = j["head"] + s.head_wander.offset(f, fps)
    return j


def episode_pose(
    body: Body, ep: Episode | None, f: int, fps: float, phase: float
) -> Tuple[Dict[str, np.ndarray], Dict[int, HandPose]]:
    """Joint anchors and hand poses of frame ``f`` under episode ``ep`` (None or idle = rest)."""
    s = body.s
    breath = 0.012 * s.torso * math.sin(2 * math.pi * f / s.breath_period + phase)
    sway = np.array([0.01 * s.torso * math.sin(f / 41.0 + phase), breath])
    rest = {side: body.rest_pose(side, f, phase + side, fps) for side in (-1, 1)}
    if ep is None or ep.cls is None or ep.cls == "no gesture":
        j = _move_head(body.joints(sway, (0.0, 0.0)), s, f, fps)
        if ep is not None and ep.talking:
            j["face"] = _talking(s, f, fps, phase)
        return j, rest
    first = ep.start - ep.lead  # the movement's first frame (the label's, unless it straddles)
    u = (f - first) / max(1, ep.end + ep.tail - first)
    e = _envelope(u, ep.ramp)
    w = 2 * math.pi * ep.freq / fps * (f - first) + ep.phase
    osc = ep.amp * s.torso * math.sin(w)
    shrug = (0.0, 0.0)
    lean_sin = 0.0  # a lean of the whole upper body, pivoting at the hips (move torso, scripts v2)
    if ep.cls == "shake shoulder":
        shrug = (-e * abs(osc), -e * abs(ep.amp * s.torso * math.sin(w + ep.jitter[0] * 3)))
    elif ep.cls == "deep breath":  # one slow breath: the chest and shoulders rise and fall
        lift = (0.05 + 0.02 * ep.jitter[1]) * s.torso * math.sin(math.pi * min(max(u, 0.0), 1.0))
        sway = sway + np.array([0.0, -0.6 * lift])
        shrug = (-lift, -lift)
    elif ep.cls == "sit straight":  # the torso rises and the shoulders square, held
        sway = sway + np.array([0.0, -(0.12 + 0.03 * ep.jitter[1]) * s.torso * e])
        shrug = (-0.02 * s.torso * e, -0.02 * s.torso * e)
    elif ep.cls == "move torso" and ep.scripts == "v2":  # the upper body leans to one side and back
        lean = e * (0.17 + 0.05 * ep.jitter[0])  # held at 7-13 degrees
        lean_sin = ep.side * lean
        drop = (1.0 - math.sqrt(1.0 - lean * lean)) * s.torso
        sway = sway + np.array([lean_sin * s.torso + e * osc, drop + 0.02 * s.torso * e * (1 + ep.jitter[1])])
        shrug = (-lean_sin * s.shoulder, lean_sin * s.shoulder)  # the shoulder line turns with the torso
    elif ep.cls == "move torso":  # the upper body shifts and leans to one side and back
        sway = sway + e * np.array([ep.side * 0.1 * s.torso + osc, 0.03 * s.torso * (1 + ep.jitter[1])])
    j = _move_head(body.joints(sway, shrug), s, f, fps)
    if lean_sin:  # the head stays on the leaning spine's line
        j["head"] = j["head"] + np.array([lean_sin * (j["neck"][1] - j["head"][1]), 0.0])
    if ep.talking and ep.cls != "bite lip":  # biting the lips holds the mouth still
        j["face"] = _talking(s, f, fps, phase)
    head, r, t = j["head"], s.head_r, s.torso
    jx, jy = ep.jitter
    targets: Dict[int, HandPose] = {}
    sd = ep.side
    if ep.cls == "touch chin":
        targets[sd] = HandPose(
            head + np.array([0.2 * jx * r, (1.05 + 0.1 * jy) * r]), math.radians(-90 - sd * 20), 0.5, RAISED
        )
    elif ep.cls == "touch forehead":
        targets[sd] = HandPose(
            head + np.array([0.3 * jx * r, (-0.6 + 0.1 * jy) * r]), math.radians(-90 - sd * 65), 0.2, RAISED
        )
    elif ep.cls == "touch ears":
        targets[sd] = HandPose(
            head + np.array([sd * 1.1 * r, (0.1 * jy) * r]), math.radians(-90 + sd * 10), 0.3, (0.3, 0.25)
        )
    elif ep.cls == "touch face" and ep.scripts == "v2":  # fingers laid on the cheek below the eye, still
        # (the fingers, not the palm: a palm there puts the wrist where rub eyes' is, set v1's look-alike)
        a = head + np.array([sd * (0.6 + 0.1 * jx) * r, (0.35 + 0.1 * jy) * r])
        targets[sd] = HandPose(a, math.radians(-90 - sd * 15), 0.25, RAISED)
    elif ep.cls in ("touch face", "rub eyes"):
        a = head + np.array([sd * (0.4 + 0.1 * jx) * r, (-0.1 + 0.1 * jy) * r])
        if ep.cls == "rub eyes":
            a = a + e * np.array([osc, 0.4 * ep.amp * t * math.cos(w)])
        targets[sd] = HandPose(a, math.radians(-90 - sd * 25), 0.6, RAISED)
    elif ep.cls == "cover face" and ep.scripts == "v2" and s.hand_px is not None:
        # fitted hands: the palms over the face, fingers up to the brow (set v1's hand: the fingers there)
        for side in (-1, 1):
            phi = math.radians(-90 - side * 15)
            a = head + np.array([side * 0.35 * r, (0.05 + 0.1 * jy) * r])
            targets[side] = HandPose(_palm_on(a, phi, s.hand), phi, 0.1, RAISED)
    elif ep.cls == "cover face":
        for side in (-1, 1):
            targets[side] = HandPose(
                head + np.array([side * 0.35 * r, (0.05 + 0.1 * jy) * r]),
                math.radians(-90 - side * 15),
                0.1,
                RAISED,
            )
    elif ep.cls == "fold arm":
        for side, dy in ((-1, 0.55), (1, 0.45)):
            anchor = j["neck"] + np.array([-side * (s.shoulder - 0.05 * t), (dy + 0.05 * jy) * t])
            targets[side] = HandPose(anchor, _toward_mid(side, 20.0), 0.4, (0.1, 0.45))
    elif ep.cls == "arm akimbo":
        for side in (-1, 1):
            anchor = j["neck"] + np.array([side * (s.shoulder + 0.05 * t), (0.72 + 0.05 * jy) * t])
            targets[side] = HandPose(anchor, math.radians(90 + side * 40), 0.2, (0.45, 0.3))
    elif ep.cls == "rub hand":
        for side in (-1, 1):
            anchor = j["neck"] + np.array([side * 0.08 * t, (0.62 + 0.05 * jy) * t - side * e * osc])
            targets[side] = HandPose(anchor, _toward_mid(side, 30.0), 0.3, (0.1, 0.45))
    elif ep.cls == "scratch arm":
        other = -sd
        passive = j["neck"] + np.array([other * 0.25 * t, 0.72 * t])
        targets[other] = HandPose(passive, _toward_mid(other, -5.0), 0.3, (0.1, 0.45))
        # the passive forearm, posed without scratching, is where the active hand goes
        _, arms = body.keypoints(j, {**rest, other: _blend(rest[other], targets[other], e)})
        fore = arms[other][2] - arms[other][1]
        along = fore / (float(np.hypot(*fore)) or 1.0)
        targets[sd] = HandPose(
            arms[other][1] + 0.5 * fore + osc * e * along, math.radians(90 + sd * 30), 0.6, (0.15, 0.45)
        )
    elif ep.cls == "touch chest" and ep.scripts == "v2":  # the palm laid flat on the breastbone, still
        anchor = j["neck"] + np.array([(sd * 0.04 + 0.05 * jx) * t, (0.4 + 0.05 * jy) * t])
        targets[sd] = HandPose(anchor, _toward_mid(sd, 60.0), 0.1, (0.15, 0.4))
    elif ep.cls == "adjust tie" and ep.scripts == "v2":  # fingers pinch the knot at the collar and tug it
        anchor = j["neck"] + np.array([(0.02 * jx) * t + 0.5 * e * osc, (0.14 + 0.03 * jy) * t])
        targets[sd] = HandPose(anchor, _toward_mid(sd, 80.0), 0.6, (0.15, 0.4))
    elif ep.cls in ("touch chest", "adjust tie"):
        anchor = j["neck"] + np.array([(sd * 0.04 + 0.05 * jx) * t, (0.3 + 0.05 * jy) * t + 0.5 * e * osc])
        targets[sd] = HandPose(anchor, _toward_mid(sd, 70.0), 0.4, (0.15, 0.4))
    elif ep.cls == "minaret hand" and ep.scripts == "v2":  # fingertips steepled in front of the chest, tapping
        for side in (-1, 1):
            anchor = j["neck"] + np.array([side * 0.03 * t, (0.42 + 0.05 * jy) * t + 0.3 * e * osc])
            targets[side] = HandPose(anchor, _toward_mid(side, 70.0), 0.1, (0.12, 0.45))
    elif ep.cls in ("minaret hand", "play things"):
        for side in (-1, 1):
            anchor = np.array([s.cx + side * 0.06 * t, s.desk_y - (0.25 + 0.05 * jy) * t + 0.3 * osc])
            targets[side] = HandPose(anchor, _toward_mid(side, 60.0), 0.1 + 0.1 * (1 + math.sin(w)) * e, (0.12, 0.45))
    elif ep.cls == "touch other face part":  # nose, lips, cheek below the eye: the face's lower middle
        targets[sd] = HandPose(
            head + np.array([sd * (0.12 + 0.1 * jx) * r, (0.45 + 0.1 * jy) * r]), -math.pi / 2, 0.55, RAISED
        )
    elif ep.cls == "touch neck":  # a hand on the side or front of the neck, below the jaw
        anchor = j["neck"] + np.array([sd * (0.06 + 0.03 * jx) * t, (-0.1 + 0.03 * jy) * t])
        targets[sd] = HandPose(anchor, _toward_mid(sd, 75.0), 0.3, (0.2, 0.4))
    elif ep.cls == "cross finger":  # both hands together at the midline, fingers interlaced
        for side in (-1, 1):
            anchor = np.array([s.cx - side * 0.04 * t, s.desk_y - (0.18 + 0.05 * jy) * t])
            targets[side] = HandPose(anchor, _toward_mid(side, 10.0), 0.55, (0.12, 0.45))
    elif ep.cls == "illustrative":  # talking with the hands: beats in front of the torso, one or both
        for side in (-1, 1) if jx > 0 else (sd,):
            beat = np.array([0.6 * osc * side, osc * math.cos(0.7 * w + side)])
            anchor = j["neck"] + np.array([side * (0.28 + 0.05 * jy) * t, 0.62 * t]) + beat
            targets[side] = HandPose(anchor, math.radians(-90 - side * 50), 0.25, (0.25, 0.45))
    elif ep.cls == "bite lip":  # the lips drawn in and held, a little chewing; the hands stay down
        j["face"] = np.array([e * (0.75 + 0.25 * abs(math.sin(w))), 0.0, 0.0])
    elif ep.cls not in ("shake shoulder", "deep breath", "sit straight", "move torso"):
        # shake shoulder and deep breath move the shoulders only, sit straight and move torso the torso (above)
        raise ValueError(f"no motion script for class {ep.cls!r}")
    hands = {side: _blend(rest[side], targets[side], e) if side in targets else rest[side] for side in (-1, 1)}
    return j, hands


def _blend(a: HandPose, b: HandPose, e: float) -> HandPose:
    """Hand pose ``e`` of the way from ``a`` to ``b`` (direction along the shorter arc)."""
    dphi = (b.phi - a.phi + math.pi) % (2 * math.pi) - math.pi
    elbow = (a.elbow[0] + e * (b.elbow[0] - a.elbow[0]), a.elbow[1] + e * (b.elbow[1] - a.elbow[1]))
    return HandPose(
        a.anchor + e * (b.anchor - a.anchor),
        a.phi + e * dphi,
        a.curl + e * (b.curl - a.curl),
        elbow,
        a.across + e * (b.across - a.across),
        a.reach + e * (b.reach - a.reach),
        a.thumb + e * (b.thumb - a.thumb),
    )


# ---------------------------------------------------------------------------------------- drawing
def _pt(p: np.ndarray) -> Tuple[int, int]:
    """A point for OpenCV's sub-pixel drawing (``shift=4``: 4 fractional bits)."""
    return int(math.floor(p[0] * 16.0 + 0.5)), int(math.floor(p[1] * 16.0 + 0.5))


def draw_frame(
    background: np.ndarray, subj: Subject, kp: np.ndarray, arms: Dict[int, np.ndarray], ep: Episode | None
) -> np.ndarray:
    """Render one RGB frame ``(H, W, 3)`` uint8 of the subject in pose ``kp`` ``(137, 3)``."""
    img = background.copy()
    s, t, sh = subj, subj.torso, 4  # sub-pixel drawing with 4 fractional bits
    aa = cv2.LINE_AA
    turn = 0.0 if s.head_turn_px is None else s.head_turn_px  # the head's centre is not turned
    neck, head, r = kp[1, :2], kp[0, :2] - np.array([turn, 0.2 * s.head_r]), s.head_r
    hip_y = neck[1] + t
    torso_poly = np.array([kp[2, :2], kp[5, :2], [s.cx + 0.8 * s.shoulder, hip_y], [s.cx - 0.8 * s.shoulder, hip_y]])
    cv2.fillConvexPoly(img, np.round(torso_poly * 16).astype(np.int32), s.shirt, aa, sh)
    if ep is not None and ep.obj is not None and ep.obj_kind == 2:  # a tie, worn over the shirt
        tie = neck + t * np.array([[-0.04, 0.06], [0.04, 0.06], [0.07, 0.55], [0.0, 0.62], [-0.07, 0.55]])
        cv2.fillConvexPoly(img, np.round(tie * 16).astype(np.int32), ep.obj, aa, sh)
    cv2.line(img, _pt(neck), _pt(head), s.skin, max(2, int(0.3 * r * 2)), aa, sh)
    ellipses = [((side * r, 0.0), (0.25 * r, 0.35 * r), s.skin) for side in (-1, 1)]  # ears
    ellipses += [((0.0, -0.12 * r), (1.02 * r, r), s.hair), ((0.0, 0.12 * r), (0.9 * r, 0.95 * r), s.skin)]
    for centre, axes, colour in ellipses:
        cv2.ellipse(img, _pt(head + np.array(centre)), _pt(np.array(axes)), 0, 0, 360, colour, -1, aa, sh)
    for p in (kp[25 + 68, :2], kp[25 + 69, :2]):
        cv2.circle(img, _pt(p), max(16, int(0.12 * r * 16)), (30, 30, 30), -1, aa, sh)
    if ep is not None and (ep.talking or ep.cls == "bite lip"):  # set v2: the mouth as drawn by its points
        cv2.fillConvexPoly(img, np.round(kp[25 + 48 : 25 + 60, :2] * 16).astype(np.int32), (110, 40, 40), aa, sh)
        if ep.cls == "bite lip":  # the lower lip drawn in under the teeth: a pale band
            cv2.line(img, _pt(kp[25 + 48, :2]), _pt(kp[25 + 54, :2]), (235, 225, 215), 1, aa, sh)
    else:
        cv2.line(img, _pt(kp[25 + 48, :2]), _pt(kp[25 + 54, :2]), (150, 60, 60), 1, aa, sh)
    cv2.rectangle(img, (0, int(s.desk_y)), (img.shape[1], img.shape[0]), s.desk, -1)
    fore = s.skin if s.short_sleeves else s.shirt
    for side in (-1, 1):
        a = arms[side]
        cv2.line(img, _pt(a[0]), _pt(a[1]), s.shirt, max(2, int(round(0.2 * t))), aa, sh)
        cv2.line(img, _pt(a[1]), _pt(a[2]), fore, max(2, int(round(0.15 * t))), aa, sh)
        cv2.circle(img, _pt(a[1]), max(16, int(0.08 * t * 16)), s.shirt, -1, aa, sh)
    finger = max(1, int(round(0.12 * s.hand)))
    for off in (116, 95):
        h = kp[off : off + 21, :2]
        palm = cv2.convexHull(np.round(h[[0, 1, 5, 9, 13, 17]] * 16).astype(np.int32))
        cv2.fillConvexPoly(img, palm, s.skin, aa, sh)
        h16 = np.floor(h * 16 + 0.5).astype(np.int32)
        cv2.polylines(img, [h16[_FINGER_CHAINS[k]] for k in range(5)], False, s.skin, finger, aa, sh)
    if ep is not None and ep.obj is not None and ep.obj_kind < 2:  # a held pen or phone
        centre = 0.5 * (kp[116 + 9, :2] + kp[95 + 9, :2]) + np.array([0.0, 0.15 * s.hand])
        d = np.array([math.cos(ep.obj_angle), math.sin(ep.obj_angle)])
        if ep.obj_kind == 0:  # a pen
            cv2.line(
                img,
                _pt(centre - 0.7 * s.hand * d),
                _pt(centre + 0.7 * s.hand * d),
                ep.obj,
                max(2, int(round(0.1 * s.hand))),
                aa,
                sh,
            )
        else:  # a phone
            n = np.array([-d[1], d[0]])
            corners = ((-1, -1), (1, -1), (1, 1), (-1, 1))
            quad = np.array([centre + a * 0.45 * s.hand * d + b * 0.3 * s.hand * n for a, b in corners])
            cv2.fillConvexPoly(img, np.round(quad * 16).astype(np.int32), ep.obj, aa, sh)
    return img


# ------------------------------------------------------------------------------------- observing
class Observer:
    """OpenPose-like observations of exact keypoints: noise, per-point misses, hand dropout bursts,
    rare frames with no person. Stateful (bursts span frames); deterministic for its generator."""

    def __init__(self, rng: np.random.Generator, noise_px: float, dropout: float) -> None:
        self.rng, self.noise, self.dropout = rng, noise_px, dropout
        self.burst = [0, 0]  # frames left of a missed right / left hand

    def __call__(self, kp: np.ndarray) -> np.ndarray | None:
        rng = self.rng
        if rng.random() < 0.002:
            return None  # OpenPose found nobody
        out = kp.copy()
        n = len(out)
        out[:, :2] += rng.normal(0.0, self.noise, (n, 2))
        conf = np.concatenate([rng.uniform(0.55, 0.95, 25), rng.uniform(0.3, 0.9, 70), rng.uniform(0.3, 0.9, 42)])
        out[:, 2] = np.where(kp[:, 2] > 0, conf, 0.0)
        out[rng.random(n) < self.dropout] = 0.0
        for k, off in enumerate((116, 95)):
            if self.burst[k] == 0 and rng.random() < 0.01:
                self.burst[k] = int(rng.integers(2, 7))
            if self.burst[k]:
                out[off : off + 21] = 0.0
                self.burst[k] -= 1
        out[out[:, 2] == 0] = 0.0
        return out.astype(np.float32)


def openpose_json(observed: np.ndarray | None) -> str:
    """OpenPose 1.3 ``--write_json`` text for one frame (``None`` = no person)."""
    people = []
    if observed is not None:
        a = observed.astype(np.float64)
        a[:, :2] = np.round(a[:, :2], 3)  # OpenPose prints pixels with 3 decimals, scores with 6
        a[:, 2] = np.round(a[:, 2], 6)
        a[a[:, 2] == 0] = 0.0

        def flat(part: np.ndarray) -> List[float]:
            return [0 if v == 0 else v for v in part.reshape(-1).tolist()]

        people.append(
            {
                "person_id": [-1],
                "pose_keypoints_2d": flat(a[0:25]),
                "face_keypoints_2d": flat(a[25:95]),
                "hand_left_keypoints_2d": flat(a[95:116]),
                "hand_right_keypoints_2d": flat(a[116:137]),
                "pose_keypoints_3d": [],
                "face_keypoints_3d": [],
                "hand_left_keypoints_3d": [],
                "hand_right_keypoints_3d": [],
            }
        )
    return json.dumps({"version": 1.3, "people": people}, separators=(",", ":"))


# ------------------------------------------------------------------------------------- planning
def make_episode(rng: np.random.Generator, cls: str | None, start: int, length: int) -> Episode:
    """Random timing, amplitude, speed and side of one gesture (or idle span) ``[start, start+length-1]``."""
    end = start + length - 1
    if cls is None:
        return Episode(start, end, None)
    freq, amp = _OSCILLATION.get(cls, ((0.0, 0.0), (0.0, 0.0)))
    # every draw is made whatever the class, so two classes from equal generators move identically
    side, a, f, phase = int(rng.choice([-1, 1])), rng.uniform(*amp), rng.uniform(*freq), rng.uniform(0, 2 * math.pi)
    ramp, jitter = rng.uniform(0.2, 0.35, 2), rng.uniform(-1, 1, 2)
    colour, kind, angle = OBJECT_COLOURS[int(rng.integers(len(OBJECT_COLOURS)))], rng.random(), rng.uniform(-0.5, 0.5)
    kinds = _OBJECT_KIND.get(cls)
    return Episode(
        start,
        end,
        cls,
        side=side,
        amp=float(a),
        freq=float(f),
        phase=float(phase),
        ramp=(float(ramp[0]), float(ramp[1])),
        jitter=(float(jitter[0]), float(jitter[1])),
        obj=colour if kinds else None,
        obj_kind=kinds[int(kind * len(kinds))] if kinds else 0,
        obj_angle=float(angle),
    )


def _as_configured(ep: Episode, cfg: SynthConfig) -> Episode:
    return replace(ep, talking=cfg.talking or ep.talking, scripts=cfg.scripts)


def _moves(ep: Episode) -> bool:
    return ep.cls is not None and ep.cls != "no gesture"


def straddle(episodes: Sequence[Episode]) -> List[Episode]:
    """Consecutive ``episodes`` with each gesture's movement moved out across its label's ends (timing
    "straddle"): the reach begins ``lead`` frames before the label so that its midpoint falls on the
    label's first frame, the return ends ``tail`` frames after it with its midpoint on the last; the
    reach and return keep their length in frames (``ramp`` of the label) and ``ramp`` becomes their
    share of the longer movement. A gap shared by a return and the next reach is split between them
    in proportion (a gesture with no gap beside it, or a ``no gesture`` clip, keeps its ends). Takes
    the episodes as planned (``lead`` and ``tail`` 0), so a window of them gives the same answer
    wherever it is cut, as long as it holds each gesture's neighbours."""

    def half(ep: Episode, k: int) -> int:  # half the reach's (k = 0) or return's (1) frames
        return int(round(ep.ramp[k] * (ep.end - ep.start) / 2)) if _moves(ep) else 0

    lead, tail = [half(ep, 0) for ep in episodes], [half(ep, 1) for ep in episodes]
    for i, ep in enumerate(episodes):
        if ep.cls is not None:
            continue
        room = ep.end - ep.start + 1
        before = tail[i - 1] if i > 0 and episodes[i - 1].cls is not None else 0
        after = lead[i + 1] if i + 1 < len(episodes) and episodes[i + 1].cls is not None else 0
        if before + after > room:
            if i > 0:
                tail[i - 1] = before * room // (before + after)
            if i + 1 < len(episodes):
                lead[i + 1] = after * room // (before + after)
    out = []
    for i, ep in enumerate(episodes):
        gap_before = i > 0 and episodes[i - 1].cls is None
        gap_after = i + 1 < len(episodes) and episodes[i + 1].cls is None
        lo, hi = (lead[i] if gap_before else 0), (tail[i] if gap_after else 0)
        if not _moves(ep) or lo + hi == 0:
            out.append(ep)
            continue
        span = ep.end - ep.start
        whole = max(1, span + lo + hi)
        ramp = (ep.ramp[0] * span / whole, ep.ramp[1] * span / whole)
        out.append(replace(ep, lead=lo, tail=hi, ramp=ramp))
    return out


def motion_episode(episodes: Sequence[Episode], i: int, f: int) -> Episode:
    """The episode that moves the person in frame ``f`` of ``episodes[i]``: its own, or in a gap the
    neighbouring gesture whose reach or return reaches into it (timing "straddle")."""
    ep = episodes[i]
    if ep.cls is None:
        if i > 0 and f <= episodes[i - 1].end + episodes[i - 1].tail:
            return episodes[i - 1]
        if i + 1 < len(episodes) and f >= episodes[i + 1].start - episodes[i + 1].lead:
            return episodes[i + 1]
    return ep


def plan_video(rng: np.random.Generator, clip_classes: Sequence[str], cfg: SynthConfig) -> List[Episode]:
    """Lead-in idle span, then each clip followed by an idle gap: a list of consecutive episodes
    (with timing "straddle", each gesture's movement reaching into the gaps beside it)."""
    eps, f = [], 0
    lead = int(rng.integers(cfg.gap_frames[0], cfg.gap_frames[1] + 1))
    eps.append(make_episode(rng, None, 0, max(1, lead)))
    f = eps[-1].end + 1
    for cls in clip_classes:
        n = int(rng.integers(cfg.clip_frames[0], cfg.clip_frames[1] + 1))
        eps.append(make_episode(rng, cls, f, n))
        gap = int(rng.integers(cfg.gap_frames[0], cfg.gap_frames[1] + 1))
        f = eps[-1].end + 1
        if gap:
            eps.append(make_episode(rng, None, f, gap))
            f = eps[-1].end + 1
    eps = [_as_configured(e, cfg) for e in eps]
    return straddle(eps) if cfg.timing == "straddle" else eps


class Take:
    """One subject in front of one background, rendering episodes frame by frame."""

    def __init__(self, seed: int, index: int, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.subject = make_subject(_rng(seed, index, 1), cfg)
        if cfg.posture != "v1":  # drawn after set v1's subject, from a stream of its own: v1 stays as it was
            self.subject = seat_subject(
                self.subject, load_posture(cfg.posture), _rng(seed, index, 9), fitted_hands=cfg.hands == "fitted"
            )
        self.background = make_background(_rng(seed, index, 2), cfg.width, cfg.height)
        self.look = make_look(_rng(seed, index, 7)) if cfg.pixels == "varied" else None
        if self.look is not None:
            photo = photo_background(self.look, cfg.width, cfg.height)
            self.background = self.background if photo is None else photo
            self.pixel_rng = _rng(seed, index, 8)
        self.observer: Observer | ProfileObserver = (
            Observer(_rng(seed, index, 3), self.subject.noise_px, self.subject.dropout)
            if cfg.observer == "v1"
            else ProfileObserver(_rng(seed, index, 3), load_profile(cfg.observer))
        )
        self.body = Body(self.subject)
        self.phase = float(_rng(seed, index, 4).uniform(0, 2 * math.pi))

    def render(self, f: int, ep: Episode | None) -> Tuple[np.ndarray, np.ndarray]:
        """Frame ``f``: RGB image ``(H, W, 3)`` uint8 and exact keypoints ``(137, 3)`` float32."""
        joints, hands = episode_pose(self.body, ep, f, self.cfg.fps, self.phase)
        kp, arms = self.body.keypoints(joints, hands)
        img = draw_frame(self.background, self.subject, kp, arms, ep)
        if self.look is not None:
            draw_props(img, self.look, self.subject.cx, self.subject.desk_y, self.subject.torso)
            img, kp = apply_camera(img, kp, self.look, self.pixel_rng)
        return img, kp.astype(np.float32)

    def frames(self, episodes: Sequence[Episode], first: int = 0, stop: int | None = None) -> Iterator[SynthFrame]:
        """The frames of ``episodes[first:stop]``; the others are there as neighbours whose movement
        may reach into a gap (``motion_episode``)."""
        classes = self.cfg.classes
        for i in range(first, len(episodes) if stop is None else stop):
            ep = episodes[i]
            label = classes.index(ep.cls) if ep.cls is not None else -1
            for f in range(ep.start, ep.end + 1):
                img, kp = self.render(f, motion_episode(episodes, i, f))
                yield SynthFrame(f, img, kp, self._observe(kp), label, ep.cls)

    def _observe(self, kp: np.ndarray) -> np.ndarray:
        obs = self.observer(kp)
        return np.zeros_like(kp) if obs is None else obs


def synthetic_stream(seed: int = 0, config: SynthConfig | None = None) -> Iterator[SynthFrame]:
    """Frames of one endless synthetic take (one subject), with exact keypoints, forever.

    Gestures of random classes alternate with idle gaps exactly as in the written set; ``label`` is
    the class index (in ``config.classes``) while a gesture plays and -1 in the gaps. Deterministic
    for a seed. This is the source a live "synthetic camera" wraps.
    """
    cfg = config or SynthConfig()
    take = Take(seed, 0, cfg)
    rng = _rng(seed, 0, 5)
    start = 0

    def chunk() -> List[Episode]:  # an idle gap (unless drawn empty), then one clip
        nonlocal start
        gap = int(rng.integers(cfg.gap_frames[0], cfg.gap_frames[1] + 1))
        cls = cfg.classes[int(rng.integers(len(cfg.classes)))]
        n = int(rng.integers(cfg.clip_frames[0], cfg.clip_frames[1] + 1))
        eps = ([make_episode(rng, None, start, gap)] if gap else []) + [make_episode(rng, cls, start + gap, n)]
        start += gap + n
        return [_as_configured(e, cfg) for e in eps]

    if cfg.timing == "v1":
        while True:
            yield from take.frames(chunk())
    for window, first, stop in straddled_windows(iter(chunk, None)):
        yield from take.frames(window, first, stop)


def straddled_windows(chunks: Iterator[List[Episode]]) -> Iterator[Tuple[List[Episode], int, int]]:
    """For a stream planned a chunk at a time (planned episodes, ``lead`` and ``tail`` 0): each chunk
    straddled (``straddle``) with the clip before it and the chunk after it as neighbours, as
    ``(window, first, stop)``: render ``window[first:stop]``. A clip's movement reaches into the gaps
    either side, so a chunk is rendered once the next one is planned; every episode comes out as
    ``straddle`` of the whole plan would make it."""
    before: List[Episode] = []
    now = next(chunks, None)
    while now is not None:
        after = next(chunks, None)
        window = straddle(before + now + (after or []))
        yield window, len(before), len(before) + len(now)
        before, now = now[-1:], after


def write_video(path: Path, frames: Iterator[np.ndarray], width: int, height: int, fps: float) -> int:
    """Encode RGB frames to H.264 mp4 (yuv420p, crf 18, keyframe every second); returns the count."""
    import av

    n = 0
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.options = {"crf": "18", "preset": "ultrafast", "g": str(max(1, round(fps))), "threads": "1"}
        for img in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
            n += 1
        for pkt in st.encode():
            out.mux(pkt)
    return n
