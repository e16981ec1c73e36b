"""Pixels closer to real: domain randomisation for the synthetic set's RGB side (numpy + OpenCV).

``SynthConfig(pixels="varied")`` (set v2's choice) gives every video a ``Look``, drawn once: a real
photograph behind the speaker (the photographs scikit-image ships, read as files; people are left
out so the frame holds one person), a microphone on a stand and a name card on the desk in front of
them as at press conferences, a camera that stands a little nearer or farther and tilts (an affine
map applied to the image *and* the keypoints, so the labels stay exact), and a camera pipeline:
exposure, contrast, colour cast, lens blur, sensor noise and lossy compression (JPEG at the
video's quality, frame by frame). ``pixels="v1"`` leaves the drawing as set v1 made it.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from .config import ConfigError

# scikit-image's bundled photographs without people (astronaut and camera show one)
PHOTOS: Tuple[str, ...] = (
    "brick.png",
    "grass.png",
    "gravel.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "page.png",
    "text.png",
    "color.png",
    "retina.jpg",
)
PIXEL_STYLES = ("v1", "varied")


@functools.lru_cache(maxsize=1)
def photographs() -> Tuple[np.ndarray, ...]:
    """The photographs, RGB uint8, read once from scikit-image's data folder (without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "pixels='varied' takes its backgrounds from the photographs scikit-image ships; "
            "install it (pip install 'clipmg[train]') or use pixels='v1'"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    from PIL import Image  # scikit-image's own reader, so there where the photographs are

    out = []
    for name in PHOTOS:  # the same pixels as OpenCV's reader (tested), without libpng's warnings on stderr
        try:
            with Image.open(folder / name) as img:
                out.append(np.asarray(img.convert("RGB")))
        except (OSError, ValueError):
            continue
    if len(out) < 4:
        raise ConfigError(f"found only {len(out)} of scikit-image's photographs in {folder}; reinstall scikit-image")
    return tuple(out)


@dataclass(frozen=True)
class Look:
    """How one video looks: everything about its pixels that does not move."""

    photo: int  # background photograph index, -1: the drawn backdrop
    crop: Tuple[float, float, float]  # photo crop: left, top (fractions) and side (fraction of the photo)
    backdrop_blur: float  # depth of field: Gaussian sigma of the background (px at 120 px height)
    microphone: Tuple[float, float] | None  # mic head x (torso units from the midline), height above the desk
    card: float | None  # name card x on the desk (torso units from the midline)
    scale: float  # camera distance: > 1 nearer
    angle: float  # camera roll, degrees
    shift: Tuple[float, float]  # camera pan, fractions of the frame
    gain: float  # exposure
    contrast: float
    cast: Tuple[float, float, float]  # white balance, per channel
    blur: float  # lens blur sigma (px at 120 px height)
    noise: float  # sensor noise sigma (grey levels)
    jpeg: int  # compression quality


def make_look(rng: np.random.Generator) -> Look:
    """Draw a video's look (every draw made whatever the outcome, so a seed means the same look)."""
    use_photo, photo = rng.random(), int(rng.integers(len(PHOTOS)))
    side = rng.uniform(0.45, 1.0)
    left, top = rng.uniform(0, 1 - side), rng.uniform(0, 1 - side)
    mic, mic_x, mic_h = rng.random(), rng.uniform(-0.35, 0.35), rng.uniform(0.35, 0.6)
    card, card_x = rng.random(), rng.uniform(-0.5, 0.5)
    return Look(
        photo=photo if use_photo < 0.75 else -1,
        crop=(float(left), float(top), float(side)),
        backdrop_blur=float(rng.uniform(0.5, 3.0)),
        microphone=(float(mic_x), float(mic_h)) if mic < 0.5 else None,
        card=float(card_x) if card < 0.35 else None,
        scale=float(rng.uniform(0.85, 1.15)),
        angle=float(rng.uniform(-6.0, 6.0)),
        shift=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
        gain=float(rng.uniform(0.7, 1.3)),
        contrast=float(rng.uniform(0.75, 1.2)),
        cast=tuple(float(c) for c in rng.uniform(0.88, 1.12, 3)),  # type: ignore[arg-type]
        blur=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(0.0, 4.0)),
        jpeg=int(rng.integers(35, 92)),
    )


