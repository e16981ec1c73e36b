"""Synthetic set v2: the scripts for iMiGUE's frequent classes, its class mix and a talking person."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clipmg.model.keypoint_stats import frame_scale
from clipmg.model.synthetic import (
    IMIGUE_SHARE,
    SYNTH_CLASSES,
    SYNTH_CLASSES_V2,
    V2_ADDED,
    SynthConfig,
    Take,
    _rng,
    imigue_coverage,
    make_episode,
)
from clipmg.train.synth import MIX_FLOOR, mix_counts

NOSE, NECK, RSHO, LSHO, RWRI, LWRI = 0, 1, 2, 5, 4, 7
MOUTH_TOP, MOUTH_BOTTOM = 25 + 51, 25 + 57  # the outer lip's middle points


def _clip(cls: str | None, seed: int = 2, frames: int = 40, talking: bool = True, scripts: str = "v1") -> np.ndarray:
    """Exact keypoints ``(frames, 137, 3)`` of one clip of ``cls`` (None: idle) by one subject."""
    take = Take(seed, 1, SynthConfig(classes=SYNTH_CLASSES_V2, talking=talking, scripts=scripts))
    ep = replace(make_episode(_rng(seed, 7), cls, 0, frames), talking=talking, scripts=scripts)
    return np.stack([take.render(f, ep)[1] for f in range(frames)])


def _sw(kp: np.ndarray) -> float:
    return float(np.median(frame_scale(kp)))


def test_v2_covers_ninety_percent_of_imigue_clips_and_keeps_v1():
    assert SYNTH_CLASSES_V2[: len(SYNTH_CLASSES) - 1] == SYNTH_CLASSES[:-1]  # v1's labels keep their indices
    assert SYNTH_CLASSES_V2[-1] == "no gesture" and len(SYNTH_CLASSES_V2) == 24
    assert imigue_coverage(SYNTH_CLASSES_V2) >= 90.0
    assert imigue_coverage(SYNTH_CLASSES) < 40.0
    assert all(c in IMIGUE_SHARE for c in V2_ADDED)


@pytest.mark.parametrize("cls", V2_ADDED)
def test_every_v2_script_moves_what_its_class_names(cls):
    rest, kp = _clip(None), _clip(cls)
    mid = slice(15, 25)  # the held part of the clip (reach and return take 20-35 % each)
    sw = _sw(rest)

    def wrist_to(point: int, k: np.ndarray) -> float:
        d = [np.linalg.norm(k[mid, w, :2] - k[mid, point, :2], axis=1) for w in (RWRI, LWRI)]
        return float(np.median(np.minimum(*d))) / sw

    if cls == "touch other face part":
        assert wrist_to(NOSE, kp) < 0.7 < wrist_to(NOSE, rest)
    elif cls == "touch neck":
        assert wrist_to(NECK, kp) < 0.6 < wrist_to(NECK, rest)
    elif cls == "cross finger":
        gap = np.linalg.norm(kp[mid, RWRI, :2] - kp[mid, LWRI, :2], axis=1).mean() / sw
        rest_gap = np.linalg.norm(rest[mid, RWRI, :2] - rest[mid, LWRI, :2], axis=1).mean() / sw
        assert gap < 0.5 * rest_gap
    elif cls == "illustrative":  # the hands rise off the desk and beat
        assert kp[mid, RWRI, 1].min() < rest[mid, RWRI, 1].min() or kp[mid, LWRI, 1].min() < rest[mid, LWRI, 1].min()
        speed = np.abs(np.diff(kp[mid, [RWRI, LWRI], :2], axis=0)).sum(-1).max() / sw
        assert speed > 0.02
    elif cls == "bite lip":  # the mouth is pressed thin; the hands stay down
        h = np.abs(kp[mid, MOUTH_BOTTOM, 1] - kp[mid, MOUTH_TOP, 1]).mean()
        h_rest = np.abs(rest[mid, MOUTH_BOTTOM, 1] - rest[mid, MOUTH_TOP, 1]).mean()
        assert h < 0.6 * h_rest
        assert np.allclose(kp[mid, RWRI], rest[mid, RWRI], atol=1e-6)
    elif cls == "move torso":
        assert np.abs(kp[mid, NECK, 0] - rest[mid, NECK, 0]).mean() / sw > 0.1
    elif cls == "sit straight":
        assert (rest[mid, NECK, 1] - kp[mid, NECK, 1]).mean() / sw > 0.08
    elif cls == "deep breath":
        shoulders = kp[mid, [RSHO, LSHO], 1].mean() - rest[mid, [RSHO, LSHO], 1].mean()
        assert -shoulders / sw > 0.05  # the shoulders rise (y up)


@pytest.mark.parametrize(
    "pair", [("touch face", "rub eyes"), ("minaret hand", "play things"), ("touch chest", "adjust tie")]
)
def test_v2_scripts_give_set_v1_look_alikes_places_of_their_own(pair):
    """Set v1 drew each pair's hands in one place (told apart by a rub or by pixels only); v2's scripts
    move them apart: the held wrists lie a tenth of a shoulder width or more from the other class's."""
    for seed in (2, 3, 4):
        gap = {}
        for scripts in ("v1", "v2"):
            a, b = (_clip(c, seed=seed, scripts=scripts) for c in pair)
            mid = slice(15, 25)
            wrists = [k[mid][:, [RWRI, LWRI], :2].mean(0) for k in (a, b)]
            gap[scripts] = float(np.linalg.norm(wrists[0] - wrists[1], axis=-1).max()) / _sw(a)
        assert gap["v1"] < 0.03 < 0.1 < gap["v2"], (pair, seed, gap)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_v2_cover_face_puts_the_palms_over_the_face(seed):
    """A hand's anchor is on its fingers; set v1's *cover face* put the fingers on the face, so with a
    real-sized hand (``hands="fitted"``) the palms sat below the mouth. v2 puts the palms' centres
    (the middle of hand points 0, 1, 5, 9, 13, 17) between the brow and the mouth."""
    palm = np.array([0, 1, 5, 9, 13, 17])
    height = {}
    for scripts in ("v1", "v2"):
        cfg = SynthConfig(classes=SYNTH_CLASSES_V2, talking=True, scripts=scripts, posture="seated", hands="fitted")
        take = Take(seed, 1, cfg)
        ep = replace(make_episode(_rng(seed, 7), "cover face", 0, 40), talking=True, scripts=scripts)
        kp = np.stack([take.render(f, ep)[1] for f in range(40)])[15:25]  # the held part
        centres = np.stack([kp[:, off + palm, 1].mean(1) for off in (95, 116)])  # (2, frames)
        brow, mouth = kp[:, 25 + 19, 1], kp[:, MOUTH_BOTTOM, 1]
        height[scripts] = ((centres - brow) / (mouth - brow)).mean(axis=1)  # 0 at the brow, 1 at the mouth
    assert ((0 < height["v2"]) & (height["v2"] < 1)).all(), height
    assert (height["v1"] > 1).all(), height


