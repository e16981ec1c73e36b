"""Clip index, split by video, background mining, malformed inputs and the Dataset's outputs."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipmg.model.config import ModelConfig, PoseConfig, load_config
from clipmg.model.layouts import extract_layout
from clipmg.train.dataset import (
    AugmentConfig,
    MicroGestureDataset,
    build_index,
    detect_layout,
    flip_permutation,
    has_keypoints,
    hflip,
    mine_background,
    rgb_candidates,
    split_by_video,
)
from clipmg.train.readers import DataError
from clipmg.train.summary import main as summary_main
from clipmg.train.synth import SYNTH_CLASSES, SynthConfig, write_dataset

VIDEOS, CLIPS = 3, 4
NC = len(SYNTH_CLASSES)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset") / "set"
    write_dataset(
        out, seed=7, videos=VIDEOS, clips_per_video=CLIPS, config=SynthConfig(clip_frames=(24, 36), gap_frames=(20, 40))
    )
    return out


@pytest.fixture(scope="module")
def index(root: Path):
    return build_index(root, "openpose_json")


def _cfg(num_classes: int, layout: str = "upper22") -> ModelConfig:
    cfg = load_config("clipmg-tiny").replace(num_classes=num_classes)
    if layout != "upper22":
        n = {"openpose137": 137, "body25_hands": 67}[layout]
        cfg = cfg.replace(pose=PoseConfig(layout=layout, num_joints=n, heatmap_size=24))
    return cfg


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst


# ----------------------------------------------------------------------------------------- index
def test_index_of_synthetic_set(index) -> None:
    assert index.class_names == SYNTH_CLASSES and index.num_classes == NC
    assert len(index.clips) == VIDEOS * CLIPS and index.videos == ["001", "002", "003"]
    assert {c.clip_id for c in index.clips} == {f"{v:03d}_{r}" for v in range(1, 4) for r in range(CLIPS)}
    assert index.issues.total == 0 and index.missing["videos without RGB"] == 0
    src = index.sources["001"]
    assert src.keypoints.shape[1:] == (137, 3) and src.rgb is not None and src.num_frames == src.rgb.num_frames
    d = index.duration_stats()
    assert set(d) == {"count", "mean", "median", "p10", "p90", "min", "max"}
    assert d["count"] == 12 and 24 <= d["p10"] <= d["median"] <= d["p90"] <= 36
    assert sum(index.class_counts()) == 12
    assert detect_layout(index.root) == "openpose_json"


def test_split_by_video_has_no_leakage(index) -> None:
    train, val = index.split(0.34, seed=3)
    assert set(train.videos).isdisjoint(val.videos) and len(val.videos) == 1
    assert len(train.clips) + len(val.clips) == len(index.clips)
    assert index.split(0.34, seed=3)[1].videos == val.videos  # seeded


@given(
    st.lists(st.text(min_size=1, max_size=4), min_size=2, max_size=40, unique=True),
    st.floats(0.05, 0.9),
    st.integers(0, 1000),
)
@settings(max_examples=30, deadline=None)
def test_split_by_video_properties(videos, frac, seed) -> None:
    train, val = split_by_video(videos, frac, seed)
    assert set(train) | set(val) == set(videos) and not set(train) & set(val)
    assert 1 <= len(val) <= len(videos) - 1
    assert abs(len(val) - frac * len(videos)) <= 1 or len(val) in (1, len(videos) - 1)
    assert split_by_video(list(reversed(videos)), frac, seed) == (train, val)  # order does not matter


def test_mine_background_avoids_labelled_spans() -> None:
    rng = np.random.default_rng(0)
    wins = mine_background(200, [(30, 60), (100, 120)], [20, 25], rng, margin=2)
    assert wins and all(e - s + 1 in (20, 25) and 0 <= s <= e < 200 for s, e in wins)
    for s, e in wins:
        assert e < 28 or 63 <= s <= e < 98 or s >= 123, (s, e)
    assert all(b[0] > a[1] for a, b in zip(wins, wins[1:]))  # no overlap between windows
    assert mine_background(50, [(0, 49)], [10], rng) == []


def test_background_class(root: Path, index) -> None:
    bg = build_index(root, "openpose_json", background=True, seed=1)
    mined = [c for c in bg.clips if c.background]
    assert mined and bg.class_names == SYNTH_CLASSES  # the synthetic set's own "no gesture" class is used
    assert all(c.label == SYNTH_CLASSES.index("no gesture") for c in mined)
    for c in mined:
        for g in (g for g in index.clips if g.source == c.source):
            assert c.end < g.start or c.start > g.end, (c, g)
    names = SYNTH_CLASSES[:-1] + ("sneeze",)
    other = build_index(root, "openpose_json", class_names=names, background=True)
    assert other.class_names == names + ("no gesture",)
    assert {c.label for c in other.clips if c.background} == {NC}


def test_class_count_comes_from_the_data(root: Path, tmp_path: Path) -> None:
    d = _copy(root, tmp_path)
    (d / "classes.txt").unlink()
    idx = build_index(d, "openpose_json")
    assert idx.num_classes == max(c.label for c in idx.clips) + 1  # iMiGUE names, count from the labels
    assert idx.class_names[0] == "turtle neck"


# -------------------------------------------------------------------------------- malformed input
def test_malformed_inputs_are_skipped_and_counted(root: Path, tmp_path: Path) -> None:
    d = _copy(root, tmp_path)
    lab = d / "001" / "001_label.csv"
    rows = lab.read_text().splitlines()
    rows[0] = "77," + rows[0].split(",", 1)[1]  # label out of range for 16 classes
    rows[1] = "1,5"  # wrong column count
    rows.append("2,100000,100010")  # clip outside the video's frames
    lab.write_text("\n".join(rows) + "\n")
    js = sorted((d / "002" / "openpose").glob("*.json"))[3]
    js.write_text(js.read_text()[:50])  # truncated JSON
    mp4 = d / "003" / "003.mp4"
    mp4.write_bytes(mp4.read_bytes()[:2000])  # unreadable video
    idx = build_index(d, "openpose_json")
    assert idx.issues.counts == {
        "label out of range": 1,
        "wrong column count": 1,
        "clip outside frame range": 1,
        "invalid OpenPose JSON": 1,
        "unreadable video": 1,
    }
    assert len(idx.clips) == VIDEOS * CLIPS - 2 and idx.missing["unreadable RGB"] == 1
    ds = MicroGestureDataset(idx, _cfg(NC))
    assert idx.issues.counts["missing video"] == CLIPS and len(ds) == VIDEOS * CLIPS - 2 - CLIPS
    for i in range(len(ds)):
        ds[i]
    with pytest.raises(DataError, match="class id 77"):
        build_index(d, "openpose_json", strict=True)


def test_missing_keypoints_and_missing_video(root: Path, tmp_path: Path) -> None:
    d = _copy(root, tmp_path)
    shutil.rmtree(d / "002" / "openpose")
    (d / "003" / "003.mp4").unlink()
    idx = build_index(d, "openpose_json")
    assert idx.missing == {"videos without keypoints": 1, "videos without RGB": 1, "unreadable RGB": 0}
    assert idx.issues.counts == {"missing keypoints": CLIPS} and idx.videos == ["001", "003"]
    ds = MicroGestureDataset(idx, _cfg(NC))
    assert len(ds) == CLIPS and idx.issues.counts["missing video"] == CLIPS
    pose_only = MicroGestureDataset(idx, _cfg(NC), require_rgb=False)
    item = pose_only[len(pose_only) - 1]  # a clip of video 003: black frames, real keypoints
    assert item["clip_id"].startswith("003") and (item["keypoints"][..., 2] > 0).any()
    assert item["images"].std(dim=(0, 2, 3)).max() == 0  # every pixel the normalised black


def test_bad_video_mid_epoch_is_replaced_not_raised(root: Path, tmp_path: Path) -> None:
    d = _copy(root, tmp_path)
    idx = build_index(d, "openpose_json")
    ds = MicroGestureDataset(idx, _cfg(NC), cache_frames=False)
    mp4 = d / "002" / "002.mp4"
    mp4.write_bytes(mp4.read_bytes()[:3000])  # broken after the index was built
    ids = [ds[i]["clip_id"] for i in range(len(ds))]
    assert idx.issues.counts["unreadable clip"] == CLIPS
    assert not any(i.startswith("002") for i in ids) and len(ids) == len(ds)
    idx.issues.strict = True
    with pytest.raises(DataError):
        MicroGestureDataset(idx, _cfg(NC), cache_frames=False)[
            next(i for i, c in enumerate(ds.clips) if c.video == "002")
        ]


# ------------------------------------------------------------------------------------ the Dataset
def test_outputs_shapes_and_types(index) -> None:
    cfg = _cfg(NC)
    for train in (False, True):
        ds = MicroGestureDataset(index, cfg, train=train)
        assert ds.cache and ds.cache_misses == 0
        item = ds[0]
        assert item["images"].shape == (8, 3, 96, 96) and item["images"].dtype == torch.float32
        assert item["keypoints"].shape == (32, 22, 3) and item["keypoints"].dtype == torch.float32
        assert isinstance(item["label"], int) and item["clip_id"] == ds.clips[0].clip_id
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["images"].shape == (4, 8, 3, 96, 96) and batch["label"].dtype == torch.int64
    ev = MicroGestureDataset(index, cfg)
    a, b = ev[3], ev[3]
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["keypoints"], b["keypoints"])
    uncached = MicroGestureDataset(index, cfg, cache_frames=False)
    assert not uncached.cache and torch.equal(uncached[3]["images"], a["images"])


def test_training_samples_only_cached_frames(index) -> None:
    cfg = _cfg(NC)
    ds = MicroGestureDataset(index, cfg, train=True)
    torch.manual_seed(0)
    for i in range(60):
        ds[i % len(ds)]
    assert ds.cache_misses == 0
    c = ds.clips[0]
    cand = rgb_candidates(c.start, c.end, cfg, train=True)
    assert cand.min() >= c.start and cand.max() <= c.end and len(cand) < c.length


def _unnormalise(images: torch.Tensor, cfg: ModelConfig) -> np.ndarray:
    mean, std = np.array(cfg.preprocess.mean), np.array(cfg.preprocess.std)
    x = images.numpy().transpose(0, 2, 3, 1) * std + mean
    return np.clip(x * 255.0, 0, 255)


def _palm_hits(ds: MicroGestureDataset, root: Path, offset: tuple = (0.0, 0.0)) -> float:
    """Fraction of visible palms whose keypoint pixel in the model input has the subject's skin colour."""
    meta = json.loads((root / "synth.json").read_text())["videos"]
    cfg, g = ds.cfg, ds.cfg.clip.group
    hits = total = 0
    for i in range(len(ds)):
        item, clip = ds[i], ds.clips[i]
        if SYNTH_CLASSES[clip.label] == "play things":
            continue
        skin = np.array(meta[clip.video]["subject"]["skin"], float)
        img = _unnormalise(item["images"], cfg)
        kp = item["keypoints"].numpy()
        for t in range(cfg.clip.rgb_frames):
            k = kp[g * t + cfg.clip.rgb_offset]  # the pose sample the RGB frame shows
            for hand in (95, 116):
                h = k[[hand, hand + 5, hand + 17]]  # wrist, index and pinky knuckles
                if (h[:, 2] == 0).any():
                    continue
                x, y = np.round(h[:, :2].mean(0) + offset).astype(int)
                if 0 <= x < 96 and 0 <= y < 96:
                    total += 1
                    hits += np.abs(img[t, y, x] - skin).max() < 40
    assert total > 100
    return hits / total


