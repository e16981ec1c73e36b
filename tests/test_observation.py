"""The observer fitted to real keypoints (model/observation.py, train/fit_observer.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipmg.model.config import ConfigError
from clipmg.model.observation import (
    QUANTILES,
    ObserverProfile,
    ProfileObserver,
    fit_profile,
    flip_rate,
    list_profiles,
    load_profile,
)
from clipmg.model.synthetic import SynthConfig, Take, _rng, episode_pose, make_episode

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_298 = (SHARED / "imigue-298-skeleton" / "298").is_dir()


def _exact_take(frames: int, seed: int = 3) -> np.ndarray:
    """Exact keypoints ``(T, 137, 3)`` of a synthetic subject idling (slow sway and breathing)."""
    take = Take(seed, 1, SynthConfig())
    ep = make_episode(_rng(seed, 9), None, 0, frames)
    out = []
    for f in range(frames):  # Take.render without drawing the frame
        joints, hands = episode_pose(take.body, ep, f, 25.0, take.phase)
        out.append(take.body.keypoints(joints, hands)[0])
    return np.stack(out).astype(np.float32)


def test_the_openpose_profile_ships_and_loads():
    assert "openpose" in list_profiles()
    p = load_profile("openpose")
    assert p.frames > 5000 and p.fps == 25.0 and "video 298" in p.source
    assert 0 < p.grid_sw < 0.02  # OpenPose's network grid: a few thousandths of a shoulder width
    seen = np.isfinite(p.conf_quantiles[:, 0])
    assert seen[:8].all() and not seen[8:15].any()  # upper body seen; a seated speaker's hips and legs never
    q = p.conf_quantiles[seen]
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 0).all() and (q <= 1.1).all()  # face scores pass 1 at times
    with pytest.raises(ConfigError, match="unknown observer profile 'nope'; choose one of .*openpose"):
        load_profile("nope")


def test_a_fit_recovers_the_profile_that_made_the_observations():
    """Observe an idling subject with the shipped profile, fit a profile to the observations: the
    fit gives back the confidences, misses, grid and noise it was made with."""
    truth = load_profile("openpose")
    exact = _exact_take(6000)
    obs = ProfileObserver(np.random.default_rng(1), truth)
    seen = np.stack([o if (o := obs(k)) is not None else np.zeros_like(k) for k in exact])
    fit = fit_profile([(seen, np.ones(len(seen), bool))], 25.0, "refit", "test")
    for j in (0, 1, 2, 4, 7, 17, 35, 100, 124):  # nose, neck, shoulder, wrists, ear, face, hands
        # the true median sits near the middle of the fitted distribution (in probability: slowly
        # changing confidences leave few independent samples, so a fixed tolerance in value would not do)
        assert np.interp(truth.conf_quantiles[j, 10], fit.conf_quantiles[j], QUANTILES) == pytest.approx(
            0.5, abs=0.12
        ), j
        assert fit.conf_rho[j] == pytest.approx(truth.conf_rho[j], abs=0.08), j
    assert fit.grid_sw == pytest.approx(truth.grid_sw, rel=0.1)
    for j in (0, 1, 2, 5):  # the noise before the grid (a still point's cell flips)
        assert fit.pre_sw[j] == pytest.approx(truth.pre_sw[j], rel=0.35), j
    for j in (35, 60, 100, 124):  # white noise on face and hand points
        assert fit.post_sw[j] == pytest.approx(truth.post_sw[j], rel=0.25), j
    assert fit.hand_start[1] == pytest.approx(truth.hand_start[1], rel=0.4)
    assert fit.hand_stay[1] == pytest.approx(truth.hand_stay[1], abs=0.08)
    # the right ear: lost in long runs, as when the head turns
    assert fit.miss_stay[17] == pytest.approx(truth.miss_stay[17], abs=0.05)
    assert fit.miss_start[17] == pytest.approx(truth.miss_start[17], rel=0.4)


def test_the_observer_leaves_out_what_is_not_drawn_and_is_deterministic():
    exact = _exact_take(50)
    a = ProfileObserver(np.random.default_rng(7), load_profile("openpose"))
    b = ProfileObserver(np.random.default_rng(7), load_profile("openpose"))
    for k in exact:
        oa, ob = a(k), b(k)
        assert oa is not None and ob is not None and np.array_equal(oa, ob)
        assert (oa[8:15] == 0).all()  # the hidden lower body (real OpenPose never sees it either)
        present = oa[:, 2] > 0
        assert (oa[present, 2] > 0).all() and (oa[~present] == 0).all()
        assert np.abs(oa[present, :2] - k[present, :2]).max() < 0.1 * np.linalg.norm(k[2, :2] - k[5, :2])


def test_flip_rate_rises_with_the_noise():
    rates = [flip_rate(s) for s in (0.0, 0.1, 0.2, 0.4, 0.8)]
    assert rates[0] == 0.0 and all(a < b for a, b in zip(rates, rates[1:]))


def test_synth_config_and_command_refuse_an_unknown_observer(tmp_path):
    with pytest.raises(ValueError, match="observer must be one of v1, openpose"):
        SynthConfig(observer="nope")
    p = subprocess.run(
        [sys.executable, "-m", "clipmg.train.synth", str(tmp_path / "s"), "--observer", "nope", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "observer must be one of" in p.stderr


def test_a_set_written_with_the_fitted_observer_reads_back(tmp_path):
    from clipmg.train.readers import read_openpose_folder
    from clipmg.train.synth import write_dataset

    meta = write_dataset(
        tmp_path / "s", videos=1, clips_per_video=2, config=SynthConfig(observer="openpose"), video=False
    )
    assert meta["config"]["observer"] == "openpose"  # type: ignore[index]
    kp = read_openpose_folder(tmp_path / "s" / "001" / "openpose", "001")
    assert len(kp) == meta["frames"] and (kp[:, 2, 2] > 0).all()
    assert np.median(kp[:, 2, 2]) < 0.6  # real OpenPose's shoulder confidences, not v1's ~0.75


@pytest.mark.skipif(not HAS_298, reason="the shared real samples (../shared/data) are not there")
def test_the_shipped_profile_is_the_fit_commands_output(tmp_path):
    cmd = [sys.executable, "-m", "clipmg.train.fit_observer", "--data", str(SHARED), "--check"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "matches a refit" in p.stdout
    # a profile that differs from the fit is named, in one line, exit 2
    d = load_profile("openpose").to_dict()
    d["grid_sw"] = float(d["grid_sw"]) * 2  # type: ignore[arg-type]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    p = subprocess.run(cmd + ["--out", str(bad)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "differs from a refit in grid_sw" in p.stderr


def test_profiles_round_trip_through_json():
    p = load_profile("openpose")
    q = ObserverProfile.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q.to_dict() == p.to_dict()
    assert q.conf_quantiles.shape == (137, len(QUANTILES))
