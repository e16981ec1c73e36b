"""The live worker's window step is the one window implementation, with every cache the engine has.

A call-counting engine wraps a real engine (the tiny preset, PyTorch and ONNX Runtime) inside the
shipped ``Worker``, driven frame by frame through a real shared-memory ring (``bench/drive.py``,
what the cache benchmark drives too). It proves that, once running, the worker calls
``head_cached`` (never the whole ``head``), computes each pose group's skeleton-stage inputs once,
encodes a window's new RGB frames in one call, and publishes logits equal to the offline model's on
the same frames.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest

from clipmg.bench.drive import DrivenWorker
from clipmg.model.layouts import extract_layout
from clipmg.stream.config import StreamConfig
from clipmg.stream.window import Schedule, offline_logits

CLASSES = ["touch chin", "touch forehead", "rub eyes", "fold arm", "no gesture"]
H, W = 72, 128


class CallCounter:
    """The real engine; every call counted by method (and pose stage), frames encoded counted too."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter = Counter()
        self.encoded = 0
        self.config, self.class_names, self.identity = inner.config, inner.class_names, inner.identity

    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        self.calls["encode_frames"] += 1
        self.encoded += len(images)
        return self.inner.encode_frames(images)

    def head(self, *a: np.ndarray) -> np.ndarray:
        self.calls["head"] += 1
        return self.inner.head(*a)

    @property
    def pose_cache(self) -> bool:
        return self.inner.pose_cache

    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        self.calls[f"pose_stage{stage}"] += 1
        self.calls[f"pose_stage{stage}_inputs"] += len(x)
        return self.inner.pose_partials(stage, x)

    def head_cached(self, *a: np.ndarray) -> np.ndarray:
        self.calls["head_cached"] += 1
        return self.inner.head_cached(*a)


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def engine(request: Any, tmp_path_factory: Any) -> Any:
    import torch

    from clipmg.engines import load_engine
    from clipmg.engines.export import export_onnx
    from clipmg.model import PreprocessConfig, create_model
    from clipmg.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("clipmg-tiny", num_classes=len(CLASSES), preprocess=PreprocessConfig(crop="person"))
    path = save_checkpoint(Path(tmp_path_factory.mktemp("worker")) / "tiny.safetensors", model, CLASSES)
    if request.param == "onnxruntime":
        path = export_onnx(path, path.with_suffix(".onnx")).out_dir
    return load_engine(path, warmup=False)


def _stream(n: int, seed: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    base = rng.uniform([20, 10], [W - 20, H - 10], (137, 2))
    drift = np.cumsum(rng.normal(0, 1.5, (n, 137, 2)), axis=0)
    kp = np.concatenate([base + drift, rng.uniform(0.2, 1.0, (n, 137, 1))], axis=-1).astype(np.float32)
    return frames, kp


@pytest.mark.parametrize("rgb_batch", ["window", "each"])
def test_the_live_worker_runs_the_cached_head_and_equals_offline(engine: Any, rgb_batch: str) -> None:
    stride, n_windows = 8, 5
    cfg = StreamConfig(stride=stride, include_logits=True, rgb_batch=rgb_batch, threshold=0.0)
    sched = Schedule.from_config(engine.config.clip, stride, 1)
    frames, kp137 = _stream(sched.window_end(n_windows - 1) + 1)
    kp = extract_layout(kp137, engine.config.pose.layout)
    counted = CallCounter(engine)
    published = []
    with DrivenWorker(counted, cfg, H, W) as d:
        for seq in range(len(frames)):
            before = counted.calls.copy()
            wins = d.feed(frames[seq], kp137[seq])
            published += wins
            if seq < sched.window_end(0):  # no window yet: at most the frame encoder (eager) ran
                assert set((counted.calls - before).keys()) <= {"encode_frames"}
            for m in wins:  # the window's calls, once running: two new groups, the pose stages on what is new
                delta = counted.calls - before
                assert delta["head"] == 0 and delta["head_cached"] == 1
                if m.window > 0:
                    assert [delta[f"pose_stage{i}_inputs"] for i in range(3)] == [2, 4, 6]
                    assert [delta[f"pose_stage{i}"] for i in range(3)] == [1, 1, 1]
    assert [m.window for m in published] == list(range(n_windows))
    assert counted.calls["head"] == 0 and counted.calls["head_cached"] == n_windows
    # every RGB sample encoded exactly once; in one call a window (default) or one call a frame
    assert counted.encoded == 8 + (n_windows - 1) * stride // 4
    calls = 1 + (n_windows - 1) if rgb_batch == "window" else counted.encoded
    assert counted.calls["encode_frames"] == calls
    assert [m.computed.rgb_encoded for m in published] == [8] + [stride // 4] * (n_windows - 1)
    # the logits the worker published are the offline model's on the same frames and crop boxes
    for m in published:
        pose_seqs, rgb_seqs = np.array(m.frames.pose_seqs), np.array(m.frames.rgb_seqs)
        assert (pose_seqs == sched.window_frames(m.window)[0]).all()
        ref = offline_logits(engine, frames[rgb_seqs], kp[pose_seqs], engine.config, boxes=_boxes(engine, kp, rgb_seqs))
        np.testing.assert_allclose(np.array(m.logits, np.float32), ref, rtol=1e-4, atol=1e-5)
        assert m.topk[0].label == CLASSES[int(np.argmax(ref))]


def _boxes(engine: Any, kp: np.ndarray, rgb_seqs: np.ndarray) -> list:
    """The person-crop boxes the stream fixed for ``rgb_seqs``: the causal tracker replayed over every
    RGB sample of the stream so far, in order (what the worker's BoxPolicy did)."""
    from clipmg.stream.window import BoxPolicy

    policy = BoxPolicy(engine.config)
    boxes = {}
    for s in range(int(rgb_seqs[-1]) + 1):
        if s % 4 == 2:
            boxes[s] = policy.box(kp[s], W, H)
    return [boxes[int(s)] for s in rgb_seqs]


def test_a_worker_that_falls_behind_never_encodes_frames_of_skipped_windows(engine: Any) -> None:
    """Frames kept for one encoder call (``--rgb-batch window``) whose windows are then skipped are
    dropped, not encoded: a late worker must not make itself later."""

    cfg = StreamConfig(stride=8, include_logits=True, rgb_batch="window")
    frames, kp137 = _stream(101)
    counted = CallCounter(engine)
    with DrivenWorker(counted, cfg, H, W) as d:
        for seq in range(59):  # keeping up: windows 0-3 published, RGB sample 58 (window 4's) kept pending
            d.feed(frames[seq], kp137[seq])
        assert [k for k, _, _ in d.worker.sw.pending] == [58]
        encoded = counted.encoded
        for seq in range(59, 101):  # the worker stalls for 42 frames ...
            d.seq += 1
            d.ring.write(frames[seq], seq, 0.0, 0.0, kp137[seq])
        while d.worker.step():  # ... then runs the newest closed window (8: samples 64-95) only
            pass
        wins = [m for m in d.sender.messages if m[0].startswith(b"mg.window")]
        assert d.worker.skipped == 4 and len(wins) == 5
        assert counted.encoded - encoded == 8  # window 8's eight frames; sample 58 was dropped, not encoded
