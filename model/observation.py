"""How a pose estimator sees a person: an observation model fitted to real keypoints (numpy only).

The synthetic set draws exact keypoints; what its OpenPose JSON files hold is an *observation* of
them. ``ObserverProfile`` describes one estimator's observations point by point, every number
measured on real output (``fit_profile``), and ``ProfileObserver`` applies it to exact keypoints.
For each of OpenPose's 137 points:

- **confidence**: the quantiles of its confidence where present, sampled through a Gaussian copula
  whose lag-1 correlation is the real one, so a point that is seen poorly stays poor for a while
  instead of flickering frame to frame;
- **misses**: a two-state Markov chain a point (``miss_start`` = P(missing now | present before),
  ``miss_stay`` = P(missing now | missing before)), and one a hand for a whole hand lost (fewer
  than 3 points, as OpenPose drops a hand);
- **noise**: OpenPose reports body points on the grid of its network input (about 1/368 of the
  frame height), so a still shoulder flips between two grid cells rather than wandering: body
  points are quantised to a grid of ``grid_sw`` shoulder widths after noise ``pre_sw`` (fitted so
  that the share of frames in which a point jumps a cell is the real one) and get a sub-pixel
  ``post_sw`` after it; face and hand points (found in crops at other scales) get white noise
  ``post_sw`` from the median absolute second difference
  (``sigma = median|x[t+1] - 2x[t] + x[t-1]| / (0.6745 sqrt 6)``). Both count every frame-to-frame
  change as noise, so they are upper bounds for a person who moves slowly.

Profiles are JSON files in ``model/observers/`` (``list_profiles``); ``clipmg.train.fit_observer``
writes them from real keypoints and says what they were fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .config import ConfigError
from .files import load_shipped_json, shipped_json_names
from .keypoint_stats import shoulder_width
from .layouts import SOURCE_OFFSETS

NUM_POINTS = 137
QUANTILES = np.linspace(0.0, 1.0, 21)  # the confidence quantiles a profile keeps
HAND_OFFSETS = (SOURCE_OFFSETS["lhand"], SOURCE_OFFSETS["rhand"])  # the person's left, right
BODY_POINTS = 25  # BODY_25: the points OpenPose puts on its network's grid
HAND_MIN_POINTS = 3  # a hand with fewer present points counts as lost (the statistics' rule)
MAD_TO_SIGMA = 1.0 / (0.6744897501960817 * math.sqrt(6.0))  # median|2nd difference| -> per-frame sigma
_PHI = np.frompyfunc(NormalDist().cdf, 1, 1)
_PHI_INV = np.frompyfunc(NormalDist().inv_cdf, 1, 1)


@dataclass(frozen=True, eq=False)
class ObserverProfile:
    """One pose estimator's observations, point by point (arrays over OpenPose's 137 points)."""

    name: str  # the profile's name (its file is observers/<name>.json)
    source: str  # what it was fitted on, by which command
    fps: float  # frame rate of the data it was fitted on (the Markov chains are per frame)
    conf_quantiles: np.ndarray  # (137, 21) confidence quantiles where present; NaN: never present
    conf_rho: np.ndarray  # (137,) lag-1 correlation of the confidence's normal scores
    miss_start: np.ndarray  # (137,) P(missing | present the frame before), inside a present hand for hands
    miss_stay: np.ndarray  # (137,) P(missing | missing the frame before)
    hand_start: np.ndarray  # (2,) P(hand lost | seen the frame before): left, right
    hand_stay: np.ndarray  # (2,) P(hand lost | lost the frame before)
    grid_sw: float  # body points' grid step, shoulder widths (0: no grid)
    pre_sw: np.ndarray  # (137,) per-coordinate noise before the grid, shoulder widths (body points)
    post_sw: np.ndarray  # (137,) per-coordinate noise after it (or alone), shoulder widths
    no_person: float  # share of frames with nobody found
    frames: int  # frames the fit used

    def to_dict(self) -> Dict[str, object]:
        def arr(a: np.ndarray) -> List:
            return np.round(np.where(np.isfinite(a), a, -1.0), 6).tolist()

        return {
            "name": self.name,
            "source": self.source,
            "fps": self.fps,
            "frames": self.frames,
            "no_person": round(self.no_person, 6),
            "hand_start": arr(self.hand_start),
            "hand_stay": arr(self.hand_stay),
            "conf_quantiles": arr(self.conf_quantiles),
            "conf_rho": arr(self.conf_rho),
            "miss_start": arr(self.miss_start),
            "miss_stay": arr(self.miss_stay),
            "grid_sw": round(self.grid_sw, 8),
            "pre_sw": arr(self.pre_sw),
            "post_sw": arr(self.post_sw),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, object]) -> "ObserverProfile":
        def arr(key: str, shape: Tuple[int, ...]) -> np.ndarray:
            a = np.asarray(d[key], np.float64)
            if a.shape != shape:
                raise ConfigError(f"observer profile {d.get('name')!r}: {key} must have shape {shape}, got {a.shape}")
            return np.where(a < 0, np.nan, a)

        return cls(
            name=str(d["name"]),
            source=str(d["source"]),
            fps=float(d["fps"]),  # type: ignore[arg-type]
            frames=int(d["frames"]),  # type: ignore[call-overload]
            no_person=float(d["no_person"]),  # type: ignore[arg-type]
            hand_start=arr("hand_start", (2,)),
            hand_stay=arr("hand_stay", (2,)),
            conf_quantiles=arr("conf_quantiles", (NUM_POINTS, len(QUANTILES))),
            conf_rho=arr("conf_rho", (NUM_POINTS,)),
            miss_start=arr("miss_start", (NUM_POINTS,)),
            miss_stay=arr("miss_stay", (NUM_POINTS,)),
            grid_sw=float(d["grid_sw"]),  # type: ignore[arg-type]
            pre_sw=arr("pre_sw", (NUM_POINTS,)),
            post_sw=arr("post_sw", (NUM_POINTS,)),
        )


# ------------------------------------------------------------------------------------ profiles
def list_profiles() -> Tuple[str, ...]:
    """Names of the shipped observer profiles, sorted."""
    return shipped_json_names("clipmg.model.observers")


def load_profile(name: str) -> ObserverProfile:
    """A shipped profile by name; a ``ConfigError`` naming the known ones otherwise."""
    return ObserverProfile.from_dict(load_shipped_json("clipmg.model.observers", name, "observer profile"))


# ------------------------------------------------------------------------------------ fitting
def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Ranks -> standard normal quantiles (ties share the mean rank)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, ranks)
    ranks = sums[inv] / counts[inv]
    return np.asarray(_PHI_INV(ranks / (len(x) + 1)), np.float64)


def fit_profile(
    sequences: Sequence[Tuple[np.ndarray, np.ndarray]], fps: float, name: str, source: str
) -> ObserverProfile:
    """Fit a profile to real keypoints: ``sequences`` of ``(kp (T, 137, 3), use (T,) bool)``.

    ``use`` marks the frames the fit may read (e.g. outside labelled clips); transitions and second
    differences use only runs of consecutive used frames. Lengths are in the sequence's median
    shoulder width (``keypoint_stats.shoulder_width``).
    """
    conf: List[List[np.ndarray]] = [[] for _ in range(NUM_POINTS)]
    pairs: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(NUM_POINTS)]
    flows: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(NUM_POINTS)]
    hands: List[List[Tuple[np.ndarray, np.ndarray]]] = [[], []]
    second: List[List[np.ndarray]] = [[] for _ in range(NUM_POINTS)]
    first: List[List[np.ndarray]] = [[] for _ in range(NUM_POINTS)]
    frames = nobody = 0
    for kp, use in sequences:
        kp = np.where(np.isfinite(kp), kp, 0.0)
        use = np.asarray(use, bool)
        present = kp[..., 2] > 0  # (T, 137)
        person = present[:, :25].any(axis=1)
        frames += int(use.sum())
        nobody += int((use & ~person).sum())
        sw = shoulder_width(kp)
        valid = use & person
        part_seen = np.repeat(person[:, None], NUM_POINTS, axis=1)
        for k, off in enumerate(HAND_OFFSETS):
            seen = present[:, off : off + 21].sum(axis=1) >= HAND_MIN_POINTS
            hands[k].append((~seen, valid))
            part_seen[:, off : off + 21] = seen[:, None] & person[:, None]
        for j in range(NUM_POINTS):
            ok = valid & part_seen[:, j]
            flows[j].append((~present[:, j], ok))
            c = kp[:, j, 2]
            conf[j].append(c[ok & present[:, j]])
            both = ok[1:] & ok[:-1] & present[1:, j] & present[:-1, j]
            pairs[j].append((c[:-1][both], c[1:][both]))
            if np.isfinite(sw) and sw > 0:
                first[j].append(np.abs(kp[1:, j, :2] - kp[:-1, j, :2])[both].reshape(-1) / sw)
            if len(kp) >= 3 and np.isfinite(sw) and sw > 0:
                tri = both[1:] & both[:-1]
                d2 = (kp[2:, j, :2] - 2 * kp[1:-1, j, :2] + kp[:-2, j, :2])[tri] / sw
                second[j].append(np.abs(d2).reshape(-1))
    q = np.full((NUM_POINTS, len(QUANTILES)), np.nan)
    rho, m_start, m_stay, pre, post = (np.full(NUM_POINTS, np.nan) for _ in range(5))
    steps = [np.concatenate(first[j]) if first[j] else np.zeros(0) for j in range(NUM_POINTS)]
    grid = _grid_step(np.concatenate(steps[:BODY_POINTS]))
    for j in range(NUM_POINTS):
        c = np.concatenate(conf[j])
        if c.size < 20:
            continue  # never (or hardly ever) seen: the observer leaves the point out
        q[j] = np.quantile(c, QUANTILES)
        m_start[j], m_stay[j] = _pooled_transitions(flows[j])
        a = np.concatenate([p[0] for p in pairs[j]])
        b = np.concatenate([p[1] for p in pairs[j]])
        if a.size >= 20 and np.std(a) > 0 and np.std(b) > 0:
            za, zb = _normal_scores(np.concatenate([a, b])).reshape(2, -1)
            rho[j] = float(np.clip(np.corrcoef(za, zb)[0, 1], 0.0, 0.999))
        else:
            rho[j] = 0.0
        if j < BODY_POINTS and grid > 0 and steps[j].size:
            small = steps[j][steps[j] < grid / 2]
            post[j] = float(np.median(small) / 0.6745 / math.sqrt(2.0)) if small.size else 0.0
            pre[j] = _pre_grid_noise(float((steps[j] >= grid / 2).mean())) * grid
        else:
            d2 = np.concatenate(second[j]) if second[j] else np.zeros(0)
            post[j] = float(np.median(d2) * MAD_TO_SIGMA) if d2.size else 0.0
            pre[j] = 0.0
    h_start, h_stay = np.zeros(2), np.zeros(2)
    for k in range(2):
        h_start[k], h_stay[k] = _pooled_transitions(hands[k])
    return ObserverProfile(
        name=name,
        source=source,
        fps=float(fps),
        conf_quantiles=q,
        conf_rho=rho,
        miss_start=m_start,
        miss_stay=m_stay,
        hand_start=h_start,
        hand_stay=h_stay,
        grid_sw=grid,
        pre_sw=pre,
        post_sw=post,
        no_person=nobody / max(1, frames),
        frames=frames,
    )


def _grid_step(steps: np.ndarray) -> float:
    """The grid step of quantised coordinates from their frame-to-frame steps (0: none found).

    A quantised coordinate either stays in its cell (a sub-pixel step) or jumps one cell: the
    steps have a mode near 0 and one at the grid step. Starting from the 90th percentile, the step
    is the median of the steps within ±40 % of it; no grid when fewer than 10 % of steps lie there.
    """
    if steps.size < 100:
        return 0.0
    guess = float(np.percentile(steps, 90))
    near = steps[(steps > 0.6 * guess) & (steps < 1.4 * guess)]
    if near.size < 0.1 * steps.size or guess <= 0:
        return 0.0
    step = float(np.median(near))
    return step if (steps < step / 4).mean() > 0.1 else 0.0  # a grid leaves many near-zero steps


_FLIP_U = np.random.default_rng(0).random(20000)  # fixed samples: the rate is a smooth function of sigma
_FLIP_E = np.random.default_rng(1).standard_normal((2, 20000))


def flip_rate(sigma: float) -> float:
    """Share of frames in which a still coordinate jumps a grid cell (grid step 1) when noise of
    ``sigma`` cells is added before rounding: Monte Carlo over the point's place in its cell."""
    return float((np.round(_FLIP_U + sigma * _FLIP_E[0]) != np.round(_FLIP_U + sigma * _FLIP_E[1])).mean())


