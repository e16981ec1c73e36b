"""The frame clock, the sample rings and the cache: pure logic, tiny model on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest

from clipmg.model.layouts import extract_layout
from clipmg.stream.window import Sample, SampleRings, Schedule, StreamingWindows, decide, offline_logits, softmax, top_k

CLASSES = ["touch chin", "touch forehead", "rub eyes", "fold arm", "no gesture"]


# ------------------------------------------------------------------------------------ schedule
@pytest.mark.parametrize("stride", [4, 8, 12, 16, 32])
@pytest.mark.parametrize("pose_every", [1, 2, 3])
def test_window_frames_follow_stride_and_pose_every(stride: int, pose_every: int) -> None:
    s = Schedule(stride=stride, pose_every=pose_every)
    for w in range(6):
        pose, rgb = s.window_frames(w)
        assert pose.shape == (32,) and rgb.shape == (8,)
        assert pose[0] == w * stride * pose_every
        assert np.all(np.diff(pose) == pose_every)  # every Δp-th frame
        assert np.array_equal(rgb, pose[4 * np.arange(8) + 2])  # RGB frame t = pose sample 4t+2
        assert all(s.is_rgb(int(k)) for k in s.window_rgb_samples(w))
        assert s.last_closed_window(s.window_end(w)) == w  # closes exactly at its last sample
        assert s.last_closed_window(s.window_end(w) - 1) == w - 1
        nxt_pose, nxt_rgb = s.window_frames(w + 1)
        # consecutive windows share 32 - S pose samples and 8 - S/4 RGB frames (the cache hits)
        assert len(np.intersect1d(pose, nxt_pose)) == max(32 - stride, 0)
        assert len(np.intersect1d(rgb, nxt_rgb)) == max(8 - stride // 4, 0)
        assert len(np.setdiff1d(nxt_rgb, rgb)) == min(stride // 4, 8)  # new encodings per window


def test_first_windows_by_hand() -> None:
    s = Schedule(stride=8, pose_every=2)
    pose, rgb = s.window_frames(0)
    assert pose.tolist() == list(range(0, 64, 2))
    assert rgb.tolist() == [4, 12, 20, 28, 36, 44, 52, 60]
    pose1, rgb1 = s.window_frames(1)
    assert pose1[0] == 16 and pose1[-1] == 78 and rgb1.tolist() == [20, 28, 36, 44, 52, 60, 68, 76]
    assert s.newest_sample(-1) == -1 and s.newest_sample(63) == 31 and s.newest_sample(62) == 31
    assert s.last_closed_window(30) == -1 and s.last_closed_window(31) == 0
    assert s.rgb_sample_of(33) == 34 and s.rgb_sample_of(35) == 34


def test_bad_schedules_are_refused() -> None:
    for bad in (dict(stride=6), dict(stride=0), dict(pose_every=0), dict(rgb_offset=4)):
        with pytest.raises(ValueError):
            Schedule(**bad)


def test_plan_skips_whole_stale_windows() -> None:
    s = Schedule(stride=8)
    assert s.plan(30, 0) == (None, 0)  # window 0 not closed yet
    assert s.plan(31, 0) == (0, 0)
    assert s.plan(38, 1) == (None, 0)
    assert s.plan(39, 1) == (1, 0)
    # the worker came back at sample 70 expecting window 1: windows 1..4 closed; run 4, skip 1-3
    assert s.last_closed_window(70) == 4 and s.plan(70, 1) == (4, 3)
    # a fresh worker starting at sample k begins with the first window that starts at or after k
    assert s.first_window_from(0) == 0 and s.first_window_from(1) == 1 and s.first_window_from(16) == 2


def test_rings_tag_slots_and_report_missing() -> None:
    s = Schedule(stride=8)
    r = SampleRings(s, num_joints=2)
    for k in range(32):
        r.put_pose(k, np.full((2, 3), k, np.float32), k, 0.0, 0.0, True)
    pose_missing, rgb_missing = r.missing(0)
    assert pose_missing == [] and rgb_missing == [2, 6, 10, 14, 18, 22, 26, 30]
    r.put_pose(32, np.zeros((2, 3), np.float32), 32, 0.0, 0.0, True)  # overwrites slot of sample 0
    assert not r.has_pose(0) and r.has_pose(32)
    assert r.missing(0)[0] == [0]
    with pytest.raises(ValueError):
        r.put_rgb(3, (0.0, 0.0, 1.0), np.zeros((2, 4)), np.zeros(4))


def test_top_k_and_decide() -> None:
    p = softmax(np.array([0.0, 3.0, 1.0, 2.0, 5.0]))
    assert np.isclose(p.sum(), 1.0)
    assert [i for i, _, _ in top_k(p, CLASSES, 3)] == [4, 1, 3]
    assert decide(p, CLASSES, 0.0) == ("no gesture", pytest.approx(p[4]))
    assert decide(p, CLASSES, 0.0, background=["no gesture"])[0] is None
    assert decide(p, CLASSES, 0.99)[0] is None


# ------------------------------------------------------------------------------------ cache == offline
def _engine(tmp_path_factory: Any, crop: str, backend: str = "torch") -> Any:
    import torch

    from clipmg.engines import load_engine
    from clipmg.engines.export import export_onnx
    from clipmg.model import PreprocessConfig, create_model
    from clipmg.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("clipmg-tiny", num_classes=len(CLASSES), preprocess=PreprocessConfig(crop=crop))
    path = Path(tmp_path_factory.mktemp("ckpt")) / f"tiny-{crop}.safetensors"
    save_checkpoint(path, model, CLASSES)
    if backend == "onnxruntime":
        path = export_onnx(path, path.with_suffix(".onnx")).out_dir
    return load_engine(path, warmup=False)


@pytest.fixture(scope="module", params=["center", "person", "center-onnxruntime"])
def engine(request: Any, tmp_path_factory: Any) -> Any:
    return _engine(tmp_path_factory, *request.param.split("-"))


class CountingEngine:
    """The real engine, counting how many frames it encodes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.frames = inner, 0

    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        self.frames += len(images)
        return self.inner.encode_frames(images)

    def head(self, *a: np.ndarray) -> np.ndarray:
        return self.inner.head(*a)

    @property
    def pose_cache(self) -> bool:
        return self.inner.pose_cache

    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        return self.inner.pose_partials(stage, x)

    def head_cached(self, *a: np.ndarray) -> np.ndarray:
        return self.inner.head_cached(*a)