def test_keypoints_land_on_the_drawn_hands(root: Path, index) -> None:
    cfg = _cfg(NC, "openpose137")
    ev = MicroGestureDataset(index, cfg)
    assert _palm_hits(ev, root) > 0.85
    assert _palm_hits(ev, root, offset=(0.0, -10.0)) < 0.5  # a misplaced point misses: the check can fail
    aug = MicroGestureDataset(index, cfg, train=True, augment=AugmentConfig(flip=0.5, scale=(0.85, 1.15), shift=0.08))
    torch.manual_seed(1)
    assert _palm_hits(aug, root) > 0.85  # flips and crop jitter move pixels and keypoints together
    rolled = MicroGestureDataset(index, cfg, train=True, augment=AugmentConfig(roll=15.0))
    torch.manual_seed(2)
    assert _palm_hits(rolled, root) > 0.85  # so does the camera roll


def test_roll_turns_pixels_and_keypoints_together() -> None:
    import cv2

    from clipmg.train.dataset import affine_jitter

    frames = np.zeros((2, 61, 81, 3), np.uint8)
    kp = np.zeros((3, 3, 3))
    kp[:, 0], kp[:, 1] = (20.0, 30.0, 0.9), (60.0, 30.0, 0.8)  # a level shoulder line; joint 2 missing
    for f in frames:
        for x, y in kp[0, :2, :2]:
            cv2.circle(f, (int(x), int(y)), 2, (255, 255, 255), -1)
    out, k = affine_jitter(frames, kp, 1.0, 0.0, 0.0, 10.0)
    rise = -(k[0, 1, 1] - k[0, 0, 1])  # screen y points down
    assert np.degrees(np.arctan2(rise, k[0, 1, 0] - k[0, 0, 0])) == pytest.approx(10.0)  # counter-clockwise
    assert (k[:, 2, :] == 0).all() and (k[:, :2, 2] == kp[:, :2, 2]).all()  # missing stays 0, scores kept
    assert np.allclose(k[:, :2, :2].mean(1), (40.0, 30.0))  # turned about the frame centre
    for x, y in k[0, :2, :2]:  # each drawn dot went where its keypoint went
        xi, yi = int(round(x)), int(round(y))
        assert out[0, yi - 1 : yi + 2, xi - 1 : xi + 2].max() > 200
    assert out[0, 30, 60].max() < 50 and out[0, 30, 20].max() < 50  # and left its old place
    # without a roll it is the crop-box jitter it always was: a zoom about the centre, then a shift
    _, z = affine_jitter(frames, kp, 1.1, 3.0, -2.0)
    np.testing.assert_allclose(z[0, :2, 0], kp[0, :2, 0] * 1.1 + 40.0 * (1 - 1.1) + 3.0)
    np.testing.assert_allclose(z[0, :2, 1], kp[0, :2, 1] * 1.1 + 30.0 * (1 - 1.1) - 2.0)