def test_v2_move_torso_leans_the_shoulder_line_and_head_with_the_neck():
    """Set v1's *move torso* slid the upper body sideways with the shoulders level; v2's leans it
    (pivoting at the hips): the shoulder on the leaning side drops and the head goes further than the neck."""
    mid = slice(15, 25)
    for seed in (2, 3, 4):
        for scripts in ("v1", "v2"):
            rest, kp = _clip(None, seed=seed, scripts=scripts), _clip("move torso", seed=seed, scripts=scripts)
            sw = _sw(rest)
            neck_dx = (kp[mid, NECK, 0] - rest[mid, NECK, 0]).mean() / sw
            tilt = ((kp[mid, LSHO, 1] - kp[mid, RSHO, 1]) - (rest[mid, LSHO, 1] - rest[mid, RSHO, 1])).mean() / sw
            nose_dx = (kp[mid, NOSE, 0] - rest[mid, NOSE, 0]).mean() / sw
            assert abs(neck_dx) > (0.03 if scripts == "v1" else 0.1), (seed, scripts, neck_dx)
            if scripts == "v1":
                assert abs(tilt) < 0.01, (seed, tilt)
            else:  # sine of the lean 0.12-0.22: the shoulders' heights differ by that many shoulder widths
                assert 0.1 < abs(tilt) < 0.25 and np.sign(tilt) == np.sign(neck_dx), (seed, tilt, neck_dx)
                assert abs(nose_dx) > abs(neck_dx) * 1.1 and np.sign(nose_dx) == np.sign(neck_dx), (seed, nose_dx)


