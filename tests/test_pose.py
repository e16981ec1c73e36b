"""Pose backends: MediaPipe on real people, OpenPose against a stand-in of its documented API,
replay from real OpenPose JSON, synthetic keypoints, target tracking and the SafePose guard."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clipmg.model.layouts import SOURCE_OFFSETS
from clipmg.stream.pose import (
    PoseBackendError,
    PoseResult,
    SafePose,
    TargetTracker,
    create_pose_backend,
    list_pose_backends,
    people_from_openpose_json,
)
from clipmg.stream.pose_mediapipe import mediapipe_to_openpose137
from clipmg.stream.ringbuffer import Frame

STAND_INS = Path(__file__).resolve().parent / "stand_ins"
NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI, MIDHIP = range(9)
REYE, LEYE, REAR, LEAR = 15, 16, 17, 18
LHAND, RHAND = SOURCE_OFFSETS["lhand"], SOURCE_OFFSETS["rhand"]


def frame(image: np.ndarray, seq: int = 0, keypoints=None) -> Frame:
    return Frame(image=image, seq=seq, t_mono=time.monotonic(), t_wall=time.time(), keypoints=keypoints)


def person(cx: float, cy: float, scale: float, conf: float = 0.9) -> np.ndarray:
    """A crude upright OpenPose person ``(137, 3)`` centred at (cx, cy)."""
    kp = np.zeros((137, 3), np.float32)
    body = {
        NOSE: (0, -1.5),
        NECK: (0, -1),
        RSHO: (-0.6, -1),
        LSHO: (0.6, -1),
        RWRI: (-0.7, 0.2),
        LWRI: (0.7, 0.2),
        MIDHIP: (0, 0.5),
    }
    for j, (dx, dy) in body.items():
        kp[j] = (cx + dx * scale, cy + dy * scale, conf)
    return kp


def read_gif(path: Path) -> list:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(np.ascontiguousarray(img[:, :, ::-1]))
    cap.release()
    return out


# ----------------------------------------------------------------------------- pure parts
def test_mediapipe_mapping_to_body25_by_hand():
    pose = np.zeros((33, 4), np.float32)
    pose[:, 3] = 0.9
    pose[:, :2] = 0.5
    pose[0, :2] = (0.5, 0.2)  # nose
    pose[11, :2] = (0.7, 0.4)  # person's left shoulder (image right)
    pose[12, :2] = (0.3, 0.4)  # person's right shoulder
    pose[12, 3] = 0.6
    pose[23, :2] = (0.6, 0.8)
    pose[24, :2] = (0.4, 0.8)
    pose[28, :2] = (0.4, 1.3)  # right ankle below the image
    lhand = np.full((21, 3), 0.75, np.float32)
    kp = mediapipe_to_openpose137(pose, lhand, None, width=200, height=100, hand_confidence=0.8)
    assert kp.shape == (137, 3) and kp.dtype == np.float32
    assert np.allclose(kp[NOSE], (100, 20, 0.9))
    assert np.allclose(kp[NECK], (100, 40, 0.6))  # mid(11, 12), min visibility
    assert np.allclose(kp[RSHO], (60, 40, 0.6)) and np.allclose(kp[LSHO], (140, 40, 0.9))
    assert np.allclose(kp[MIDHIP], (100, 80, 0.9))
    assert (kp[11] == 0).all()  # RAnkle outside the image: missing
    assert np.allclose(kp[LHAND : LHAND + 21], (150, 75, 0.8)) and (kp[RHAND:] == 0).all()
    assert (kp[25:95] == 0).all()  # no face from MediaPipe


def test_target_tracker_picks_largest_central_then_follows():
    tr = TargetTracker(max_jump=0.2, lost_after=3)
    small, big = person(50, 100, 10), person(300, 120, 40)
    assert tr.select(np.stack([small, big]), 400, 240) == 1
    # The target moves a little and another, larger person appears: keep the target.
    moved, huge = person(310, 125, 40), person(80, 100, 60)
    assert tr.select(np.stack([huge, moved]), 400, 240) == 1
    # The target leaves: nobody for a while (no instant switch), then reacquire.
    assert [tr.select(np.stack([huge]), 400, 240) for _ in range(3)] == [None, None, None]
    assert tr.select(np.stack([huge]), 400, 240) == 0
    assert tr.select(np.zeros((0, 137, 3), np.float32), 400, 240) is None
    fresh = TargetTracker()
    same_size = [person(60, 120, 30), person(200, 120, 30)]
    assert fresh.select(np.stack(same_size), 400, 240) == 1  # equal size: the central one


class _Fixed:
    name = "fixed"

    def __init__(self, result):
        self.result = result
        self.closed = False

    def __call__(self, f):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    "bad",
    [
        RuntimeError("CUDA error: out of memory"),
        PoseResult(np.full((137, 3), np.nan, np.float32), True, 1),
        PoseResult(-np.ones((137, 3), np.float32), True, 1),
        PoseResult(np.zeros((25, 3), np.float32), True, 1),
        "not a result",
    ],
)
def test_safepose_turns_garbage_into_no_person(bad, caplog):
    guard = SafePose(_Fixed(bad))
    res = guard(frame(np.zeros((8, 8, 3), np.uint8)))
    assert res.person is False and res.keypoints.shape == (137, 3) and not res.keypoints.any()
    assert guard.errors + guard.invalid == 1 and guard.no_person == 1
    assert "treated as no person" in caplog.text
    guard.close()
    assert guard.backend.closed


def test_safepose_passes_good_results_and_clips_confidence():
    kp = person(10, 10, 2)
    kp[0, 2] = 1.7
    guard = SafePose(_Fixed(PoseResult(kp, True, 2)))
    res = guard(frame(np.zeros((8, 8, 3), np.uint8)))
    assert res.person and res.num_people == 2 and res.keypoints[0, 2] == 1.0
    assert guard.stats() == {"frames": 1, "errors": 0, "invalid": 0, "no_person": 0}


def test_factory_errors_name_the_choices():
    assert set(list_pose_backends()) == {"openpose", "mediapipe", "replay", "synthetic"}
    with pytest.raises(PoseBackendError, match="choose one of synthetic, mediapipe, openpose, replay"):
        create_pose_backend("alphapose")
    with pytest.raises(PoseBackendError, match="bad options"):
        create_pose_backend("synthetic", colour="red")


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_backend_returns_the_frame_keypoints():
    pose = create_pose_backend("synthetic")
    kp = person(40, 40, 10)
    res = pose(frame(np.zeros((80, 80, 3), np.uint8), keypoints=kp))
    assert res.person and np.array_equal(res.keypoints, kp)
    res = pose(frame(np.zeros((80, 80, 3), np.uint8), keypoints=None))
    assert not res.person and res.num_people == 0


def test_synthetic_source_through_the_backend():
    pytest.importorskip("clipmg.train.synth")
    from clipmg.stream.sources import open_source

    src = open_source("synthetic:2")
    img, kp = src.read()
    res = create_pose_backend("synthetic")(frame(img, keypoints=kp))
    assert res.person and np.array_equal(res.keypoints, kp)
    assert res.keypoints[NOSE, 1] < res.keypoints[NECK, 1]
    assert res.keypoints[RSHO, 0] < res.keypoints[LSHO, 0]  # frontal: person's right on image left


# ----------------------------------------------------------------------------- replay
def test_replay_real_openpose_json_aligned_to_seq(shared_data):
    folder = shared_data / "imigue-openpose-298"
    pose = create_pose_backend("replay", path=str(folder))
    img = np.zeros((720, 1280, 3), np.uint8)
    for seq in (0, 7, 47):
        doc = json.loads((folder / f"298_{seq:012d}_keypoints.json").read_text())
        res = pose(frame(img, seq=seq))
        assert res.person and res.num_people == 1
        assert np.allclose(res.keypoints[:25].ravel(), doc["people"][0]["pose_keypoints_2d"])
        assert np.allclose(res.keypoints[LHAND : LHAND + 21].ravel(), doc["people"][0]["hand_left_keypoints_2d"])
    assert not pose(frame(img, seq=7)).keypoints[RHAND:].any()  # right hand undetected in frame 7
    assert not pose(frame(img, seq=48)).person  # past the end
    # Offset and scaling to the (resized) frame the capture wrote.
    small = create_pose_backend("replay", path=str(folder), offset=5, source_size=(1280, 720))
    r0 = small(frame(np.zeros((360, 640, 3), np.uint8), seq=2))
    ref = pose(frame(img, seq=7)).keypoints
    assert np.allclose(r0.keypoints[:, :2], ref[:, :2] / 2) and np.array_equal(r0.keypoints[:, 2], ref[:, 2])


def test_replay_json_with_two_people_and_npy(tmp_path):
    a, b = person(100, 100, 10), person(300, 120, 40)

    def doc(*people):
        return {
            "version": 1.3,
            "people": [
                {
                    "pose_keypoints_2d": p[:25].ravel().tolist(),
                    "face_keypoints_2d": [],
                    "hand_left_keypoints_2d": [],
                    "hand_right_keypoints_2d": [],
                }
                for p in people
            ],
        }

    for i, d in enumerate([doc(a, b), doc(b), doc()]):
        (tmp_path / f"vid_{i:012d}_keypoints.json").write_text(json.dumps(d))
    assert people_from_openpose_json(doc(a, b)).shape == (2, 137, 3)
    pose = create_pose_backend("replay", path=str(tmp_path))
    img = np.zeros((240, 400, 3), np.uint8)
    r = [pose(frame(img, seq=s)) for s in range(3)]
    assert [x.num_people for x in r] == [2, 1, 0] and [x.person for x in r] == [True, True, False]
    assert np.allclose(r[0].keypoints[:25], b[:25])  # the larger person
    np.save(tmp_path / "kp.npy", np.stack([a, np.zeros_like(a)]))
    pose = create_pose_backend("replay", path=str(tmp_path / "kp.npy"), loop=True)
    assert [pose(frame(img, seq=s)).person for s in range(4)] == [True, False, True, False]
    with pytest.raises(PoseBackendError, match="folder of OpenPose JSON"):
        create_pose_backend("replay", path=str(tmp_path / "nope.txt"))


def test_replay_miga_light_hand_csv(tmp_path):
    rows = []
    for t in range(3):
        kp35 = np.zeros((35, 3), np.float32)
        kp35[:25] = person(100 + t, 100, 10)[:25]
        kp35[25:30] = (50, 60, 0.8)  # right fingertips
        rows.append(",".join([str(t)] + [f"{v:g}" for v in kp35.ravel()]))
    (tmp_path / "7_light_hand.csv").write_text("\n".join(rows) + "\n")
    pose = create_pose_backend("replay", path=str(tmp_path / "7_light_hand.csv"))
    res = pose(frame(np.zeros((240, 400, 3), np.uint8), seq=2))
    assert res.person and res.keypoints[NOSE, 0] == pytest.approx(102)
    assert np.allclose(res.keypoints[RHAND + 8], (50, 60, 0.8))  # index fingertip of the right hand


# ----------------------------------------------------------------------------- OpenPose
@pytest.fixture
def fake_openpose(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(STAND_INS))
    monkeypatch.delitem(sys.modules, "pyopenpose", raising=False)
    import pyopenpose

    for lst in (pyopenpose.SCRIPT, pyopenpose.RECEIVED, pyopenpose.CONFIGURED, pyopenpose.STOPPED):
        lst.clear()
    models = tmp_path / "models"
    models.mkdir()
    return pyopenpose, str(models)


def test_openpose_backend_against_the_documented_api(fake_openpose):
    op, models = fake_openpose
    pose = create_pose_backend(
        "openpose", model_folder=models, hand=True, face=True, net_resolution="-1x256", number_people_max=4
    )
    assert op.CONFIGURED[-1] == {
        "model_folder": models + "/",
        "model_pose": "BODY_25",
        "net_resolution": "-1x256",
        "hand": True,
        "face": True,
        "number_people_max": 4,
    }
    img = np.zeros((240, 400, 3), np.uint8)
    img[:, :10] = (255, 0, 0)  # red in RGB
    # Frame 1: nobody -> OpenPose gives None everywhere.
    res = pose(frame(img))
    assert res.person is False and res.num_people == 0
    assert (op.RECEIVED[0][:, :10] == (0, 0, 255)).all()  # the backend handed OpenPose BGR
    # Frame 2: two people with hands and faces; the larger one is the target.
    small, big = person(60, 100, 10), person(250, 120, 40)
    lh = np.stack([np.full((21, 3), (1, 1, 0.8)), np.full((21, 3), (2, 2, 0.9))]).astype(np.float32)
    rh = lh + (10, 10, 0)
    face = np.stack([np.full((70, 3), 0.5), np.full((70, 3), 0.7)]).astype(np.float32)
    op.SCRIPT.append({"pose": np.stack([small[:25], big[:25]]), "hands": (lh, rh), "face": face})
    res = pose(frame(img, seq=1))
    assert res.person and res.num_people == 2
    assert np.allclose(res.keypoints[:25], big[:25])
    assert np.allclose(res.keypoints[25:95], 0.7)
    assert np.allclose(res.keypoints[LHAND : LHAND + 21], (2, 2, 0.9))
    assert np.allclose(res.keypoints[RHAND:], (12, 12, 0.9))
    pose.close()
    assert op.STOPPED == [True]


def test_openpose_without_hand_and_face_gives_none_parts(fake_openpose):
    op, models = fake_openpose
    pose = create_pose_backend("openpose", model_folder=models, hand=False, face=False)
    p = person(200, 120, 40)
    op.SCRIPT.append({"pose": p[None, :25]})
    res = pose(frame(np.zeros((240, 400, 3), np.uint8)))
    assert res.person and np.allclose(res.keypoints[:25], p[:25]) and not res.keypoints[25:].any()
    # A malformed output (wrong joint count) is one "no person" frame, not a crash.
    op.SCRIPT.append({"pose": np.zeros((1, 18, 3))})
    res = pose(frame(np.zeros((240, 400, 3), np.uint8)))
    assert not res.person and pose.errors == 1


def test_openpose_missing_or_misconfigured_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "stand_ins" not in p])
    monkeypatch.delitem(sys.modules, "pyopenpose", raising=False)
    monkeypatch.delenv("OPENPOSE_PYTHON", raising=False)
    with pytest.raises(PoseBackendError, match="BUILD_PYTHON"):
        create_pose_backend("openpose", model_folder=str(tmp_path))
    monkeypatch.delenv("OPENPOSE_MODELS", raising=False)
    with pytest.raises(PoseBackendError, match="model_folder"):
        create_pose_backend("openpose")


# ----------------------------------------------------------------------------- MediaPipe
@pytest.fixture(scope="module")
def mediapipe_backend():
    pytest.importorskip("mediapipe")
    backend = create_pose_backend("mediapipe")
    yield backend
    backend.close()


def check_body(kp: np.ndarray, what: str) -> None:
    """BODY_25 sanity for an upright, frontal person."""
    have = kp[:, 2] > 0
    assert have[[NOSE, NECK, RSHO, LSHO]].all(), f"{what}: head/shoulders missing"
    assert kp[NOSE, 1] < kp[NECK, 1], f"{what}: nose not above neck"
    if have[MIDHIP]:
        assert kp[NECK, 1] < kp[MIDHIP, 1], f"{what}: neck not above mid-hip"
    # The person's right shoulder appears on the image's left for a frontal person.
    assert kp[RSHO, 0] < kp[NECK, 0] < kp[LSHO, 0], f"{what}: left/right swapped"
    if have[[REYE, LEYE]].all():
        assert kp[REYE, 0] < kp[LEYE, 0], f"{what}: eyes swapped"


def test_mediapipe_refuses_a_hidden_model_download(mediapipe_backend):
    with pytest.raises(PoseBackendError, match="model_complexity=1"):
        create_pose_backend("mediapipe", model_complexity=0)


def test_mediapipe_on_a_real_person(mediapipe_backend):
    from skimage import data

    img = data.astronaut()  # 512x512, hips at the bottom edge: pad so they are in the picture
    img = np.ascontiguousarray(np.pad(img, ((0, 128), (64, 64), (0, 0)), constant_values=128))
    res = create_pose_backend("mediapipe", static_image_mode=True)(frame(img))
    assert res.person and res.num_people == 1
    kp = res.keypoints
    check_body(kp, "astronaut")
    assert kp[MIDHIP, 2] > 0 and kp[NECK, 1] < kp[MIDHIP, 1]
    xy = kp[kp[:, 2] > 0, :2]
    assert (xy >= 0).all() and (xy[:, 0] < img.shape[1]).all() and (xy[:, 1] < img.shape[0]).all()
    assert 200 < kp[NOSE, 0] < 360 and 60 < kp[NOSE, 1] < 200  # her face, in pixels
    nobody = mediapipe_backend(frame(np.full((240, 320, 3), 90, np.uint8)))
    assert not nobody.person and not nobody.keypoints.any()


@pytest.mark.parametrize("clip", ["covering-face.gif", "folding-arms.gif"])
def test_mediapipe_on_real_imigue_clips(clip, shared_data):
    pytest.importorskip("mediapipe")
    frames = read_gif(shared_data / "imigue-clips" / clip)
    assert len(frames) >= 20 and frames[0].shape == (338, 600, 3)
    pose = create_pose_backend("mediapipe")
    hands_checked = 0
    try:
        for i, img in enumerate(frames):
            res = pose(frame(img, seq=i))
            assert res.person, f"{clip} frame {i}: no person"
            check_body(res.keypoints, f"{clip} frame {i}")
            kp = res.keypoints
            # Holistic's left hand is the person's left: its wrist sits at BODY_25 LWrist.
            for hand, wrist in ((LHAND, LWRI), (RHAND, RWRI)):
                if kp[hand, 2] > 0 and kp[wrist, 2] > 0.5:
                    other = RWRI if wrist == LWRI else LWRI
                    d_own = np.hypot(*(kp[hand, :2] - kp[wrist, :2]))
                    d_other = np.hypot(*(kp[hand, :2] - kp[other, :2]))
                    if abs(d_own - d_other) > 15:  # skip frames where the wrists cross
                        assert d_own < d_other, f"{clip} frame {i}: hand sides swapped"
                        hands_checked += 1
    finally:
        pose.close()
    assert hands_checked >= 10
    assert pose.errors == 0 and pose.invalid == 0


@pytest.mark.parametrize("clip", ["covering-face.gif", "folding-arms.gif"])
def test_mediapipe_backend_equals_stock_holistic_without_its_face(clip, shared_data):
    """The backend runs Holistic's graph minus the face branch; on real people its keypoints are
    stock Holistic's, mapped the same way, to the last bit (the face never reached clipmg anyway)."""
    mp = pytest.importorskip("mediapipe")
    from clipmg.stream.pose_mediapipe import _landmarks, mediapipe_to_openpose137

    frames = read_gif(shared_data / "imigue-clips" / clip)
    pose = create_pose_backend("mediapipe")
    stock = mp.solutions.holistic.Holistic(model_complexity=1, refine_face_landmarks=False)
    hands = 0
    try:
        for i, img in enumerate(frames):
            ours = pose(frame(img, seq=i)).keypoints
            r = stock.process(np.ascontiguousarray(img))
            lh, rh = _landmarks(r.left_hand_landmarks, False), _landmarks(r.right_hand_landmarks, False)
            want = mediapipe_to_openpose137(_landmarks(r.pose_landmarks, True), lh, rh, img.shape[1], img.shape[0])
            np.testing.assert_array_equal(ours, want, err_msg=f"{clip} frame {i}")
            hands += (lh is not None) + (rh is not None)
    finally:
        pose.close()
        stock.close()
    assert hands >= 10  # the hand branch really ran and was compared


def test_body_and_hands_graph_has_no_face_branch():
    mp = pytest.importorskip("mediapipe")
    from clipmg.stream.pose_mediapipe import body_and_hands_graph

    g = body_and_hands_graph(mp)
    assert [n.calculator for n in g.node] == ["PoseLandmarkCpu", "HandLandmarksLeftAndRightCpu"]
    assert not [s for s in g.output_stream if "FACE" in s]
    assert not [s for s in g.input_side_packet if "FACE" in s]