def test_no_roll_draws_nothing_so_a_run_without_it_is_unchanged() -> None:
    from clipmg.train.dataset import augment_window

    frames = np.zeros((2, 20, 30, 3), np.uint8)
    kp = np.random.default_rng(0).uniform(1, 19, (4, 5, 3))
    perm = np.arange(5)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    augment_window(frames, kp, perm, AugmentConfig(), a)
    augment_window(frames, kp, perm, AugmentConfig(roll=0.0), b)
    after = a.random()
    assert b.random() == after  # roll 0: the same draws as before the roll existed
    c = np.random.default_rng(7)
    augment_window(frames, kp, perm, AugmentConfig(roll=5.0), c)
    assert c.random() != after  # a roll is one more draw


def test_colour_jitter_changes_pixels_only_and_identity_is_exact() -> None:
    from clipmg.train.dataset import colour_jitter, colour_jitter_images

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 12, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(colour_jitter(frames, 1.0, 1.0, 1.0), frames, atol=1e-3)  # factors of 1: no change
    grey = np.repeat(rng.integers(0, 256, (8, 12, 16, 1)).astype(np.float32), 3, axis=-1)
    np.testing.assert_allclose(colour_jitter(grey, 1.0, 1.0, 0.0), grey, atol=1e-3)  # no saturation to lose
    brighter = colour_jitter(frames, 1.2, 1.0, 1.0)
    assert brighter.sum() > frames.sum() and brighter.min() >= 0 and brighter.max() <= 255
    flat = colour_jitter(frames, 1.0, 0.0, 1.0)  # no contrast: every pixel at the mean grey (saturation kept)
    g = flat @ np.array([0.299, 0.587, 0.114], np.float32)
    assert g.std() < 1.0
    m, sd = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    imgs = (rng.random((8, 3, 6, 6)).astype(np.float32) - np.array(m, np.float32)[:, None, None]) / np.array(
        sd, np.float32
    )[:, None, None]
    aug = AugmentConfig(colour=0.4)
    j1 = colour_jitter_images(imgs, m, sd, aug, np.random.default_rng(3))
    j2 = colour_jitter_images(imgs, m, sd, aug, np.random.default_rng(3))
    assert np.array_equal(j1, j2) and j1.dtype == np.float32 and not np.allclose(j1, imgs)
    same = colour_jitter_images(imgs, m, sd, AugmentConfig(colour=1e-9), np.random.default_rng(3))
    np.testing.assert_allclose(same, imgs, atol=1e-4)  # factors of ~1: unchanged (no rounding to uint8)

    # one draw per window: every frame's mean brightness scaled alike
    def raw(x: np.ndarray) -> np.ndarray:
        return x * np.array(sd, np.float32)[:, None, None] + np.array(m, np.float32)[:, None, None]

    r = raw(j1).mean(axis=(1, 2, 3)) / raw(imgs).mean(axis=(1, 2, 3))
    assert r.std() < 0.05