def _pre_grid_noise(rate: float) -> float:
    """The noise (in grid cells) whose ``flip_rate`` is ``rate``: bisection (the rate rises with it)."""
    lo, hi = 0.0, 2.0
    if rate >= flip_rate(hi):
        return hi
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if flip_rate(mid) < rate else (lo, mid)
    return (lo + hi) / 2


def _pooled_transitions(runs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[float, float]:
    """``_transitions`` over several sequences, pooled (sequences are not joined end to start)."""
    counts = np.zeros(4)  # present->missing, present->*, missing->missing, missing->*
    for state, valid in runs:
        pair = valid[1:] & valid[:-1]
        before, now = state[:-1][pair], state[1:][pair]
        counts += ((now & ~before).sum(), (~before).sum(), (now & before).sum(), before.sum())
    start = counts[0] / counts[1] if counts[1] else 0.0
    stay = counts[2] / counts[3] if counts[3] else 0.0
    return float(start), float(stay)


# ------------------------------------------------------------------------------------ observing
class ProfileObserver:
    """Observations of exact keypoints drawn from a profile. Stateful (the Markov chains and the
    confidence copula span frames); deterministic for its generator. Same call as ``Observer``:
    exact ``(137, 3)`` pixels (confidence 0 where not drawn) -> observed ``(137, 3)`` or None."""

    def __init__(self, rng: np.random.Generator, profile: ObserverProfile) -> None:
        self.rng, self.p = rng, profile
        self.seen = np.isfinite(profile.conf_quantiles[:, 0])  # points the estimator ever reports
        self.z = rng.standard_normal(NUM_POINTS)  # the copula's state
        self.missing = np.zeros(NUM_POINTS, bool)
        self.hand_lost = np.zeros(2, bool)
        self.rho = np.nan_to_num(profile.conf_rho)
        self.q = np.nan_to_num(profile.conf_quantiles)
        self.offset = rng.random(2)  # where the grid lies under the person (cells)
        self.gridded = np.zeros(NUM_POINTS, bool)
        self.gridded[:BODY_POINTS] = profile.grid_sw > 0

    def _step(self, state: np.ndarray, start: np.ndarray, stay: np.ndarray) -> np.ndarray:
        p = np.where(state, np.nan_to_num(stay), np.nan_to_num(start))
        return self.rng.random(len(state)) < p

    def __call__(self, kp: np.ndarray) -> np.ndarray | None:
        rng, p = self.rng, self.p
        self.z = self.rho * self.z + np.sqrt(1.0 - self.rho**2) * rng.standard_normal(NUM_POINTS)
        self.missing = self._step(self.missing, p.miss_start, p.miss_stay)
        self.hand_lost = self._step(self.hand_lost, p.hand_start, p.hand_stay)
        if rng.random() < p.no_person:
            return None
        out = kp.astype(np.float64).copy()
        sh = np.linalg.norm(kp[2, :2] - kp[5, :2]) if kp[2, 2] > 0 and kp[5, 2] > 0 else 0.0
        noise = rng.standard_normal((2, NUM_POINTS, 2))
        xy = out[:, :2] + noise[0] * (np.nan_to_num(p.pre_sw) * sh)[:, None]
        if p.grid_sw > 0 and sh > 0:
            g = p.grid_sw * sh
            xy = np.where(self.gridded[:, None], (np.round(xy / g - self.offset) + self.offset) * g, xy)
        out[:, :2] = xy + noise[1] * (np.nan_to_num(p.post_sw) * sh)[:, None]
        pos = np.asarray(_PHI(self.z), np.float64) * (len(QUANTILES) - 1)  # the quantile grid is uniform
        i = np.minimum(pos.astype(np.int64), len(QUANTILES) - 2)
        rows = np.arange(NUM_POINTS)
        conf = self.q[rows, i] + (pos - i) * (self.q[rows, i + 1] - self.q[rows, i])
        keep = (kp[:, 2] > 0) & self.seen & ~self.missing
        for k, off in enumerate(HAND_OFFSETS):
            if self.hand_lost[k]:
                keep[off : off + 21] = False
        out[:, 2] = np.where(keep, np.maximum(conf, 1e-3), 0.0)
        out[~keep] = 0.0
        return out.astype(np.float32)
