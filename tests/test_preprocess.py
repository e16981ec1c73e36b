"""Preprocessing shared by training and inference: sampling, crops, layouts, heatmaps, relevance."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from clipmg.model import load_config
from clipmg.model.crop import PersonCropTracker, center_box, crop_image, crop_keypoints, person_box
from clipmg.model.heatmaps import heatmap_volume, relevance_map
from clipmg.model.layouts import (
    LAYOUTS,
    extract_layout,
    from_body25_hands,
    from_light_hand,
    joint_names,
    layout_indices,
    validate_keypoints,
)
from clipmg.model.preprocess import prepare_frame, prepare_window
from clipmg.model.sampling import clip_samples, rgb_positions, segment_indices


def test_segment_sampling():
    idx = segment_indices(100, 163, 32, "center")  # 64 frames -> every other frame, centred
    assert idx.tolist() == list(range(101, 164, 2))
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = segment_indices(10, 200, 32, "random", rng)
        assert (np.diff(r) >= 0).all() and r[0] >= 10 and r[-1] <= 200
        seg = np.linspace(0, 191, 33)
        assert all(10 + math.floor(seg[k]) <= r[k] <= 10 + math.ceil(seg[k + 1]) for k in range(32))
    short = segment_indices(5, 9, 32)  # shorter than 32 frames: repeats, stays sorted and inside
    assert len(short) == 32 and short.min() == 5 and short.max() == 9 and (np.diff(short) >= 0).all()
    with pytest.raises(ValueError, match="before its start"):
        segment_indices(10, 3)
    assert rgb_positions().tolist() == [2, 6, 10, 14, 18, 22, 26, 30]
    pose, rgb = clip_samples(0, 63)
    assert (rgb == pose[2::4]).all()


def test_layouts():
    assert len(LAYOUTS["upper22"]) == 22 and len(LAYOUTS["body25_hands"]) == 67 and len(LAYOUTS["openpose137"]) == 137
    names = joint_names("upper22")
    assert names[:3] == ("Nose", "Neck", "RShoulder") and names[12] == "RHand4" and names[17] == "LHand4"
    # right fingertips come from the right hand block (116..136), left from 95..115
    assert layout_indices("upper22")[12:17].tolist() == [120, 124, 128, 132, 136]
    assert layout_indices("upper22")[17:].tolist() == [99, 103, 107, 111, 115]
    kp67 = np.random.default_rng(0).random((4, 67, 3)).astype(np.float32)
    kp137 = from_body25_hands(kp67)
    assert np.array_equal(extract_layout(kp137, "body25_hands"), kp67)
    kp35 = np.random.default_rng(1).random((4, 35, 3)).astype(np.float32)
    up = extract_layout(from_light_hand(kp35), "upper22")
    assert np.array_equal(up[:, 12:17], kp35[:, 25:30]) and np.array_equal(up[:, 17:], kp35[:, 30:35])
    with pytest.raises(ValueError, match="choose one of"):
        extract_layout(kp137, "coco17")
    with pytest.raises(ValueError, match=r"\(\.\.\., 137, 3\)"):
        extract_layout(kp67, "upper22")


def test_validate_keypoints_messages():
    ok = np.zeros((32, 22, 3), np.float32)
    validate_keypoints(ok, 22, 32)
    with pytest.raises(ValueError, match="expected 32 frames, got 31"):
        validate_keypoints(ok[:31], 22, 32)
    with pytest.raises(ValueError, match="expected 22 joints, got 21"):
        validate_keypoints(ok[:, :21], 22, 32)
    bad = ok.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        validate_keypoints(bad)
    bad = ok.copy()
    bad[3, 4, 2] = -1
    with pytest.raises(ValueError, match="negative confidence"):
        validate_keypoints(bad)


def test_heatmap_hand_computed():
    # one joint at input pixel (40, 24) of a 96-px input; canvas 24 -> canvas coords (9.5, 5.5)
    kp = torch.zeros(1, 32, 2, 3)
    kp[0, :4, 0] = torch.tensor([40.0, 24.0, 0.8])
    kp[0, :2, 1] = torch.tensor([10.0, 10.0, 0.0])  # confidence 0: absent
    kp[0, 2:4, 1] = torch.tensor([10.0, 10.0, 5e-4])  # below the 1e-3 threshold: absent
    vol = heatmap_volume(kp, image_size=96, canvas=24, sigma=0.6, rgb_frames=8)
    assert vol.shape == (1, 2, 8, 24, 24)
    # H(u, v) = c * exp(-((u - 9.5)^2 + (v - 5.5)^2) / (2 * 0.36)); cell (u=9, v=5) and (u=10, v=6)
    expect = 0.8 * math.exp(-(0.25 + 0.25) / 0.72)
    assert vol[0, 0, 0, 5, 9].item() == pytest.approx(expect, rel=1e-5)
    assert vol[0, 0, 0, 6, 10].item() == pytest.approx(expect, rel=1e-5)
    assert vol[0, 0, 0, 5, 11].item() == pytest.approx(0.8 * math.exp(-(2.25 + 0.25) / 0.72), rel=1e-5)
    assert vol[0, 1].abs().max().item() == 0.0  # zero-confidence joint -> zero maps
    assert vol[0, 0, 1:].abs().max().item() == 0.0  # windows without the joint are empty
    # a window is the mean of its 4 samples: half the samples present -> half the height
    kp[0, 4:6, 0] = torch.tensor([40.0, 24.0, 0.8])  # window 1 = samples 4..7, two of them present
    vol2 = heatmap_volume(kp, 96, 24, 0.6, 8)
    assert vol2[0, 0, 1, 5, 9].item() == pytest.approx(0.5 * expect, rel=1e-5)


def test_relevance_peaks_under_the_moving_joint():
    s, patch = 96, 16  # 6x6 patches
    kp = torch.zeros(1, 32, 2, 3)
    kp[0, :, 0] = torch.tensor([24.0, 24.0, 1.0])  # still joint at patch (row 1, col 1)
    t = torch.arange(32, dtype=torch.float32)
    kp[0, :, 1, 0] = 72.0 + 4.0 * torch.sin(t * 1.5)  # moving joint around (72, 72): patch (4, 4)
    kp[0, :, 1, 1] = 72.0
    kp[0, :, 1, 2] = 1.0
    r = relevance_map(kp, s, patch, sigma=12.0, alpha=0.1, rgb_frames=8)
    assert r.shape == (1, 8, 36)
    for w in range(8):
        assert int(r[0, w].argmax()) == 4 * 6 + 4
        assert r[0, w, 1 * 6 + 1] < 0.2 * r[0, w, 4 * 6 + 4]  # the still joint weighs only alpha-ish
    # nobody confident anywhere -> uniform relevance
    assert torch.equal(relevance_map(torch.zeros(1, 32, 2, 3), s, patch), torch.ones(1, 8, 36))


def test_crop_moves_pixels_and_keypoints_together():
    img = np.zeros((120, 200, 3), np.uint8)
    pts = np.array([[150.0, 30.0, 1.0], [60.0, 90.0, 0.9]], np.float32)
    for x, y, _ in pts:
        cv2.circle(img, (int(x), int(y)), 3, (255, 255, 255), -1)
    for box in (center_box(200, 120), person_box(pts, 200, 120, 1.25), (-20.0, -10.0, 260.0)):
        crop = crop_image(img, box, 64)
        ck = crop_keypoints(pts, box, 64)
        assert crop.shape == (64, 64, 3)
        for x, y, _c in ck:
            if 1 <= x < 63 and 1 <= y < 63:
                assert (
                    crop[
                        int(round(y - 0.5)) - 1 : int(round(y - 0.5)) + 2,
                        int(round(x - 0.5)) - 1 : int(round(x - 0.5)) + 2,
                    ].max()
                    > 100
                ), (box, x, y)
        assert np.array_equal(ck[:, 2], pts[:, 2])


def test_person_tracker_is_causal_and_smooth():
    tr = PersonCropTracker(640, 480, scale=1.25, smoothing=0.5)
    k = np.array([[100.0, 100.0, 1.0], [200.0, 200.0, 1.0]], np.float32)
    b1 = tr.update(k)
    b2 = tr.update(k + [100.0, 0.0, 0.0])
    assert b1[2] == pytest.approx(125.0)
    assert b2[0] == pytest.approx(b1[0] + 50.0)  # half-way to the new box
    assert tr.update(np.zeros((2, 3), np.float32)) == b2  # nobody: keep the last box


def test_prepare_window_and_errors():
    cfg = load_config("clipmg-tiny")
    frames = np.random.default_rng(0).integers(0, 255, (8, 120, 160, 3), dtype=np.uint8)
    kp = np.random.default_rng(1).random((32, 22, 3)).astype(np.float32) * [160, 120, 1]
    images, mkp, boxes = prepare_window(frames, kp, cfg)
    assert images.shape == (8, 3, 96, 96) and images.dtype == np.float32
    assert mkp.shape == (32, 22, 3) and boxes[0] == center_box(160, 120)
    assert mkp[:, :, 0] == pytest.approx((kp[:, :, 0] - 20.0) * 96 / 120, abs=1e-3)
    with pytest.raises(ValueError, match="expected 8 RGB frames"):
        prepare_window(frames[:7], kp, cfg)
    with pytest.raises(ValueError, match="expected 22 joints"):
        prepare_window(frames, kp[:, :20], cfg)
    with pytest.raises(ValueError, match="uint8 RGB frame"):
        prepare_frame(frames[0, :, :, :2], center_box(160, 120), cfg)
    person = cfg.replace(preprocess=cfg.preprocess.__class__(crop="person"))
    images2, mkp2, boxes2 = prepare_window(frames, kp, person)
    assert boxes2[0] != boxes[0] and images2.shape == images.shape