def test_colour_jitter_in_the_dataset_leaves_keypoints_alone(index) -> None:
    cfg = _cfg(NC)
    plain = MicroGestureDataset(index, cfg, train=True, augment=AugmentConfig(colour=0.0))
    jit = MicroGestureDataset(index, cfg, train=True, augment=AugmentConfig(colour=0.4))
    a = plain.sample(plain.clips[0], np.random.default_rng(5))
    b = jit.sample(jit.clips[0], np.random.default_rng(5))
    assert torch.equal(a["keypoints"], b["keypoints"]) and not torch.equal(a["images"], b["images"])


def test_flip_swaps_sides() -> None:
    perm = flip_permutation("upper22")
    assert sorted(perm.tolist()) == list(range(22)) and (perm[perm] == np.arange(22)).all()
    assert perm[2] == 5 and perm[12] == 17  # RShoulder <-> LShoulder, right thumb tip <-> left thumb tip
    frames = np.zeros((8, 10, 20, 3), np.uint8)
    frames[:, :, 0] = 255
    kp = np.zeros((32, 22, 3), np.float32)
    kp[:, 2] = (0.0, 5.0, 1.0)  # RShoulder at the left edge
    f2, k2 = hflip(frames, kp, perm)
    assert (f2[:, :, -1] == 255).all() and k2[0, 5].tolist() == [19.0, 5.0, 1.0] and (k2[0, 2] == 0).all()
    full = flip_permutation("openpose137")
    assert full[25 + 36] == 25 + 45 and full[95] == 116  # outer eye corners, wrists of the hands


