"""ONNX export of the ViT-B/32 preset == PyTorch (relative error of logits <= 1e-4), two variants.

Marked ``slow`` (about a minute on two cores): random weights, real architecture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clipmg.engines import load_engine
from clipmg.engines.export import example_inputs, export_onnx, rel_error
from clipmg.model import create_model
from clipmg.model.checkpoint import save_checkpoint

pytestmark = pytest.mark.slow
TOL = 1e-4


@pytest.mark.parametrize("variant", ["full", "no_pose"])
def test_vitb32_onnx_matches_pytorch(tmp_path: Path, variant: str) -> None:
    import torch

    torch.manual_seed(0)
    model = create_model("clipmg-vitb32", num_classes=32, variant=variant)
    ckpt = save_checkpoint(tmp_path / "b32.safetensors", model, [f"c{i}" for i in range(32)])
    res = export_onnx(ckpt, tmp_path / "onnx")
    errors = res.manifest["check"]["errors"]  # one window: encoder (8 frames), head, composition
    assert set(errors) == {
        "frame_encoder.tokens",
        "frame_encoder.frame_emb",
        "window_head.logits",
        "composition.logits",
        *(["window_head_cached.logits"] if variant == "full" else []),
    }
    assert max(errors.values()) <= TOL, errors

    te = load_engine(ckpt, warmup=False)
    oe = load_engine(tmp_path / "onnx", warmup=False, threads=2)
    images, kp = example_inputs(te.config, windows=1, seed=5)
    frames = images[0, :3]  # a batch other than the trace (2) and check (8) batches
    (tx, tc), (ox, oc) = te.encode_frames(frames), oe.encode_frames(frames)
    assert rel_error(ox, tx) <= TOL and rel_error(oc, tc) <= TOL
    x, c = te.encode_frames(images[0])
    x, c = x[None], c[None]
    assert rel_error(oe.head(x, c, kp), te.head(x, c, kp)) <= TOL
    assert oe.pose_cache == (variant == "full")
    if oe.pose_cache:  # the pose-branch graphs, window assembled in pieces, against the whole head
        from clipmg.model.pose_cache import PoseBranchCache

        pre = PoseBranchCache(oe.pose_partials, 8, 4).window(0, kp[0])[None]
        assert rel_error(oe.head_cached(x, c, kp, pre), te.head(x, c, kp)) <= TOL