def photo_background(look: Look, width: int, height: int) -> np.ndarray | None:
    """The look's photograph cropped and blurred to ``(H, W, 3)``; None for the drawn backdrop."""
    if look.photo < 0:
        return None
    img = photographs()[look.photo % len(photographs())]
    h, w = img.shape[:2]
    ch = max(8, int(look.crop[2] * min(h, w * height / width)))  # a crop of the frame's aspect
    cw = min(w, int(ch * width / height))
    x0, y0 = int(look.crop[0] * (w - cw)), int(look.crop[1] * (h - ch))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    out = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(out, (0, 0), look.backdrop_blur * height / 120.0)


def draw_props(img: np.ndarray, look: Look, cx: float, desk_y: float, torso: float) -> None:
    """A microphone on a stand and a name card, in front of the speaker (in place)."""
    aa, sh = cv2.LINE_AA, 4
    if look.microphone is not None:
        x = cx + look.microphone[0] * torso
        head = (x, desk_y - look.microphone[1] * torso)
        base = (x + 0.05 * torso, desk_y + 0.02 * torso)
        cv2.line(img, _p(base), _p(head), (40, 40, 40), max(1, int(round(0.03 * torso))), aa, sh)
        cv2.ellipse(img, _p(head), _p((0.06 * torso, 0.09 * torso)), 0, 0, 360, (25, 25, 25), -1, aa, sh)
    if look.card is not None:
        x, w, h = cx + look.card * torso, 0.35 * torso, 0.12 * torso
        y = desk_y + 0.02 * torso
        cv2.rectangle(img, _p((x - w / 2, y)), _p((x + w / 2, y + h)), (240, 240, 235), -1, aa, sh)
        cv2.line(img, _p((x - 0.35 * w, y + h / 2)), _p((x + 0.35 * w, y + h / 2)), (60, 60, 60), 1, aa, sh)


def _p(p) -> Tuple[int, int]:
    return int(round(p[0] * 16)), int(round(p[1] * 16))


def camera_matrix(look: Look, width: int, height: int) -> np.ndarray:
    """``(2, 3)`` affine map of the look's camera: roll and zoom about the frame centre, then pan."""
    m = np.asarray(cv2.getRotationMatrix2D((width / 2.0, height / 2.0), look.angle, look.scale), np.float64)
    m[:, 2] += (look.shift[0] * width, look.shift[1] * height)
    return m


def apply_camera(
    img: np.ndarray, kp: np.ndarray, look: Look, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """The frame as the look's camera records it, and the keypoints moved with it (drawn points only)."""
    h, w = img.shape[:2]
    m = camera_matrix(look, w, h)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    kp = kp.copy()
    drawn = kp[:, 2] > 0
    kp[drawn, :2] = kp[drawn, :2] @ m[:, :2].T + m[:, 2]
    s = h / 120.0
    x = out.astype(np.float32)
    x = (x - 128.0) * look.contrast + 128.0 + (look.gain - 1.0) * 100.0
    x = x * np.asarray(look.cast, np.float32)
    if look.blur > 0.05:
        x = np.asarray(cv2.GaussianBlur(x, (0, 0), look.blur * s), np.float32)
    if look.noise > 0:
        x = x + rng.normal(0.0, look.noise, x.shape).astype(np.float32)
    frame = np.clip(x, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, look.jpeg])
    if ok:
        frame = np.asarray(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), np.uint8)
    return frame, kp


def rotation_deg(m: np.ndarray) -> float:
    """The roll of an affine map ``(2, 3)`` in degrees, counter-clockwise on screen as OpenCV's
    ``getRotationMatrix2D`` takes it (for tests and summaries)."""
    return math.degrees(math.atan2(m[0, 1], m[0, 0]))
