"""People built and seated as real ones (model/posture.py, --posture; fitted by train/fit_observer.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clipmg.model.config import ConfigError
from clipmg.model.keypoint_stats import keypoint_statistics
from clipmg.model.posture import (
    FIELDS,
    PostureProfile,
    fit_posture,
    list_postures,
    load_posture,
    motion_windows,
    palm_across,
    thumb_angle,
    window_starts,
)
from clipmg.model.synthetic import (
    PALM_SPAN,
    REST_CURL,
    SYNTH_CLASSES_V2,
    SynthConfig,
    Take,
    Wander,
    _hand_points,
    _rng,
    _toward_mid,
    make_episode,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_298 = (SHARED / "imigue-298-skeleton" / "298").is_dir()


def _idle(posture: str, seed: int, frames: int = 120, hands: str = "v1") -> np.ndarray:
    """Exact keypoints ``(T, 137, 3)`` of one synthetic subject idling, people built by ``posture``."""
    take = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture=posture, hands=hands))
    ep = make_episode(_rng(seed, 9), None, 0, frames)
    return np.stack([take.render(f, ep)[1] for f in range(frames)])


def test_the_seated_profile_ships_and_says_what_it_was_fitted_on():
    assert "seated" in list_postures()
    p = load_posture("seated")
    assert p.frames > 5000 and "video 298" in p.source
    for k in FIELDS:
        lo, mid, hi = getattr(p, k)
        assert lo <= mid <= hi, k
    assert 0.8 < p.upper_arm[1] < 1.1 and 0.7 < p.forearm[1] < 1.0  # a real arm, in shoulder widths
    # a real hand: about 0.108 of a person's height, the shoulder points about 0.2 apart: 0.54
    assert 0.45 < p.hand[1] < 0.65
    assert p.rest_elbow_x[1] > 0.5 + 0.3  # the resting elbows stand out beyond the shoulders (0.5)
    assert p.rest_wrist_x[1] < 0.5  # the resting hands lie inside them, in front of the chest
    with pytest.raises(ConfigError, match="unknown posture profile 'nope'; choose one of seated"):
        load_posture("nope")
    d = p.to_dict()
    assert PostureProfile.from_dict(json.loads(json.dumps(d))).to_dict() == d
    d["forearm"] = [0.1, 0.2]
    with pytest.raises(ConfigError, match="forearm must be three numbers"):
        PostureProfile.from_dict(d)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_seated_people_sit_as_the_profile_says_and_v1_people_do_not(seed):
    """A seated subject's arms are as long as the profile's, and its resting statistics (the shoulders'
    and the ears' height included) fall in the profile's 10th-90th percentile ranges (the draws'
    ranges) within a small margin; set v1's body falls outside them."""
    p = load_posture("seated")
    for posture, inside in (("seated", True), ("v1", False)):
        subject = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture=posture)).subject
        sw = 2 * subject.shoulder
        fit = fit_posture(_idle(posture, seed), np.ones(120, bool), "x", "x", fps=25.0)
        checks = {
            "upper arm": (subject.upper_arm / sw, (p.upper_arm[1], 0, p.upper_arm[2])),
            "forearm": (subject.forearm / sw, (p.forearm[1], 0, p.forearm[2])),
            "neck_nose": (fit.neck_nose[1], p.neck_nose),
            "rest_wrist_x": (fit.rest_wrist_x[1], p.rest_wrist_x),
            "rest_elbow_x": (fit.rest_elbow_x[1], p.rest_elbow_x),
            "shoulder_drop": (fit.shoulder_drop[1], p.shoulder_drop),
        }
        for name, (value, (lo, _, hi)) in checks.items():
            margin = 0.02 if name == "shoulder_drop" else 0.08  # the shoulders' range is 0.014 wide
            ok = lo - margin <= value <= hi + margin
            assert ok == inside, (posture, name, value, (lo, hi))
        ears = fit.ear_rise[1]
        assert (p.ear_rise[0] - 0.02 <= ears <= p.ear_rise[2] + 0.02) == inside, (posture, ears)