def test_a_talking_person_moves_mouth_and_head_but_v1_stays_still():
    talk, still = _clip(None, talking=True, frames=75), _clip(None, talking=False, frames=75)
    opening = np.abs(talk[:, MOUTH_BOTTOM, 1] - talk[:, MOUTH_TOP, 1])
    assert opening.max() > 1.5 * opening.min()
    assert np.ptp(talk[:, NOSE, 1] - talk[:, NECK, 1]) > 0  # nods
    still_opening = np.abs(still[:, MOUTH_BOTTOM, 1] - still[:, MOUTH_TOP, 1])
    assert np.ptp(still_opening) < 1e-4 and np.ptp(still[:, NOSE, 1] - still[:, NECK, 1]) < 1e-4  # float32 rounding


def test_class_mix_follows_imigue_with_a_floor():
    total = 1000
    uniform = mix_counts(SYNTH_CLASSES_V2, total)
    assert sum(uniform) == total and max(uniform) - min(uniform) <= 1
    counts = dict(zip(SYNTH_CLASSES_V2, mix_counts(SYNTH_CLASSES_V2, total, "imigue")))
    assert sum(counts.values()) == total
    assert counts["illustrative"] > counts["shake shoulder"] > counts["bite lip"] > counts["touch chin"]
    assert min(counts.values()) >= int(MIX_FLOOR / 100 * total * 0.9)  # the floor keeps rare classes
    assert counts["no gesture"] == pytest.approx(total / len(SYNTH_CLASSES_V2), abs=1)