def _stream(n: int, h: int = 72, w: int = 128, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` frames ``(n, h, w, 3)`` and OpenPose-137 keypoints ``(n, 137, 3)`` of a moving point cloud."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    base = rng.uniform([20, 10], [w - 20, h - 10], (137, 2))
    drift = np.cumsum(rng.normal(0, 1.5, (n, 137, 2)), axis=0)
    kp = np.concatenate([base + drift, rng.uniform(0.2, 1.0, (n, 137, 1))], axis=-1).astype(np.float32)
    kp[:, 5:9, 2] = 0.0  # a few joints never detected
    return frames, kp


@pytest.mark.parametrize("stride,pose_every", [(8, 1), (4, 2), (16, 1)])
def test_streaming_equals_offline(engine: Any, stride: int, pose_every: int) -> None:
    cfg = engine.config
    sched = Schedule.from_config(cfg.clip, stride, pose_every)
    counting = CountingEngine(engine)
    sw = StreamingWindows(counting, cfg, sched)
    n_windows = 4
    n_frames = (sched.window_end(n_windows - 1) + 1) * pose_every
    frames, kp137 = _stream(n_frames)
    kp = extract_layout(kp137, cfg.pose.layout)  # (n, J, 3) source pixels
    for seq in range(n_frames):  # the frame clock: only every Δp-th frame is a pose sample
        if seq % pose_every:
            continue
        k = seq // pose_every
        sw.add_sample(k, frames[seq], kp[seq], seq, float(seq), 1000.0 + seq, True)
        w = sched.last_closed_window(k)
        if w < 0 or sched.window_end(w) != k:
            continue
        res = sw.run(w)
        inputs, logits = res.inputs, res.logits
        pose_seqs, rgb_seqs = sched.window_frames(w)
        assert inputs.pose_seqs.tolist() == pose_seqs.tolist()
        assert inputs.rgb_seqs.tolist() == rgb_seqs.tolist()
        boxes = None if cfg.preprocess.crop == "center" else inputs.boxes  # person boxes depend on history
        ref = offline_logits(engine, frames[rgb_seqs], kp[pose_seqs], cfg, boxes=boxes)
        np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    # each RGB sample was encoded exactly once: S/4 new frames per window after the first
    assert counting.frames == sw.encoded == 8 + (n_windows - 1) * stride // 4
    assert sw.heads == n_windows
    # and each group's heatmap went through the pose branch's first stage once (the cache is used)
    assert sw.pose_cache is not None and sw.pose_cache.computed[0] == 8 + (n_windows - 1) * stride // 4


def test_streaming_without_the_pose_cache_equals_with_it(engine: Any) -> None:
    """``pose_cache=False`` (and any engine without the pieces, e.g. TensorRT) runs the whole head."""
    cfg = engine.config
    sched = Schedule.from_config(cfg.clip, 8, 1)
    frames, kp137 = _stream(sched.window_end(2) + 1)
    kp = extract_layout(kp137, cfg.pose.layout)
    with_cache, without = StreamingWindows(engine, cfg, sched), StreamingWindows(engine, cfg, sched, pose_cache=False)
    assert with_cache.pose_cache is not None and without.pose_cache is None
    for w in range(3):  # the rings hold one window: add each window's samples, then run it
        lo, hi = (sched.window_end(w - 1) + 1 if w else 0), sched.window_end(w) + 1
        for sw in (with_cache, without):
            sw.add_samples([Sample(k, frames[k], kp[k], k, 0.0, 0.0, True) for k in range(lo, hi)])
        np.testing.assert_allclose(with_cache.run(w).logits, without.run(w).logits, rtol=1e-4, atol=1e-5)


def test_a_skipped_window_is_not_computed_and_incomplete_windows_refuse(tmp_path_factory: Any) -> None:
    eng = _engine(tmp_path_factory, "center")
    cfg = eng.config
    sched = Schedule.from_config(cfg.clip, 8, 1)
    sw = StreamingWindows(CountingEngine(eng), cfg, sched)
    frames, kp137 = _stream(80)
    kp = extract_layout(kp137, cfg.pose.layout)
    # only window 3's samples (24..55): windows 0-2 were skipped; its 8 frames are encoded in one batch
    assert sw.add_samples([Sample(k, frames[k], kp[k], k, 0.0, 0.0, k % 3 > 0) for k in range(24, 56)]) == 8
    assert sw.engine.frames == 8 and sw.encoded == 8
    with pytest.raises(KeyError):
        sw.run(2)
    res = sw.run(3)
    inputs, logits = res.inputs, res.logits
    np.testing.assert_allclose(
        logits, offline_logits(eng, frames[inputs.rgb_seqs], kp[inputs.pose_seqs], cfg), rtol=1e-4, atol=1e-5
    )
    assert 0.6 < inputs.person.mean() < 0.7


def test_deferred_rgb_frames_are_encoded_in_one_call_with_the_same_answer(tmp_path_factory: Any) -> None:
    """``defer_rgb``: a window's new frames wait and go through the encoder together (one call),
    the result equal to encoding each on arrival; a pending frame counts as added."""
    eng = _engine(tmp_path_factory, "person")
    cfg = eng.config
    sched = Schedule.from_config(cfg.clip, 8, 1)
    frames, kp137 = _stream(sched.window_end(2) + 1)
    kp = extract_layout(kp137, cfg.pose.layout)
    deferred, eager = (
        StreamingWindows(CountingEngine(eng), cfg, sched),
        StreamingWindows(CountingEngine(eng), cfg, sched),
    )
    for k in range(sched.window_end(2) + 1):
        smp = Sample(k, frames[k], kp[k], k, 0.0, 0.0, True)
        deferred.add_samples([smp], defer_rgb=True)
        eager.add_samples([smp])
        w = sched.last_closed_window(k)
        if w >= 0 and sched.window_end(w) == k:
            assert deferred.missing(w) == ([], [])  # pending frames are not missing
            np.testing.assert_allclose(deferred.run(w).logits, eager.run(w).logits, rtol=1e-5, atol=1e-6)
    assert deferred.encoded == eager.encoded == 8 + 2 * 2
    assert (deferred.encode_calls, eager.encode_calls) == (3, 12)  # one call a window against one a frame


def test_decision_policy_answers_or_not_without_a_person(tmp_path_factory: Any) -> None:
    from clipmg.stream.window import Decision

    eng = _engine(tmp_path_factory, "center")
    cfg = eng.config
    sched = Schedule.from_config(cfg.clip, 8, 1)
    frames, kp137 = _stream(32)
    kp = extract_layout(kp137, cfg.pose.layout)
    names = tuple(eng.class_names)
    for policy, answered in (("answer", True), ("none", False)):
        sw = StreamingWindows(CountingEngine(eng), cfg, sched)
        sw.add_samples([Sample(k, frames[k], kp[k], k, 0.0, 0.0, False) for k in range(32)])
        res = sw.run(0, Decision(names, top_k=2, threshold=0.0, no_person=policy))
        assert not res.person and res.answered is answered and sw.heads == int(answered)
        if answered:
            assert len(res.answer.top) == 2 and res.answer.label == res.answer.top[0][1]
            assert abs(sum(res.answer.probs.values()) - 1) < 1e-6
        else:
            assert res.logits is None and res.answer.top == [] and res.answer.label is None


def test_cache_benchmark_drives_the_worker_and_all_paths_agree() -> None:
    from clipmg.bench.cache import run

    r = run("clipmg-tiny", stride=8, windows=2, warmup=1, frame_size=128)
    assert r["encodings_per_window"] == {"cached": 2, "naive": 8}
    assert r["encoder_calls_per_window"] == {"worker": 2, "window": 1, "frames_only": 2}
    assert r["pose_cache"] and r["pose_stage_inputs_per_window"] == [2, 4, 6]
    assert r["max_abs_logit_diff"] < 1e-4 and r["cached_ms"] > 0 and r["naive_ms"] > 0
    assert r["cached_frames_only_ms"] > 0 and len(r["cached_frames_only_ms_all"]) == 2