@pytest.mark.parametrize("seed", [0, 5])
def test_seated_resting_hands_point_as_the_profile_says(seed):
    """With fitted hands a seated subject's resting fingertips (their centroid seen from the wrist) lie
    the subject's drawn angle below the horizontal, toward the midline, inside the profile's 10th-90th
    percentiles, and the hand is as long as the profile's; without them the person is the same but for
    set v1's hands."""
    p = load_posture("seated")
    subject = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="seated", hands="fitted")).subject
    assert subject.rest_fingers is not None and p.rest_fingers[0] <= subject.rest_fingers <= p.rest_fingers[2]
    assert p.hand[1] <= subject.hand / (2 * subject.shoulder) <= p.hand[2]
    same = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="seated")).subject  # set v1's hands
    assert same.hand_px is None and same.rest_fingers is None and same.rest_across == 1.0
    assert same.rest_seen is None
    v1_hands = replace(subject, hand_px=None, rest_fingers=None, rest_across=1.0, rest_seen=None, rest_thumb=0.0)
    assert v1_hands == same  # the same person otherwise
    with pytest.raises(ValueError, match="hands 'fitted' come from a fitted posture profile"):
        SynthConfig(hands="fitted")
    with pytest.raises(ValueError, match="hands must be one of v1, fitted"):
        SynthConfig(posture="seated", hands="big")
    kp = _idle("seated", seed, frames=20, hands="fitted")
    for wrist, hand, inward in ((4, 116, 1.0), (7, 95, -1.0)):
        tips = kp[:, [hand + i for i in (4, 8, 12, 16, 20)], :2].mean(axis=1)
        d = tips - kp[:, wrist, :2]
        angle = np.degrees(np.arctan2(d[:, 1], inward * d[:, 0]))
        assert np.allclose(angle, subject.rest_fingers, atol=0.5), (angle, subject.rest_fingers)
        # seen foreshortened, as long as real resting hands are seen, frame by frame
        length = np.linalg.norm(kp[:, hand + 12, :2] - kp[:, hand, :2], axis=1) / (2 * subject.shoulder)
        assert (p.rest_hand[0] - 1e-6 <= length).all() and (length <= p.rest_hand[2] + 1e-6).all()
        side = -1 if hand == 116 else 1
        square = _hand_points(np.zeros(2), 0.0, REST_CURL, 1.0, side, subject.rest_across)[12]  # reach 1
        want = [min(subject.rest_seen.seen(side, f, 25.0), np.hypot(*square)) for f in range(20)]
        assert np.allclose(length, np.array(want) * subject.hand / (2 * subject.shoulder), atol=2e-3)
    # turned about its axis as the subject's draw says: the palm's signed width, read as real ones are
    for hand, side in ((116, -1), (95, 1)):
        palm = palm_across(kp[:, hand : hand + 21], side)
        assert np.allclose(palm, subject.rest_across * PALM_SPAN * subject.hand, rtol=0.03, atol=0.02), side


@pytest.mark.parametrize("across", [1.0, 0.3, -0.6])
def test_palm_across_reads_how_far_a_drawn_hand_is_turned(across):
    """``palm_across`` reads a drawn hand's turn back, whichever way it points, for either hand: the
    width between the index and little knuckles times the turn's cosine (positive: the palm shows);
    a missing knuckle gives NaN."""
    for side in (-1, 1):
        for phi in (_toward_mid(side, 10.0), _toward_mid(side, -40.0), -math.pi / 2):
            h = _hand_points(np.array([50.0, 60.0]), phi, REST_CURL, 40.0, side, across)
            pts = np.concatenate([h, np.ones((21, 1))], axis=1)[None]
            assert palm_across(pts, side)[0] == pytest.approx(across * PALM_SPAN * 40.0, rel=0.02), (side, phi)
            pts[0, 17, 2] = 0.0
            assert np.isnan(palm_across(pts, side)[0])


