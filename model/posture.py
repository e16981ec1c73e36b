"""How real people sit: body proportions and the resting posture, fitted to real keypoints (numpy only).

Set v1's drawn people have short arms (an upper arm of 0.55 shoulder widths against a real 0.9), a
long neck, and rest their hands on their lap beside the hips. The speaker of iMiGUE video 298,
between gestures, leans on the table: elbows out beyond the shoulders, hands together in front of
the chest. A pose-only model that learnt "hands up near the midline" from the drawn people reads
every real idle moment as a gesture. ``PostureProfile`` keeps what real keypoints say about this,
as quantiles in shoulder widths (BODY_25's shoulder-to-shoulder distance, the frame's own):

- ``upper_arm`` / ``forearm``: 2D shoulder-elbow and elbow-wrist lengths; a limb seen in 2D is never
  longer than it is, so a high quantile is its length (``ARM_QUANTILE``);
- ``neck_nose``: the nose's height above BODY_25's neck (a camera above the eyes, a head held
  forward: short);
- ``rest_wrist_x`` / ``rest_wrist_y`` and ``rest_elbow_x`` / ``rest_elbow_y``: where a resting
  wrist and elbow are, from the neck, x toward the person's own side, y down.

Each is kept as its 10th, 50th and 90th percentile; the synthetic set (``--posture seated``) draws
each subject's value uniformly between the 10th and 90th. Only frames a fit is allowed to read are
used (``clipmg.train.fit_observer``: outside the labelled clips), and no class is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .config import ConfigError
from .files import load_shipped_json, shipped_json_names

PACKAGE = "clipmg.model.postures"
NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI = 0, 1, 2, 3, 4, 5, 6, 7
PERCENTILES = (10.0, 50.0, 90.0)
ARM_QUANTILE = 95.0  # a limb's length: the 95th percentile of its 2D length (foreshortening only shortens)
FIELDS = (
    "upper_arm",
    "forearm",
    "neck_nose",
    "rest_wrist_x",
    "rest_wrist_y",
    "rest_elbow_x",
    "rest_elbow_y",
)
Quantiles = Tuple[float, float, float]


@dataclass(frozen=True)
class PostureProfile:
    """Body proportions and resting posture of real people, in shoulder widths: 10th/50th/90th
    percentiles, except the arm lengths (see ``upper_arm``)."""

    name: str
    source: str
    frames: int
    upper_arm: Quantiles  # for the arm lengths: (p50, ARM_QUANTILE, max of the two sides' ARM_QUANTILE)
    forearm: Quantiles
    neck_nose: Quantiles
    rest_wrist_x: Quantiles
    rest_wrist_y: Quantiles
    rest_elbow_x: Quantiles
    rest_elbow_y: Quantiles

    def to_dict(self) -> Dict[str, object]:
        out: Dict[str, object] = {"name": self.name, "source": self.source, "frames": self.frames}
        out.update({k: [round(float(v), 4) for v in getattr(self, k)] for k in FIELDS})
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, object]) -> "PostureProfile":
        values = {}
        for k in FIELDS:
            v = d.get(k)
            if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
                raise ConfigError(f"posture profile {d.get('name')!r}: {k} must be three numbers, got {v!r}")
            values[k] = (float(v[0]), float(v[1]), float(v[2]))
        return cls(name=str(d["name"]), source=str(d["source"]), frames=int(d["frames"]), **values)  # type: ignore[call-overload]

    def draw(self, rng: np.random.Generator, key: str) -> float:
        """One subject's value of ``key``: uniform between its 10th and 90th percentile (for the arm
        lengths, between the length and the longer side's)."""
        lo, mid, hi = getattr(self, key)
        if key in ("upper_arm", "forearm"):
            lo, hi = mid, hi
        return float(rng.uniform(min(lo, hi), max(lo, hi)))


def _lengths(kp: np.ndarray, a: int, b: int, sw: np.ndarray) -> np.ndarray:
    ok = (kp[:, a, 2] > 0) & (kp[:, b, 2] > 0) & np.isfinite(sw)
    return np.linalg.norm(kp[ok, a, :2] - kp[ok, b, :2], axis=1) / sw[ok]


def fit_posture(kp: np.ndarray, use: np.ndarray, name: str, source: str) -> PostureProfile:
    """Fit a profile to real keypoints ``(T, 137, 3)``, reading only the frames ``use`` marks."""
    kp = np.where(np.isfinite(kp), kp, 0.0)[np.asarray(use, bool)]
    both = (kp[:, RSHO, 2] > 0) & (kp[:, LSHO, 2] > 0)
    sw = np.where(both, np.linalg.norm(kp[:, RSHO, :2] - kp[:, LSHO, :2], axis=1), np.nan)
    sw = np.where(sw > 0, sw, np.nan)

    def q(x: np.ndarray) -> Quantiles:
        if x.size == 0:
            raise ConfigError(f"cannot fit the posture profile {name!r}: no frame shows the points it needs")
        p = np.percentile(x, PERCENTILES)
        return float(p[0]), float(p[1]), float(p[2])

    def arm(pairs: Tuple[Tuple[int, int], Tuple[int, int]]) -> Quantiles:
        sides = [_lengths(kp, a, b, sw) for a, b in pairs]
        if any(s.size == 0 for s in sides):
            raise ConfigError(f"cannot fit the posture profile {name!r}: an arm is never seen")
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

    wrist_out, wrist_down = from_neck(RWRI, LWRI)
    elbow_out, elbow_down = from_neck(RELB, LELB)
    nose_ok = neck_ok & (kp[:, NOSE, 2] > 0)
    return PostureProfile(
        name=name,
        source=source,
        frames=int(len(kp)),
        upper_arm=arm(((RSHO, RELB), (LSHO, LELB))),
        forearm=arm(((RELB, RWRI), (LELB, LWRI))),
        neck_nose=q((kp[nose_ok, NECK, 1] - kp[nose_ok, NOSE, 1]) / sw[nose_ok]),
        rest_wrist_x=q(wrist_out),
        rest_wrist_y=q(wrist_down),
        rest_elbow_x=q(elbow_out),
        rest_elbow_y=q(elbow_down),
    )


def list_postures() -> Tuple[str, ...]:
    """Names of the shipped posture profiles, sorted."""
    return shipped_json_names(PACKAGE)


def load_posture(name: str) -> PostureProfile:
    """A shipped posture profile by name; a ``ConfigError`` naming the known ones otherwise."""
    return PostureProfile.from_dict(load_shipped_json(PACKAGE, name, "posture profile"))