def test_synth_command_writes_a_v2_set_in_imigue_proportions(tmp_path):
    from clipmg.train.index import build_index

    out = tmp_path / "v2"
    cmd = [sys.executable, "-m", "clipmg.train.synth", str(out), "--class-set", "v2", "--class-mix", "imigue"]
    p = subprocess.run(
        cmd + ["--videos", "2", "--clips-per-video", "25", "--no-video", "--quiet", "--observer", "openpose"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert (out / "classes.txt").read_text().splitlines() == list(SYNTH_CLASSES_V2)
    index = build_index(out, "openpose_json")
    labels = [c.label for c in index.clips]
    assert len(labels) == 50
    per_class = np.bincount(labels, minlength=len(SYNTH_CLASSES_V2))
    assert per_class[SYNTH_CLASSES_V2.index("illustrative")] == max(per_class)
    for bad, msg in (
        (["--class-set", "v3"], "--class-set must be one of v1, v2"),
        (["--class-mix", "x"], "--class-mix"),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "clipmg.train.synth", str(tmp_path / "b"), *bad], capture_output=True, text=True
        )
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and msg in p.stderr


def test_varied_pixels_move_the_keypoints_with_the_camera_and_repeat_for_a_seed():
    from clipmg.model.synthetic_pixels import camera_matrix, rotation_deg

    ep = make_episode(_rng(4, 1), "touch chin", 0, 30)
    plain = Take(4, 2, SynthConfig(classes=SYNTH_CLASSES_V2))
    a = Take(4, 2, SynthConfig(classes=SYNTH_CLASSES_V2, pixels="varied"))
    b = Take(4, 2, SynthConfig(classes=SYNTH_CLASSES_V2, pixels="varied"))
    assert plain.look is None and a.look == b.look and a.look is not None
    m = camera_matrix(a.look, 160, 120)
    assert abs(rotation_deg(m) - a.look.angle) < 1e-6
    for f in (0, 15):
        img0, kp0 = plain.render(f, ep)
        img_a, kp_a = a.render(f, ep)
        img_b, kp_b = b.render(f, ep)
        assert np.array_equal(img_a, img_b) and np.array_equal(kp_a, kp_b)  # a seed means the same frames
        drawn = kp0[:, 2] > 0
        assert np.allclose(kp_a[drawn, :2], kp0[drawn, :2] @ m[:, :2].T + m[:, 2], atol=1e-3)
        assert np.array_equal(kp_a[~drawn], kp0[~drawn])
        assert not np.array_equal(img0, img_a)


def test_varied_looks_differ_between_videos_and_use_photographs():
    from clipmg.model.synthetic_pixels import PHOTOS, photographs

    assert len(photographs()) == len(PHOTOS)
    looks = [Take(0, v, SynthConfig(pixels="varied")).look for v in range(1, 13)]
    assert sum(lk.photo >= 0 for lk in looks) >= 6  # three quarters of videos sit before a photograph
    assert len({lk.jpeg for lk in looks}) > 6 and len({round(lk.angle, 3) for lk in looks}) == 12
    assert any(lk.microphone for lk in looks) and any(lk.microphone is None for lk in looks)


def test_varied_pixels_say_what_to_install_without_scikit_image(monkeypatch):
    import importlib.util

    from clipmg.model import synthetic_pixels
    from clipmg.model.config import ConfigError

    synthetic_pixels.photographs.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(ConfigError, match="scikit-image ships; install it"):
            synthetic_pixels.photographs()
    finally:
        monkeypatch.undo()
        synthetic_pixels.photographs.cache_clear()
    with pytest.raises(ValueError, match="pixels must be one of v1, varied"):
        SynthConfig(pixels="photo")


def test_synth_command_writes_varied_pixels(tmp_path):
    """--pixels varied through clipmg-synth: the video differs from v1's, the keypoints move with the camera."""
    from clipmg.train.readers import read_openpose_folder
    from clipmg.train.readers_video import VideoReader

    out = {}
    for style in ("v1", "varied"):
        root = tmp_path / style
        cmd = [sys.executable, "-m", "clipmg.train.synth", str(root), "--videos", "1", "--clips-per-video", "2"]
        p = subprocess.run(cmd + ["--pixels", style, "--quiet"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert json.loads((root / "synth.json").read_text())["config"]["pixels"] == style
        frame = VideoReader(root / "001" / "001.mp4").read([0])[0]
        out[style] = (frame, read_openpose_folder(root / "001" / "openpose", "001"))
    (f1, k1), (f2, k2) = out["v1"], out["varied"]
    assert f1.shape == f2.shape and np.abs(f1.astype(int) - f2.astype(int)).mean() > 10
    assert k1.shape == k2.shape and not np.allclose(k1[:, 1, :2], k2[:, 1, :2])


def test_photographs_are_read_as_opencv_reads_them_without_warnings(capfd):
    """Pillow reads scikit-image's photographs pixel for pixel as OpenCV does, and libpng says nothing."""
    import importlib.util

    import cv2

    from clipmg.model.synthetic_pixels import PHOTOS, photographs

    photographs.cache_clear()
    photos = photographs()
    assert "libpng" not in capfd.readouterr().err
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    for name, photo in zip(PHOTOS, photos):
        ref = cv2.cvtColor(cv2.imread(str(folder / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert photo.dtype == np.uint8 and np.array_equal(photo, ref), name