def test_seated_resting_hands_turn_as_the_profile_says():
    """Most real resting hands lie turned over (thumb up) and a few show the palm, and they are seen
    foreshortened by amounts that change: over many seated subjects with fitted hands the drawn palms'
    widths follow the profile's three quantiles (their median, not their range's middle), over a
    subject's frames the hands' lengths as seen span the profile's, a turned-over hand holds its
    thumb above the wrist, and the thumbs lie along the hands as the profile's do."""
    p = load_posture("seated")
    palms = []
    for seed in range(60):
        s = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="seated", hands="fitted")).subject
        assert -1.0 <= s.rest_across <= 1.0
        palms.append(s.rest_across * PALM_SPAN * s.hand / (2 * s.shoulder))
    lo, mid, hi = p.rest_palm
    assert lo < 0 < hi and mid < 0  # the real fit: mostly turned over
    assert np.median(palms) == pytest.approx(mid, abs=0.04)
    assert 0.55 < np.mean(np.array(palms) < 0) < 0.9
    assert p.rest_hand[1] < 0.75 * p.hand[1]  # the real fit: resting hands are seen shorter than they are
    # the thumbs lie along the hand as real resting ones do; set v1's stood out
    thumbs, v1_thumbs = [], []
    for seed in range(20):
        for hands, out in (("fitted", thumbs), ("v1", v1_thumbs)):
            kp = _idle("seated", seed, frames=30, hands=hands)
            out += [np.abs(thumb_angle(kp[:, h : h + 21], side)) for h, side in ((116, -1), (95, 1))]
    assert np.median(np.concatenate(thumbs)) == pytest.approx(p.rest_thumb[1], abs=4.0)
    assert np.median(np.concatenate(v1_thumbs)) > p.rest_thumb[2] - 5.0
    s = Take(0, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="seated", hands="fitted")).subject
    kp = _idle("seated", 0, frames=int(25 * s.rest_seen.period_s) + 1, hands="fitted")  # one wave
    seen = np.linalg.norm(kp[:, 116 + 12, :2] - kp[:, 116, :2], axis=1) / (2 * s.shoulder)
    # the shortest and the median as real ones; the longest is the curled resting hand square to the camera
    assert np.percentile(seen, [5, 50]) == pytest.approx(p.rest_hand[:2], abs=0.04)
    assert 0.8 * p.rest_hand[2] < seen.max() <= p.rest_hand[2]
    turned = next(
        seed
        for seed in range(60)
        if Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="seated", hands="fitted")).subject.rest_across
        < -0.3
    )
    kp = _idle("seated", turned, frames=10, hands="fitted")
    for wrist, hand in ((4, 116), (7, 95)):
        assert (kp[:, hand + 4, 1] < kp[:, wrist, 1]).all()  # the thumb tip above the wrist
    v1 = _idle("seated", turned, frames=10)
    for wrist, hand in ((4, 116), (7, 95)):
        assert (v1[:, hand + 4, 1] > v1[:, wrist, 1]).all()  # set v1's hand shows its palm: the thumb hangs


def test_seated_heads_turn_and_move_as_the_profile_says():
    """Over many seated subjects idling, the head's turn and its motion in 1-second windows span the
    profile's 10th-90th percentiles (what ``Wander`` and the turn draw from); set v1's heads are still
    and face the camera."""
    p = load_posture("seated")
    stats: dict = {"seated": {}, "v1": {}}
    for posture in stats:
        for seed in range(12):
            for k, v in motion_windows(_idle(posture, seed, 250), np.ones(250, bool), 25.0).items():
                stats[posture].setdefault(k, []).append(v)
    seated = {k: np.percentile(np.concatenate(v), [10, 50, 90]) for k, v in stats["seated"].items()}
    v1 = {k: np.percentile(np.concatenate(v), [10, 50, 90]) for k, v in stats["v1"].items()}
    lo, mid, hi = p.head_motion
    assert lo * 0.7 < seated["head_motion"][0] and seated["head_motion"][2] < hi * 1.3
    assert mid * 0.6 < seated["head_motion"][1] < mid * 1.6
    assert p.head_turn[0] * 0.7 < seated["head_turn"][1] < p.head_turn[2] * 1.1
    assert v1["head_motion"][2] < lo and v1["head_turn"][2] < 0.01  # exact keypoints: no noise, no turn


def test_seated_bodies_sit_off_centre_between_their_elbows_as_real_ones_do():
    """Each seated subject's resting elbows lie to one side of its neck, drawn between the profile's
    10th and 90th percentiles, both ways over subjects (the person crop is set by the elbows, so this
    is where the body sits in the model's input); the further elbow stays inside the real elbows'
    range; set v1's bodies are centred between their elbows."""
    p = load_posture("seated")
    lo, _, hi = p.rest_elbows_x
    off: dict = {"seated": [], "v1": []}
    for posture in off:
        for seed in range(12):
            fit = fit_posture(_idle(posture, seed), np.ones(120, bool), "x", "x", fps=25.0)
            off[posture].append(fit.rest_elbows_x[1])
            if posture == "seated":
                assert (
                    p.rest_elbow_x[0] - 0.02 <= fit.rest_elbow_x[0] <= fit.rest_elbow_x[2] <= p.rest_elbow_x[2] + 0.02
                )
    seated = np.array(off["seated"])
    assert lo - 0.01 <= seated.min() < 0.5 * lo and 0.5 * hi < seated.max() <= hi + 0.01, seated
    assert np.abs(off["v1"]).max() < 0.005