def test_shoulders_stay_on_their_side_after_flips(index) -> None:
    ds = MicroGestureDataset(index, _cfg(NC), train=True, augment=AugmentConfig(flip=1.0))
    torch.manual_seed(0)
    for i in range(len(ds)):
        kp = ds[i]["keypoints"].numpy()
        seen = (kp[:, 2, 2] > 0) & (kp[:, 5, 2] > 0)
        assert (kp[seen, 2, 0] < kp[seen, 5, 0]).mean() > 0.9  # person's right stays image-left


# ------------------------------------------------------------------------------- other layouts
def _pose_only_roots(root: Path, index, tmp_path: Path) -> dict:
    import openpyxl

    out = {}
    clips = [c for c in index.clips if c.video == "001"][:2]
    kp = index.sources["001"].keypoints[: clips[-1].end + 1]  # short files: the frames of two clips
    for layout in ("light_hand", "xlsx"):
        d = tmp_path / layout / "001"
        d.mkdir(parents=True)
        (d / "001_label.csv").write_text(
            (root / "001" / "001_label.csv").read_text().splitlines(True)[0]
            + (root / "001" / "001_label.csv").read_text().splitlines(True)[1]
        )
        if layout == "light_hand":
            tips = np.array([4, 8, 12, 16, 20])
            kp35 = np.concatenate([kp[:, :25], kp[:, 116 + tips], kp[:, 95 + tips]], 1).reshape(len(kp), -1)
            (d / "001_light_hand.csv").write_text(
                "".join(f"{t}," + ",".join(f"{v:.3f}" for v in r) + "\n" for t, r in enumerate(kp35))
            )
        else:
            wb = openpyxl.Workbook(write_only=True)
            ws = wb.create_sheet()
            for r in kp.reshape(len(kp), -1).tolist():
                ws.append(r)
            wb.save(d / "001_openpose.xlsx")
        out[layout] = tmp_path / layout
    anns = [
        {
            "frame_dir": c.clip_id,
            "label": c.label,
            "total_frames": c.length,
            "img_shape": (120, 160),
            "keypoint": index.sources[c.source].keypoints[None, c.start : c.end + 1, :, :2],
            "keypoint_score": index.sources[c.source].keypoints[None, c.start : c.end + 1, :, 2],
        }
        for c in clips
    ]
    (tmp_path / "imigue.pkl").write_bytes(pickle.dumps({"split": {"train": [], "val": []}, "annotations": anns}))
    out["pyskl"] = tmp_path / "imigue.pkl"
    return out


