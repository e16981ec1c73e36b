"""Where a drawn clip's label lies on its movement (``SynthConfig.timing``): "v1" holds the whole
reach, hold and return inside the label; "straddle" starts the label half-way through the reach and
ends it half-way through the return, as video 298's labelled clips lie on its speaker's movements."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clipmg.model.keypoint_stats import hand_speed, keypoint_statistics, label_runs, movement_at_ends
from clipmg.model.synthetic import (
    Episode,
    SynthConfig,
    Take,
    make_episode,
    motion_episode,
    plan_video,
    set_config,
    straddle,
    straddled_windows,
    synthetic_stream,
)


def _frames(cfg: SynthConfig, seed: int, n: int):
    return list(itertools.islice(synthetic_stream(seed, cfg), n))


def _gesture(start: int, end: int, cls: str = "touch chin", ramp=(0.3, 0.2)) -> Episode:
    return Episode(start, end, cls, ramp=ramp)


def test_straddle_moves_the_reach_and_return_out_across_the_label():
    eps = [Episode(0, 19, None), _gesture(20, 60), Episode(61, 90, None), _gesture(91, 130), Episode(131, 132, None)]
    out = straddle(eps)
    assert [(e.start, e.end, e.cls) for e in out] == [(e.start, e.end, e.cls) for e in eps]  # labels unchanged
    first, second = out[1], out[3]
    # the reach (0.3 of the 40-frame label: 12 frames) starts 6 frames early, the return (8) ends 4 late
    assert (first.lead, first.tail) == (6, 4)
    span = 40 + 6 + 4
    assert first.ramp == pytest.approx((12 / span, 8 / span))  # the same frames, a share of a longer movement
    # the last gap holds 2 frames: the second clip's return gets them, not the 4 it wants...
    assert second.tail == 2 and second.lead == 6
    # ...and a gap too short for both splits in proportion, never overlapping
    tight = straddle([_gesture(0, 40), Episode(41, 45, None), _gesture(46, 86, ramp=(0.3, 0.3))])
    assert tight[0].tail + tight[2].lead <= 5 and tight[0].tail >= 1 and tight[2].lead >= 2
    # a clip with no gap beside it keeps that end; so does a no-gesture clip, which does not move
    back_to_back = straddle([_gesture(0, 40), _gesture(41, 81), Episode(82, 120, None)])
    assert (back_to_back[0].lead, back_to_back[0].tail, back_to_back[1].lead) == (0, 0, 0)
    assert back_to_back[1].tail > 0
    still = straddle([Episode(0, 19, None), _gesture(20, 60, "no gesture"), Episode(61, 90, None)])
    assert (still[1].lead, still[1].tail) == (0, 0)


def test_gap_frames_take_the_neighbouring_gestures_movement():
    eps = straddle([Episode(0, 19, None), _gesture(20, 60), Episode(61, 90, None)])
    lead, tail = eps[1].lead, eps[1].tail
    assert motion_episode(eps, 0, 20 - lead - 1) is eps[0]
    assert motion_episode(eps, 0, 20 - lead) is eps[1]  # the reach starts in the gap before
    assert motion_episode(eps, 2, 60 + tail) is eps[1] and motion_episode(eps, 2, 61 + tail) is eps[2]
    assert motion_episode(eps, 1, 40) is eps[1]


def test_v1_timing_plans_no_straddle_and_straddle_changes_no_label():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    classes = ["touch chin", "fold arm", "no gesture", "rub eyes"]
    assert set_config("v2").timing == "straddle" and set_config("v1").timing == "v1"
    v1 = plan_video(rng_a, classes, set_config("v2", timing="v1"))
    st = plan_video(rng_b, classes, set_config("v2", timing="straddle"))
    assert all(e.lead == 0 and e.tail == 0 for e in v1)
    assert [(e.start, e.end, e.cls) for e in v1] == [(e.start, e.end, e.cls) for e in st]
    assert any(e.lead > 0 for e in st) and any(e.tail > 0 for e in st)
    # the stream draws the same clips and labels either way; only the movements move
    a = _frames(set_config("v2", timing="v1"), 2, 300)
    b = _frames(set_config("v2", timing="straddle"), 2, 300)
    assert [f.label for f in a] == [f.label for f in b]
    assert any(not np.array_equal(x.keypoints, y.keypoints) for x, y in zip(a, b))
    assert make_episode(np.random.default_rng(0), "touch chin", 0, 30).lead == 0


def test_the_stream_straddles_a_chunk_at_a_time_as_the_written_set_does_at_once():
    """The stream plans a gap and a clip at a time (``straddled_windows``); the written set a video at
    once (``plan_video``). Every episode comes out the same either way."""
    classes = ["touch chin", "rub eyes", "no gesture", "fold arm", "touch forehead", "scratch arm"] * 2
    planned = plan_video(np.random.default_rng(8), classes, set_config("v2", timing="v1"))
    whole = straddle(planned)
    assert whole == plan_video(np.random.default_rng(8), classes, set_config("v2", timing="straddle"))
    ends = [i + 1 for i, e in enumerate(planned) if e.cls is not None]  # the stream's chunks end on a clip
    chunks = [planned[a:b] for a, b in zip([0] + ends, ends + [len(planned)]) if b > a]
    rendered = [e for window, first, stop in straddled_windows(iter(chunks)) for e in window[first:stop]]
    assert rendered == whole and any(e.lead for e in whole) and any(e.tail for e in whole)


def test_the_hands_move_in_the_gaps_beside_a_straddled_clip():
    cfg = set_config("v1", timing="straddle")
    eps = plan_video(np.random.default_rng(3), ["touch chin", "rub eyes", "touch forehead"], cfg)
    frames = list(Take(4, 1, cfg).frames(eps))
    labels, kp = np.array([f.label for f in frames]), np.stack([f.keypoints for f in frames])
    # the hands move in the gap frames next to each clip: the reach before, the return after
    speed = hand_speed(kp, cfg.fps)
    for first, last in label_runs(labels):
        if first > 2:
            assert np.nanmax(speed[first - 3 : first]) > 0.3
        if last + 3 < len(kp):
            assert np.nanmax(speed[last : last + 3]) > 0.3


def test_movement_at_ends_places_a_movement_to_the_frame():
    """A hand that jumps once: the statistic puts the jump where it was drawn, before or after a label."""
    t, fps = 60, 25.0
    kp = np.zeros((t, 137, 3), np.float32)
    kp[:, 2] = (100, 100, 1)  # shoulders 100 px apart
    kp[:, 5] = (200, 100, 1)
    for off in (95, 116):
        kp[:, off : off + 21] = (150, 200, 1)
    labels = np.full(t, -1)
    labels[20:40] = 3
    kp[17:, 95 : 95 + 21, 0] += 50  # the left hand moves from frame 16 to 17: 4 frames before the first (20)
    kp[44:, 116 : 116 + 21, 1] -= 60  # the right hand from 43 to 44: 4 frames after the last (39)
    assert label_runs(labels) == [(20, 39)]
    start, end = movement_at_ends(kp, labels, fps)
    assert start.tolist() == pytest.approx([-4 / fps]) and end.tolist() == pytest.approx([4 / fps])
    stats = keypoint_statistics(kp, fps, labels)
    assert stats["move_at_start"] == pytest.approx(-4 / fps) and stats["move_at_end"] == pytest.approx(4 / fps)
    # a clip whose ends see no movement is not placed
    still = kp.copy()
    still[:, 95:137, :2] = (150, 200)
    assert np.isnan(keypoint_statistics(still, fps, labels)["move_at_start"])


def test_straddled_clips_put_the_fastest_movement_at_the_labels_ends():
    """On the drawn stream, measured as the real-data report measures video 298: v1 places the fastest
    movement about a quarter of a second inside each end, straddle within a frame or two of it."""
    medians = {}
    for timing in ("v1", "straddle"):
        cfg = set_config("v2", timing=timing)
        frames = _frames(cfg, 1, 900)
        kp = np.stack([f.observed for f in frames])
        starts, ends = movement_at_ends(kp, np.array([f.label for f in frames]), cfg.fps)
        assert len(starts) >= 8 and len(ends) >= 8
        medians[timing] = float(np.median(starts)), float(np.median(ends))
    assert medians["v1"][0] >= 0.12 and medians["v1"][1] <= -0.12
    assert abs(medians["straddle"][0]) <= 0.08 and abs(medians["straddle"][1]) <= 0.08
