"""Readers of every iMiGUE layout, on real OpenPose frames and on fixtures made by the synthetic set."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from live_harness import EvilPickle

from clipmg.model.layouts import extract_layout, layout_indices
from clipmg.train.readers import (
    DataError,
    Issues,
    parse_openpose_people,
    read_label_csv,
    read_light_hand_csv,
    read_openpose_folder,
    read_openpose_json,
    read_openpose_xlsx,
)
from clipmg.train.readers_pyskl import read_pyskl, safe_pickle_load
from clipmg.train.readers_video import VideoReader, probe_video
from clipmg.train.synth import SynthConfig, write_dataset

REAL_RIGHT_HAND_MISSING = {7, 9, 25, 26, 27, 28, 31, 32}  # frames of video 298 (shared/data/README.md)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("readers") / "set"
    write_dataset(
        out, seed=2, videos=1, clips_per_video=3, config=SynthConfig(clip_frames=(24, 30), gap_frames=(6, 10))
    )
    return out


@pytest.fixture(scope="module")
def synth_kp(synth: Path) -> np.ndarray:
    return read_openpose_folder(synth / "001" / "openpose", "001")


# ------------------------------------------------------------------------------- OpenPose JSON
def test_real_openpose_frames(shared_data: Path) -> None:
    folder = shared_data / "imigue-openpose-298"
    kp = read_openpose_folder(folder)
    assert kp.shape == (48, 137, 3) and kp.dtype == np.float32
    for t in range(48):
        rhand = kp[t, 116:137]
        assert (rhand == 0).all() == (t in REAL_RIGHT_HAND_MISSING), t
        assert (kp[t, 95:116, 2] > 0).any()  # the left hand is found in every frame
        doc = json.loads((folder / f"298_{t:012d}_keypoints.json").read_text())["people"][0]
        for key, lo in (
            ("pose_keypoints_2d", 0),
            ("face_keypoints_2d", 25),
            ("hand_left_keypoints_2d", 95),
            ("hand_right_keypoints_2d", 116),
        ):
            expect = np.array(doc[key], np.float32).reshape(-1, 3)
            assert np.array_equal(kp[t, lo : lo + len(expect)], expect), (t, key)
    assert kp[0, 0].tolist() == pytest.approx([263.054, 272.756, 0.813957])  # Nose of frame 0
    assert (kp[:, 8:15, 2] == 0).all()  # seated subject: lower body not detected
    upper = extract_layout(kp, "upper22")
    assert upper.shape == (48, 22, 3) and (upper[7, 12:17] == 0).all()  # frame 7: right fingertips absent


def test_target_person_and_empty_frames(tmp_path: Path) -> None:
    def person(x: float, conf: float) -> dict:
        return {
            "person_id": [-1],
            "pose_keypoints_2d": [x, 10.0, conf] * 25,
            "face_keypoints_2d": [],
            "hand_left_keypoints_2d": [],
            "hand_right_keypoints_2d": [x, 20.0, conf] * 21,
        }

    p = tmp_path / "v_000000000000_keypoints.json"
    p.write_text(json.dumps({"version": 1.3, "people": [person(1.0, 0.2), person(50.0, 0.9), person(9.0, 0.5)]}))
    kp = read_openpose_json(p)
    assert kp[0].tolist() == pytest.approx([50.0, 10.0, 0.9]) and (kp[25:116] == 0).all()
    assert parse_openpose_people(json.loads(p.read_text())).shape == (3, 137, 3)
    p.write_text(json.dumps({"version": 1.3, "people": []}))
    assert (read_openpose_json(p) == 0).all()


def test_openpose_json_reads_what_synth_wrote(synth: Path, synth_kp: np.ndarray) -> None:
    doc = json.loads((synth / "001" / "openpose" / "001_000000000005_keypoints.json").read_text())
    if doc["people"]:
        hand = np.array(doc["people"][0]["hand_left_keypoints_2d"], np.float32).reshape(21, 3)
        assert np.array_equal(synth_kp[5, 95:116], hand)
    assert synth_kp.shape[1:] == (137, 3)


def test_malformed_json_is_skipped_and_counted(synth: Path, tmp_path: Path) -> None:
    folder = tmp_path / "op"
    shutil.copytree(synth / "001" / "openpose", folder)
    f3 = folder / "001_000000000003_keypoints.json"
    f3.write_text(f3.read_text()[:100])  # truncated
    (folder / "001_000000000007_keypoints.json").unlink()  # missing
    bad = folder / "001_000000000009_keypoints.json"
    doc = json.loads(bad.read_text())
    doc["people"] = [{"pose_keypoints_2d": [1.0] * 74}]  # wrong column count
    bad.write_text(json.dumps(doc))
    issues = Issues()
    kp = read_openpose_folder(folder, "001", issues)
    assert issues.counts == {"invalid OpenPose JSON": 2, "missing OpenPose frames": 1}
    assert (kp[[3, 7, 9]] == 0).all() and (kp[4, :25, 2] > 0).any()
    assert "skipped 3 items" in issues.summary()
    with pytest.raises(DataError, match="truncated"):
        read_openpose_folder(folder, "001", Issues(strict=True))
    with pytest.raises(DataError, match="no OpenPose files"):
        read_openpose_folder(tmp_path, "001")


# ---------------------------------------------------------------------------------------- labels
def test_label_csv_mapping_and_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "5_label.csv"
    p.write_text("1,0,10\n99,20,40\n33,5,6\n3,7\n0,1,2\n4,9,3\nx,1,2\n12,50,60\n")
    issues = Issues()
    rows = read_label_csv(p, num_classes=32, issues=issues)
    assert [(r.row, r.label, r.start, r.end) for r in rows] == [(0, 0, 0, 10), (1, 31, 20, 40), (7, 11, 50, 60)]
    assert issues.counts == {"label out of range": 2, "wrong column count": 1, "bad label row": 2}
    with pytest.raises(DataError, match="row 2"):
        read_label_csv(p, num_classes=32)  # no collector: strict
    assert len(read_label_csv(p, issues=Issues())) == 4  # without a class count, id 33 -> label 32 is fine
    with pytest.raises(DataError, match="cannot read label file"):
        read_label_csv(tmp_path / "missing_label.csv")


# ------------------------------------------------------------------------------ MiGA 2023 / 2024
def _light_hand_rows(kp: np.ndarray) -> list:
    body, rtips, ltips = kp[:, :25], kp[:, 116 + np.array([4, 8, 12, 16, 20])], kp[:, 95 + np.array([4, 8, 12, 16, 20])]
    kp35 = np.concatenate([body, rtips, ltips], axis=1).reshape(len(kp), -1)
    return [[str(t)] + [f"{v:.3f}" for v in row] for t, row in enumerate(kp35)]


def test_light_hand_csv(synth_kp: np.ndarray, tmp_path: Path) -> None:
    kp = synth_kp[:40]
    rows = _light_hand_rows(kp)
    p = tmp_path / "7_light_hand.csv"
    p.write_text("\n".join(",".join(r) for r in [["frame"] + [f"c{i}" for i in range(105)]] + rows) + "\n")
    got = read_light_hand_csv(p)
    assert got.shape == (40, 137, 3)
    idx = layout_indices("upper22")
    assert np.allclose(got[:, idx], kp[:, idx], atol=1e-3)
    assert (got[:, 25:95] == 0).all() and (got[:, 95:116][:, [0, 1, 2, 3, 5]] == 0).all()
    rows[5] = rows[5][:50]  # a truncated row
    p.write_text("\n".join(",".join(r) for r in rows) + "\n")
    issues = Issues()
    got = read_light_hand_csv(p, issues)
    assert issues.counts == {"wrong column count": 1} and (got[5] == 0).all() and len(got) == 40
    with pytest.raises(DataError, match="row 5: 50 columns"):
        read_light_hand_csv(p, Issues(strict=True))


def test_openpose_xlsx(synth_kp: np.ndarray, tmp_path: Path) -> None:
    import openpyxl

    kp = synth_kp[:30]
    for lead in (0, 1):
        wb = openpyxl.Workbook(write_only=True)
        ws = wb.create_sheet()
        ws.append((["frame"] if lead else []) + [f"{a}{i}" for i in range(137) for a in "xyc"])
        for t, row in enumerate(kp.reshape(30, -1).tolist()):
            ws.append(([t] if lead else []) + row)
        p = tmp_path / f"9_openpose_{lead}.xlsx"
        wb.save(p)
        got = read_openpose_xlsx(p)
        assert got.shape == (30, 137, 3) and np.allclose(got, kp, atol=1e-4)
    bad = tmp_path / "bad_openpose.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="xlsx"):
        read_openpose_xlsx(bad)


# ------------------------------------------------------------------------------------------ pyskl
def _pyskl_doc(synth_kp: np.ndarray) -> dict:
    a = synth_kp[10:40]
    u = extract_layout(synth_kp[50:70], "upper22")
    return {
        "split": {"train": ["001_0"], "val": ["001_1"]},
        "annotations": [
            {
                "frame_dir": "001_0",
                "label": 3,
                "total_frames": 30,
                "img_shape": (120, 160),
                "keypoint": a[None, ..., :2],
                "keypoint_score": a[None, ..., 2],
            },
            {
                "frame_dir": "001_1",
                "label": np.int64(5),
                "total_frames": 20,
                "img_shape": (120, 160),
                "keypoint": u[None, ..., :2].astype(np.float16),
                "keypoint_score": u[None, ..., 2],
            },
        ],
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pyskl_pickle(synth_kp: np.ndarray, tmp_path: Path, protocol: int) -> None:
    p = tmp_path / "imigue.pkl"
    p.write_bytes(pickle.dumps(_pyskl_doc(synth_kp), protocol=protocol))
    split, clips = read_pyskl(p)
    assert split == {"train": ["001_0"], "val": ["001_1"]}
    assert [(c.frame_dir, c.label, c.keypoints.shape, c.img_shape) for c in clips] == [
        ("001_0", 3, (30, 137, 3), (120, 160)),
        ("001_1", 5, (20, 137, 3), (120, 160)),
    ]
    assert np.allclose(clips[0].keypoints, synth_kp[10:40])
    idx = layout_indices("upper22")
    assert np.allclose(clips[1].keypoints[:, idx], synth_kp[50:70][:, idx], atol=0.1)
    assert (clips[1].keypoints[:, 25:95] == 0).all()


def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"split": {}, "annotations": [EvilPickle(marker)]}))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os)\.system"):
        read_pyskl(p)
    assert not marker.exists()
    p.write_bytes(pickle.dumps(eval))  # builtins.eval, a class or any other global: refused
    with pytest.raises(DataError, match="refusing to unpickle builtins.eval"):
        safe_pickle_load(p)
    good = pickle.dumps({"annotations": []})
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="truncated"):
        safe_pickle_load(p)


def test_bad_pyskl_annotation_is_skipped(synth_kp: np.ndarray, tmp_path: Path) -> None:
    doc = _pyskl_doc(synth_kp)
    doc["annotations"][1]["keypoint"] = np.zeros((1, 20, 19, 2), np.float32)  # unknown joint count
    doc["annotations"][1]["keypoint_score"] = np.zeros((1, 20, 19), np.float32)
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(doc))
    issues = Issues()
    _, clips = read_pyskl(p, issues)
    assert len(clips) == 1 and issues.counts == {"bad pyskl annotation": 1}
    with pytest.raises(DataError, match="19 joints"):
        read_pyskl(p, Issues(strict=True))


# ------------------------------------------------------------------------------------------ video
def test_video_reader_is_frame_accurate(synth: Path) -> None:
    path = synth / "001" / "001.mp4"
    reader = VideoReader(path)
    n = reader.info.num_frames
    assert (reader.info.width, reader.info.height, reader.info.fps) == (160, 120, 25.0)
    assert n == len(list((synth / "001" / "openpose").glob("*.json")))
    every = reader.read_all()
    assert len(every) == n
    rng = np.random.default_rng(0)
    for _ in range(6):
        idx = rng.choice(n, 8, replace=False).tolist()
        got = reader.read(idx + [idx[0]])  # any order, repeats allowed
        assert got.shape == (9, 120, 160, 3) and got.dtype == np.uint8
        assert all(np.array_equal(got[k], every[i]) for k, i in enumerate(idx + [idx[0]]))
    diffs = [np.abs(every[i].astype(int) - every[i + 1]).mean() for i in range(n - 1)]
    assert min(diffs) >= 0 and max(diffs) > 0.1  # frames differ: a wrong index would be caught
    with pytest.raises(DataError, match="outside the video"):
        reader.read([n])


def test_broken_videos_raise_clear_errors(synth: Path, tmp_path: Path) -> None:
    data = (synth / "001" / "001.mp4").read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="half.mp4"):
        VideoReader(half).read_all()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 5000)
    with pytest.raises(DataError, match="cannot open video"):
        probe_video(junk)
    with pytest.raises(DataError, match="cannot open video"):
        probe_video(tmp_path / "absent.mp4")