def test_pose_only_layouts_index_and_load(root: Path, index, tmp_path: Path) -> None:
    roots = _pose_only_roots(root, index, tmp_path)
    upper = extract_layout(index.sources["001"].keypoints, "upper22")
    for layout, r in roots.items():
        assert detect_layout(r) == layout
        idx = build_index(r, layout, class_names=SYNTH_CLASSES, keypoint_layout="upper22")
        assert idx.issues.total == 0 and idx.missing["videos without RGB"] >= 1
        assert [c.clip_id for c in idx.clips] == ["001_0", "001_1"]
        c, orig = idx.clips[1], index.clips[1]
        got = idx.sources[c.source].keypoints
        want = upper[orig.start : orig.end + 1] if layout == "pyskl" else upper[: len(got)]
        assert len(got) == (orig.length if layout == "pyskl" else orig.end + 1)
        assert np.allclose(got, want, atol=2e-3), layout
        ds = MicroGestureDataset(idx, _cfg(NC), require_rgb=False)
        item = ds[0]
        assert item["images"].shape == (8, 3, 96, 96) and item["keypoints"].shape == (32, 22, 3)
        assert len(MicroGestureDataset(idx, _cfg(NC))) == 0  # RGB required: every clip is missing its video
    with pytest.raises(DataError, match="cut clips"):
        build_index(roots["pyskl"], "pyskl", background=True)


def test_summary_cli(root: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert summary_main(["summary", str(root), "--background", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"clips: 12 labelled in {NC} classes" in out and "clip duration (frames): mean" in out
    assert "nothing skipped" in out and "no gesture" in out
    assert summary_main(["summary", str(root), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["clips"] == 12 and s["duration_frames"]["count"] == 12
    d = _copy(root, tmp_path)
    (d / "001" / "001_label.csv").write_text("1,2\n")
    assert summary_main(["summary", str(d), "--strict"]) == 2  # a user error: exit 2, one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clipmg-data: ") and "expected 3 values" in err[0]
    assert summary_main(["summary", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def _nan_keypoints(folder: Path) -> None:
    """Rewrite every OpenPose file under ``folder`` with one person whose every value is NaN."""
    nan = json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": [float("nan")] * 75}]})
    for f in folder.rglob("*_keypoints.json"):
        f.write_text(nan)


def test_videos_whose_keypoints_are_all_nan_count_as_without_keypoints(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = _copy(root, tmp_path)
    _nan_keypoints(d / "001")
    assert summary_main(["summary", str(d), "--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["missing"]["videos without keypoints"] == 1
    assert s["clips"] == 12  # the clips stay: their RGB is usable by a no_pose model
    idx = build_index(d, "openpose_json", keypoint_layout="upper22")
    assert not has_keypoints(idx.sources["001"].keypoints) and has_keypoints(idx.sources["002"].keypoints)
