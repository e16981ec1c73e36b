"""The synthetic micro-gesture set: determinism, real layouts, drawing matches keypoints, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from clipmg.train.readers import miga_label, read_label_csv
from clipmg.train.synth import SYNTH_CLASSES, SynthConfig, Take, main, make_episode, synthetic_stream, write_dataset

SMALL = SynthConfig(clip_frames=(24, 32), gap_frames=(4, 12))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    write_dataset(out, seed=5, videos=2, clips_per_video=4, config=SMALL, video=False)
    return out


def _files(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".csv", ".json", ".txt")
    }


def test_same_seed_gives_identical_label_and_json_files(small_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_dataset(again, seed=5, videos=2, clips_per_video=4, config=SMALL, video=False)
    a, b = _files(small_set), _files(again)
    assert a.keys() == b.keys() and len(a) > 100
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]][:3]
    other = tmp_path / "other"
    write_dataset(other, seed=6, videos=2, clips_per_video=4, config=SMALL, video=False)
    c = _files(other)
    assert a["001/001_label.csv"] != c["001/001_label.csv"]


def test_written_layout_is_imigue_like(small_set: Path) -> None:
    classes = (small_set / "classes.txt").read_text().splitlines()
    assert tuple(classes) == SYNTH_CLASSES
    meta = json.loads((small_set / "synth.json").read_text())
    for vid in ("001", "002"):
        rows = read_label_csv(small_set / vid / f"{vid}_label.csv", len(classes))
        assert len(rows) == 4 and [r.row for r in rows] == [0, 1, 2, 3]
        frames = meta["videos"][vid]["frames"]
        assert len(list((small_set / vid / "openpose").glob(f"{vid}_*_keypoints.json"))) == frames
        prev_end = -1
        for r in rows:
            assert SMALL.clip_frames[0] <= r.end - r.start + 1 <= SMALL.clip_frames[1]
            assert r.start > prev_end + SMALL.gap_frames[0] - 1  # idle gap before every clip
            prev_end = r.end
        assert prev_end < frames - 1  # a trailing idle span too
    raw = (small_set / "001" / "001_label.csv").read_text().splitlines()[0].split(",")
    assert miga_label(int(raw[0])) == read_label_csv(small_set / "001" / "001_label.csv")[0].label


def test_json_is_openpose_13_shape(small_set: Path) -> None:
    files = sorted((small_set / "001" / "openpose").glob("*.json"))
    assert files[0].name == "001_000000000000_keypoints.json"
    doc = json.loads(files[10].read_text())
    assert doc["version"] == 1.3 and len(doc["people"]) == 1
    p = doc["people"][0]
    assert p["person_id"] == [-1]
    assert [
        len(p[k])
        for k in ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d")
    ] == [75, 210, 63, 63]
    assert p["pose_keypoints_3d"] == [] and p["hand_right_keypoints_3d"] == []
    body = np.array(p["pose_keypoints_2d"]).reshape(25, 3)
    assert (body[8:15, 2] == 0).all()  # the desk hides the lower body, as in iMiGUE
    assert (body[[0, 1, 2, 5], 2] > 0).sum() >= 3


def _palm_centre(hand: np.ndarray) -> np.ndarray:
    return hand[[0, 5, 17], :2].mean(axis=0)  # wrist, index and pinky knuckles: inside the palm


def test_stream_keypoints_land_on_the_drawn_body() -> None:
    cfg = SynthConfig()
    frames = list(itertools.islice(synthetic_stream(3, cfg), 400))
    take = Take(3, 0, cfg)  # the stream's subject
    skin = np.array(take.subject.skin)
    assert {f.label for f in frames} - {-1}, "no gesture in 400 frames"
    hits = total = 0
    for f in frames:
        assert f.image.shape == (cfg.height, cfg.width, 3) and f.image.dtype == np.uint8
        assert f.keypoints.shape == (137, 3) and f.keypoints.dtype == np.float32
        if f.class_name == "play things":
            continue  # the held object may cover a palm
        for off in (95, 116):
            x, y = np.round(_palm_centre(f.keypoints[off : off + 21])).astype(int)
            if 0 <= x < cfg.width and 0 <= y < cfg.height:
                total += 1
                hits += bool((f.image[y, x] == skin).all())
    assert total > 600 and hits / total > 0.97, (hits, total)
    # a keypoint off by a few pixels does not hit the palm: the check above can fail
    x, y = np.round(_palm_centre(frames[0].keypoints[116:137]) + [0, -12]).astype(int)
    assert not (frames[0].image[y, x] == skin).all()


def test_stream_is_deterministic_and_labels_follow_episodes() -> None:
    a = list(itertools.islice(synthetic_stream(11), 150))
    b = list(itertools.islice(synthetic_stream(11), 150))
    assert all((x.image == y.image).all() and (x.observed == y.observed).all() for x, y in zip(a, b))
    names = {f.class_name for f in a if f.label >= 0}
    assert all(SYNTH_CLASSES[f.label] == f.class_name for f in a if f.label >= 0) and names


def test_location_pair_differs_only_in_hand_target() -> None:
    """touch chin vs touch forehead: same subject, same timing, different hand place."""
    cfg = SynthConfig()
    take = Take(0, 1, cfg)
    rng1, rng2 = np.random.default_rng(1), np.random.default_rng(1)
    chin, head = make_episode(rng1, "touch chin", 0, 40), make_episode(rng2, "touch forehead", 0, 40)
    _, k1 = take.render(20, chin)
    _, k2 = take.render(20, head)
    hand = 116 if chin.side < 0 else 95
    still = [0, 1, 2, 5, 15, 16, 17, 18] + list(range(25, 95))  # head, neck, shoulders, face
    assert np.array_equal(k1[still], k2[still])
    other = 95 if hand == 116 else 116
    assert np.array_equal(k1[other : other + 21], k2[other : other + 21])  # the resting hand too
    assert _palm_centre(k2[hand : hand + 21])[1] < _palm_centre(k1[hand : hand + 21])[1] - 5  # forehead is higher


@pytest.mark.parametrize("plain,marked", [("minaret hand", "play things"), ("touch chest", "adjust tie")])
def test_appearance_pairs_are_identical_in_keypoints_but_not_pixels(plain: str, marked: str) -> None:
    take = Take(0, 2, SynthConfig())
    a = make_episode(np.random.default_rng(4), plain, 0, 40)
    b = make_episode(np.random.default_rng(4), marked, 0, 40)
    for f in (3, 20, 33):
        ia, ka = take.render(f, a)
        ib, kb = take.render(f, b)
        assert np.array_equal(ka, kb)
        assert a.obj is None and b.obj is not None and (ia != ib).any(axis=-1).sum() > 10


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "x"), "--width", "161"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "even" in err[0]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main([str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([str(tmp_path / "y"), "--classes", "touch chin,dance"]) == 2
    assert "dance" in capsys.readouterr().err


def test_cli_writes_a_set_with_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "set"
    rc = main(
        [
            str(out),
            "--seed",
            "1",
            "--videos",
            "1",
            "--clips-per-video",
            "2",
            "--min-clip",
            "24",
            "--max-clip",
            "26",
            "--quiet",
        ]
    )
    assert rc == 0 and "wrote 2 clips" in capsys.readouterr().out
    assert (out / "001" / "001.mp4").stat().st_size > 1000 and (out / "README.md").is_file()