def test_wander_spans_its_range_and_windows_stay_inside_runs():
    rng = np.random.default_rng(0)
    rms = []
    for _ in range(40):
        w = Wander.draw(rng, 0.5, 4.0)
        off = np.array([w.offset(f, 25.0) for f in range(500)])
        rms += [float(np.sqrt(((b - b.mean(0)) ** 2).sum(1).mean())) for b in off.reshape(20, 25, 2)]
    q10, q50, q90 = np.percentile(rms, [10, 50, 90])
    assert 0.4 < q10 < 0.8 and 1.0 < q50 < 2.0 and 3.0 < q90 < 4.2  # log-midway: sqrt(0.5 * 4) = 1.41
    use = np.array([1] * 30 + [0] + [1] * 50 + [0] * 3 + [1] * 24, bool)
    assert window_starts(use, 25) == [0, 31, 56]  # back to back inside each run; a 24-frame run gives none


def test_the_posture_leaves_v1_alone_and_differs_in_seated():
    ep = make_episode(_rng(2, 2), "touch chin", 0, 30)
    v1 = Take(2, 1, SynthConfig(classes=SYNTH_CLASSES_V2))
    same = Take(2, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="v1"))
    seated = Take(2, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture="seated"))
    assert v1.subject == same.subject and v1.subject.upper_arm_px is None
    a, b, c = (t.render(10, ep) for t in (v1, same, seated))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[1][:8, :2], c[1][:8, :2])
    with pytest.raises(ValueError, match="posture must be one of v1, seated"):
        SynthConfig(posture="slouched")


def test_a_fit_needs_the_points_it_reads():
    with pytest.raises(ConfigError, match="cannot fit the posture profile 'x'"):
        fit_posture(np.zeros((10, 137, 3), np.float32), np.ones(10, bool), "x", "x", fps=25.0)
    stats = keypoint_statistics(np.zeros((10, 137, 3), np.float32), 25.0)
    assert np.isnan(stats["upper_arm"]) and np.isnan(stats["rest_wrist"]["out"])  # type: ignore[index]


def test_the_v2_set_brings_the_fitted_observer_posture_and_pixels_unless_told(tmp_path):
    def write(name: str, *extra: str) -> dict:
        out = tmp_path / name
        cmd = [sys.executable, "-m", "clipmg.train.synth", str(out), "--videos", "1", "--clips-per-video", "2"]
        p = subprocess.run(cmd + ["--no-video", "--quiet", *extra], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads((out / "synth.json").read_text())["config"]

    def kinds(cfg: dict) -> tuple:
        keys = ("observer", "posture", "pixels", "talking", "scripts", "hands", "timing")
        return tuple(cfg[k] for k in keys)

    assert kinds(write("v2", "--class-set", "v2")) == ("openpose", "seated", "varied", True, "v2", "v1", "straddle")
    assert kinds(write("v1", "--class-set", "v1")) == ("v1", "v1", "v1", False, "v1", "v1", "v1")
    cfg = write("mixed", "--class-set", "v2", "--posture", "v1", "--observer", "v1", "--scripts", "v1")
    assert kinds(cfg) == ("v1", "v1", "varied", True, "v1", "v1", "straddle")
    assert kinds(write("hands", "--class-set", "v2", "--hands", "fitted", "--timing", "v1"))[-2:] == ("fitted", "v1")
    assert kinds(write("timing", "--class-set", "v1", "--timing", "straddle"))[-1] == "straddle"
    for bad, msg in (
        (["--hands", "big"], "hands must be one of v1, fitted"),
        (["--timing", "late"], "timing must be one of v1, straddle"),
        (["--class-set", "v1", "--hands", "fitted"], "hands 'fitted' come from a fitted posture profile"),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "clipmg.train.synth", str(tmp_path / "bad"), *bad], capture_output=True, text=True
        )
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and msg in p.stderr, p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "clipmg.train.synth", str(tmp_path / "bad"), "--posture", "slouched"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "posture must be one of v1, seated" in p.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    p = subprocess.run(
        [sys.executable, "-m", "clipmg.train.synth", str(tmp_path / "bad"), "--scripts", "v9"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "scripts must be one of v1, v2" in p.stderr


@pytest.mark.skipif(not HAS_298, reason="the shared real samples (../shared/data) are not there")
def test_the_shipped_posture_is_the_fit_commands_output(tmp_path):
    cmd = [sys.executable, "-m", "clipmg.train.fit_observer", "--data", str(SHARED), "--check"]
    d = load_posture("seated").to_dict()
    d["rest_elbow_x"] = [0.5, 0.6, 0.7]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    p = subprocess.run(cmd + ["--posture-out", str(bad)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "differs from a refit in rest_elbow_x" in p.stderr
