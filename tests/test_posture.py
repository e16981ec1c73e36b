"""People built and seated as real ones (model/posture.py, --posture; fitted by train/fit_observer.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipmg.model.config import ConfigError
from clipmg.model.keypoint_stats import keypoint_statistics
from clipmg.model.posture import FIELDS, PostureProfile, fit_posture, list_postures, load_posture
from clipmg.model.synthetic import SYNTH_CLASSES_V2, SynthConfig, Take, _rng, make_episode

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_298 = (SHARED / "imigue-298-skeleton" / "298").is_dir()


def _idle(posture: str, seed: int, frames: int = 120) -> np.ndarray:
    """Exact keypoints ``(T, 137, 3)`` of one synthetic subject idling, people built by ``posture``."""
    take = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture=posture))
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
    """A seated subject's arms are as long as the profile's, and its resting statistics fall in the
    profile's 10th-90th percentile ranges (the draws' ranges) within a small margin; set v1's body
    falls outside them."""
    p = load_posture("seated")
    for posture, inside in (("seated", True), ("v1", False)):
        subject = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, posture=posture)).subject
        sw = 2 * subject.shoulder
        fit = fit_posture(_idle(posture, seed), np.ones(120, bool), "x", "x")
        checks = {
            "upper arm": (subject.upper_arm / sw, (p.upper_arm[1], 0, p.upper_arm[2])),
            "forearm": (subject.forearm / sw, (p.forearm[1], 0, p.forearm[2])),
            "neck_nose": (fit.neck_nose[1], p.neck_nose),
            "rest_wrist_x": (fit.rest_wrist_x[1], p.rest_wrist_x),
            "rest_elbow_x": (fit.rest_elbow_x[1], p.rest_elbow_x),
        }
        for name, (value, (lo, _, hi)) in checks.items():
            ok = lo - 0.08 <= value <= hi + 0.08
            assert ok == inside, (posture, name, value, (lo, hi))


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
        fit_posture(np.zeros((10, 137, 3), np.float32), np.ones(10, bool), "x", "x")
    stats = keypoint_statistics(np.zeros((10, 137, 3), np.float32), 25.0)
    assert np.isnan(stats["upper_arm"]) and np.isnan(stats["rest_wrist"]["out"])  # type: ignore[index]


def test_the_v2_set_brings_the_fitted_observer_posture_and_pixels_unless_told(tmp_path):
    def write(name: str, *extra: str) -> dict:
        out = tmp_path / name
        cmd = [sys.executable, "-m", "clipmg.train.synth", str(out), "--videos", "1", "--clips-per-video", "2"]
        p = subprocess.run(cmd + ["--no-video", "--quiet", *extra], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads((out / "synth.json").read_text())["config"]

    cfg = write("v2", "--class-set", "v2")
    assert (cfg["observer"], cfg["posture"], cfg["pixels"], cfg["talking"]) == ("openpose", "seated", "varied", True)
    cfg = write("v1", "--class-set", "v1")
    assert (cfg["observer"], cfg["posture"], cfg["pixels"], cfg["talking"]) == ("v1", "v1", "v1", False)
    cfg = write("mixed", "--class-set", "v2", "--posture", "v1", "--observer", "v1")
    assert (cfg["observer"], cfg["posture"], cfg["pixels"]) == ("v1", "v1", "varied")
    p = subprocess.run(
        [sys.executable, "-m", "clipmg.train.synth", str(tmp_path / "bad"), "--posture", "slouched"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "posture must be one of v1, seated" in p.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


@pytest.mark.skipif(not HAS_298, reason="the shared real samples (../shared/data) are not there")
def test_the_shipped_posture_is_the_fit_commands_output(tmp_path):
    cmd = [sys.executable, "-m", "clipmg.train.fit_observer", "--data", str(SHARED), "--check"]
    d = load_posture("seated").to_dict()
    d["rest_elbow_x"] = [0.5, 0.6, 0.7]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    p = subprocess.run(cmd + ["--posture-out", str(bad)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "differs from a refit in rest_elbow_x" in p.stderr
