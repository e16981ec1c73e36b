"""The real-data report on the shared real iMiGUE samples, and the keypoint statistics behind it."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from clipmg.model.keypoint_stats import (
    LSHO,
    LWRI,
    NOSE,
    RSHO,
    RWRI,
    frame_scale,
    hands_near_face,
    keypoint_statistics,
    labels_from_segments,
    nearer_wrist_to_nose,
)
from clipmg.train.real_data import COLUMNS

CLASSES_298 = {
    "illustrative": 13,
    "touch face": 5,
    "touch other face part": 3,
    "bite lip": 3,
    "move torso": 3,
    "shake shoulder": 2,
    "touch chin": 2,
    "scratch arm": 1,
    "touch neck": 1,
}  # shared/data/README.md


def _person(t: int, shoulder_px: float = 100.0) -> np.ndarray:
    kp = np.zeros((t, 137, 3), np.float32)
    kp[:, RSHO] = (200 - shoulder_px / 2, 300, 0.9)
    kp[:, LSHO] = (200 + shoulder_px / 2, 300, 0.9)
    kp[:, 1] = (200, 300, 0.9)
    kp[:, NOSE] = (200, 200, 0.9)
    kp[:, RWRI] = (150, 500, 0.8)
    kp[:, LWRI] = (250, 500, 0.8)
    return kp


def test_statistics_by_hand():
    """Lengths in shoulder widths, speeds a second, jitter of a noiseless line is 0."""
    t, fps = 50, 10.0
    kp = _person(t)
    kp[:, RWRI, 0] = 150 + np.arange(t) * 4.0  # the right wrist moves 4 px a frame: 0.4 shoulder widths/s
    labels = labels_from_segments(t, [(3, 10, 39)])
    s = keypoint_statistics(kp, fps, labels)
    assert s["gesture_frames"] == 30 and s["idle_frames"] == 20
    assert s["wrist_speed_p90"] == pytest.approx(0.4, rel=1e-5)  # the left wrist rests: p50 is lower
    assert s["jitter"] == pytest.approx(0.0, abs=1e-6)
    assert s["sway"] == pytest.approx(0.0, abs=1e-6) and s["sway_windows"] == 2  # idle 0-9, 40-49; still neck
    assert s["missing"]["r_wrist"] == 0 and s["missing"]["r_ear"] == 1.0
    assert s["hand_missing"] == {"left": 1.0, "right": 1.0}
    # nearer wrist to the nose at frame 0: (150, 500) vs (200, 200) -> hypot(50, 300) px = 3.04 widths
    d = nearer_wrist_to_nose(kp, frame_scale(kp))
    assert d[0] == pytest.approx(math.hypot(50, 300) / 100, rel=1e-5)


def test_hands_at_the_face_by_hand():
    """A hand centre 0.3 shoulder widths above the nose is at the face; one at the lap is not; a hand
    of two points is not a hand; every frame counts, labelled or not."""
    kp = _person(4)
    for off, (x, y) in ((95, (210, 170)), (116, (150, 500))):  # left hand at the brow, right on the lap
        kp[:, off : off + 21] = (x, y, 0.5)
    kp[3, 116 + 2 :, 2] = 0  # frame 3: the right hand keeps two points
    above = hands_near_face(kp, frame_scale(kp))
    assert above.shape == (4 + 3,)  # the left hand in 4 frames, the right in 3
    assert np.count_nonzero(np.isfinite(above)) == 4 and np.nanmedian(above) == pytest.approx(0.3)
    s = keypoint_statistics(kp, 25.0, labels_from_segments(4, [(3, 0, 1)]))
    assert s["near_face"] == pytest.approx(4 / 7) and s["near_face_above"] == pytest.approx(0.3)


def test_statistics_see_noise_and_misses():
    rng = np.random.default_rng(0)
    kp = _person(200)
    kp[:, :, :2] += rng.normal(0, 2.0, (200, 137, 2)).astype(np.float32)  # 0.02 shoulder widths of noise
    kp[::10, LWRI] = 0  # one frame in ten without the left wrist
    s = keypoint_statistics(kp, 25.0)
    # second difference of i.i.d. noise: sigma * sqrt(6) per axis; its 2-D norm's median ~ 0.058
    assert 0.04 < s["jitter"] < 0.08
    assert s["missing"]["l_wrist"] == pytest.approx(0.1)
    assert s["sway"] > 0.01
    with pytest.raises(ValueError, match=r"\(T, 137, 3\)"):
        keypoint_statistics(np.zeros((4, 25, 3)), 25.0)


def test_touch_face_clip_of_video_298(shared_data):
    """shared/data/README.md: in the touch-face clip (frames 168-257) the nearer wrist is 0.5
    shoulder widths from the nose, against 0.97 outside it."""
    from clipmg.model.keypoint_files import read_openpose_folder

    kp = read_openpose_folder(shared_data / "imigue-298-skeleton" / "298" / "openpose", "298")
    d = nearer_wrist_to_nose(kp, frame_scale(kp))
    inside = np.zeros(len(kp), bool)
    inside[168:258] = True
    assert np.nanmedian(d[inside]) == pytest.approx(0.5, abs=0.03)
    assert np.nanmedian(d[~inside]) == pytest.approx(0.97, abs=0.05)


def test_real_data_report(shared_data, tmp_path):
    """The command as users and docs/real-data.md run it, on the demo model and MediaPipe."""
    pytest.importorskip("mediapipe")
    md, js = tmp_path / "real-data.md", tmp_path / "real-data.json"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipmg.train.real_data",
            "--data",
            str(shared_data),
            "--markdown",
            str(md),
            "--json",
            str(js),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr == "", p.stderr  # quiet: MediaPipe's native chatter is off without -v
    r = json.loads(js.read_text())
    v = r["video_298"]
    assert v["frames"] == 10534 and v["frames_with_person"] == 10534 and v["clips"] == 33
    assert v["classes"] == CLASSES_298
    assert v["skipped"] == "nothing skipped"
    seg = r["segments"]["segments"]
    assert [(s["clip"], s["start_frame"], s["end_frame"], s["true_label"]) for s in seg] == [
        ("covering-face.gif", 0, 9, "fold arm"),
        ("covering-face.gif", 12, 20, "cover face"),
        ("folding-arms.gif", 0, 17, "play things"),
        ("folding-arms.gif", 18, 42, "fold arm"),
    ]
    for s in seg:
        assert len(s["topk"]) == 3 and s["person_fraction"] == 1.0
        assert s["top1_hit"] == (s["topk"][0]["label"] == s["true_label"])
    assert r["segments"]["demo"] is True and r["segments"]["model"]["preset"] == "clipmg-tiny"
    assert r["segments"]["top1"] == sum(s["top1_hit"] for s in seg)
    k = r["keypoints"]
    assert tuple(k) == COLUMNS  # the table's columns, in its order (each is read by name below)
    for name, s in k.items():
        assert 0.9 <= s["person"] <= 1.0, name
        assert s["jitter"] is not None and s["jitter"] > 0, name
    assert k["openpose_298"]["hand_missing"]["right"] == pytest.approx(693 / 10534, abs=1e-4)
    # the observer fitted to real OpenPose is closer to it than the guessed one, statistic by statistic
    real, v1, fitted = k["openpose_298"], k["synthetic"], k["synthetic_fitted"]
    for get in (
        lambda s: s["jitter"],
        lambda s: s["conf_median"]["r_shoulder"],
        lambda s: s["conf_median"]["hand points"],
        lambda s: s["conf_p10"]["hand points"],
        lambda s: s["missing"]["r_ear"],
        lambda s: s["hand_missing"]["right"],
    ):
        assert abs(get(fitted) - get(real)) < abs(get(v1) - get(real))
    assert fitted["jitter"] == pytest.approx(real["jitter"], rel=0.35)
    # the posture fitted to real people is closer to them than set v1's body, statistic by statistic; the
    # resting hand-to-nose distance, which it does not fit, follows
    seated = k["synthetic_seated"]
    for get in (
        lambda s: s["upper_arm"],
        lambda s: s["forearm"],
        lambda s: s["hand"],
        lambda s: s["rest_fingers"],
        lambda s: s["rest_hand"],
        lambda s: s["rest_palm"],
        lambda s: s["rest_thumb"],
        lambda s: s["rest_lowest"],
        lambda s: s["neck_nose"],
        lambda s: s["rest_wrist"]["out"],
        lambda s: s["rest_wrist"]["down"],
        lambda s: s["rest_elbow"]["out"],
        lambda s: s["hand_face_idle"],
        lambda s: s["shoulder_drop"],
        lambda s: s["ear_rise"],
        lambda s: s["head_turn"],
        lambda s: s["elbows_off_centre"],
        lambda s: s["head_motion"]["p50"],
        lambda s: s["head_motion"]["p90"],
    ):
        assert abs(get(seated) - get(real)) < abs(get(fitted) - get(real))
    assert seated["hand_face_idle"] == pytest.approx(real["hand_face_idle"], rel=0.15)
    # a real labelled clip starts and ends mid-movement, in video 298 and in the GIFs; set v1's timing
    # puts the fastest movement a quarter of a second inside, --timing straddle within a few hundredths
    straddled, gifs = k["synthetic_straddle"], k["mediapipe_gifs"]
    assert abs(real["move_at_start"]) <= 0.08 and abs(gifs["move_at_start"]) <= 0.08
    assert seated["move_at_start"] >= 0.16 and seated["move_at_end"] <= -0.16
    for end in ("move_at_start", "move_at_end"):
        assert abs(straddled[end] - real[end]) < abs(seated[end] - real[end])
    assert seated["hand"] == pytest.approx(real["hand"], rel=0.15)  # v1's hand was two thirds of a real one
    # the real speaker's hand at the face (read from every frame, no label) is at the brow, not the nose
    assert real["near_face"] == pytest.approx(0.044, abs=0.005)
    assert real["near_face_above"] == pytest.approx(0.35, abs=0.03)
    text = md.read_text()
    assert (
        "| statistic | synthetic, v1 observer | synthetic, fitted observer | synthetic, fitted observer and "
        "posture | the same, clip ends straddling the movements (`--timing straddle`) | real OpenPose (298) | "
        "MediaPipe" in text
    )
    assert f"**Top-1 {r['segments']['top1']} of 4" in text
    assert p.stdout.strip() == text.strip()


def test_real_data_report_refuses_a_folder_without_the_data(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "clipmg.train.real_data", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "does not hold the shared real data" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_the_probe_page_names_the_joints_that_sit_off_the_real_ones_at_rest():
    """``_inputs_at_rest`` names each joint whose drawn median lies more than ``OFF_PX`` from the real one."""
    from clipmg.train.probe import OFF_PX, _inputs_at_rest

    real = np.full((22, 2), 40.0)
    drawn = real.copy()
    drawn[0] += (OFF_PX + 1.0, 0.0)  # the nose, off
    drawn[12] += (0.0, OFF_PX - 1.0)  # the right thumb tip, within
    r = {
        "unlabelled": {"windows": 117, "inputs_median": real.tolist()},
        "synthetic": {"inputs_at_rest": {"clips": 9, "median": drawn.tolist(), "layout": "upper22", "image_size": 96}},
    }
    text = "\n".join(_inputs_at_rest(r))
    assert f"More than {OFF_PX:g} pixels off: Nose (+{OFF_PX + 1:.1f}, +0.0)." in text
    assert "| RHand4 | 40.0, 40.0 | +0.0, +2.0 |" in text and "96×96" in text
    drawn[0] = real[0]
    r["synthetic"]["inputs_at_rest"]["median"] = drawn.tolist()
    assert f"Every joint lies within {OFF_PX:g} pixels" in "\n".join(_inputs_at_rest(r))
    assert _inputs_at_rest({"unlabelled": {}, "synthetic": {}}) == []


def test_pose_probe_trains_on_synthetic_and_scores_every_real_clip(tmp_path, shared_data):
    """The probe's whole path, tiny (1 epoch, 2 subjects): the real clips are all scored, the page written."""
    js, md, synth = tmp_path / "probe.json", tmp_path / "probe.md", tmp_path / "synth"
    cmd = [sys.executable, "-m", "clipmg.train.probe", "--data", str(shared_data), "--epochs", "1", "--videos", "2"]
    # real-sized hands and clip ends straddling the movements: the variants' whole path
    cmd += ["--synth", str(synth), "--timing", "straddle", "--hands", "fitted"]
    p = subprocess.run(
        cmd + ["--quiet", "--json", str(js), "--markdown", str(md)], capture_output=True, text=True, timeout=900
    )
    assert p.returncode == 0, p.stderr[-2000:]
    made = json.loads((synth / "synth.json").read_text())["config"]
    assert (made["hands"], made["timing"]) == ("fitted", "straddle")
    assert "real-sized hands, `--hands fitted`; clip ends straddling the movements" in md.read_text()
    # the kept set is not reused for another kind of hands or timing
    quick = dict(capture_output=True, text=True, timeout=120)
    again = subprocess.run(cmd[:-1] + ["v1", "--quiet"], **quick)
    assert again.returncode == 2 and "was written with --hands fitted, not v1" in again.stderr
    again = subprocess.run(cmd[:-4] + ["--timing", "v1", "--hands", "fitted", "--quiet"], **quick)
    assert again.returncode == 2 and "was written with --timing straddle, not v1" in again.stderr
    r = json.loads(js.read_text())
    syn = r["synthetic"]
    assert syn["train_clips"] + syn["val_clips"] == 2 * 24
    # its own training subjects' clips, every one read once without augmentation
    assert syn["train_top1"] * syn["train_clips"] == pytest.approx(round(syn["train_top1"] * syn["train_clips"]))
    per_class = syn["val_per_class"]  # right / clips of every class the held-out subject has, weakest first
    assert sum(n for _, n in per_class.values()) == syn["val_clips"]
    assert sum(k for k, _ in per_class.values()) == round(syn["val_top1"] * syn["val_clips"])
    recalls = [k / n for k, n in per_class.values()]
    assert recalls == sorted(recalls)
    assert f"| synthetic training subjects ({syn['train_clips']} clips, the probe's own) |" in md.read_text()
    assert "## On drawn people" in md.read_text()
    assert len(r["synthetic"]["class_names"]) == 24
    real = r["real"]
    assert real["scored"] == 33 and len(real["clips"]) == 33
    assert set(real["per_class_recall"]) == set(CLASSES_298)  # every class of video 298 is a v2 class
    assert real["majority_class"] == "illustrative" and real["majority_top1"] == pytest.approx(13 / 33)
    assert all(len(c["top3"]) == 3 for c in real["clips"])
    assert real["top1"] == sum(c["top3"][0] == c["label"] for c in real["clips"])
    assert "| **real, video 298** (33 clips, 9 classes)" in md.read_text()
    idle = r["unlabelled"]  # every window mined outside the labelled clips, each answered once
    assert idle["windows"] > 50 and sum(idle["answers"].values()) == idle["windows"]
    assert idle["no_gesture"] == idle["answers"].get("no gesture", 0)
    assert "answered *no gesture***" in md.read_text()
    # what the skeleton branch reads at rest, joint by joint, for the real person and the drawn people
    rest = syn["inputs_at_rest"]
    assert rest["clips"] > 0 and rest["layout"] == "upper22" and rest["image_size"] == 96
    assert np.array(rest["median"]).shape == np.array(idle["inputs_median"]).shape == (22, 2)
    assert np.isfinite(idle["inputs_median"]).all() and (0 < np.array(idle["inputs_median"])).all()
    assert "## What the skeleton branch reads at rest (no label read)" in md.read_text()
    assert md.read_text().count("\n| RHand4 | ") == 1
    bad = subprocess.run(cmd[:5] + ["--epochs", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--epochs must be at least 1" in bad.stderr
