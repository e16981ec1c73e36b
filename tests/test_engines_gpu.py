"""TensorRT engines against PyTorch float32: FP16 relative error <= 1e-2 and top-1 agreement >= 99 %.

Marked ``gpu``: every test here skips, saying what is missing, without an NVIDIA GPU and TensorRT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from clipmg.engines import load_engine
from clipmg.engines.build import BuildOptions, build_engines
from clipmg.engines.export import example_inputs, export_onnx, rel_error
from clipmg.model import create_model
from clipmg.model.checkpoint import save_checkpoint

pytestmark = pytest.mark.gpu


def _gpu_and_tensorrt() -> str | None:
    """Why these tests cannot run here, or None."""
    try:
        import torch
    except ImportError:
        return "PyTorch is missing"
    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU and TensorRT: no CUDA GPU is visible to PyTorch"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "needs an NVIDIA GPU and TensorRT: TensorRT is not installed (pip install 'clipmg[gpu]')"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    reason = _gpu_and_tensorrt()
    if reason:
        pytest.skip(reason)
    import torch

    root = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    model = create_model("clipmg-tiny", num_classes=8)
    with torch.no_grad():  # trained classifiers have wider logit margins than a fresh init
        model.classifier[-1].weight.mul_(10.0)
    ckpt = save_checkpoint(root / "tiny.safetensors", model, [f"c{i}" for i in range(8)])
    onnx_dir = export_onnx(ckpt, root / "onnx").out_dir
    build_engines(onnx_dir, root / "fp16", BuildOptions(precision="fp16", timing_cache=""))
    return {"ckpt": ckpt, "onnx": onnx_dir, "fp16": root / "fp16", "root": root}


def test_tensorrt_fp16_matches_pytorch_fp32(built: Dict[str, Path]) -> None:
    te = load_engine(built["ckpt"], warmup=False)
    trt = load_engine(built["fp16"])
    assert trt.backend == "tensorrt" and trt.precision == "fp16"
    images, kp = example_inputs(te.config, windows=100, seed=3)
    ref = np.concatenate([te(images[i : i + 10], kp[i : i + 10]) for i in range(0, 100, 10)])
    got = np.concatenate([trt(images[i : i + 1], kp[i : i + 1]) for i in range(100)])  # streaming: batch 1
    assert rel_error(got, ref) <= 1e-2
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.99


def test_cuda_graphs_give_the_same_answers_across_shapes(built: Dict[str, Path]) -> None:
    plain = load_engine(built["fp16"], cuda_graphs=False, warmup=False)
    graphs = load_engine(built["fp16"], cuda_graphs=True, warmup=False)
    images, _ = example_inputs(plain.config, windows=3, seed=4)
    frames = images.reshape(-1, *images.shape[2:])  # 24 frames: more than the profile's 8
    for n in (1, 3, 1, 24):
        a, b = plain.encode_frames(frames[:n]), graphs.encode_frames(frames[:n])
        np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-6)


def test_header_records_this_gpu_and_metadata_round_trips(built: Dict[str, Path]) -> None:
    from clipmg.engines.trt_format import current_runtime

    e = load_engine(built["fp16"], warmup=False)
    onnx_engine = load_engine(built["onnx"], warmup=False)
    assert (
        e.metadata == onnx_engine.metadata
        and e.identity["checkpoint_sha256"] == onnx_engine.identity["checkpoint_sha256"]
    )
    for header in e.headers.values():
        assert header["built_for"] == current_runtime().as_dict()


def test_torch_tensorrt_route(built: Dict[str, Path]) -> None:
    pytest.importorskip("torch_tensorrt", reason="needs torch-tensorrt (pip install 'clipmg[gpu]')")
    out = build_engines(built["ckpt"], built["root"] / "tt", BuildOptions(via="torch-tensorrt", timing_cache=""))
    te, tt = load_engine(built["ckpt"], warmup=False), load_engine(out)
    images, kp = example_inputs(te.config, windows=4, seed=6)
    assert rel_error(tt(images, kp), te(images, kp)) <= 1e-2


@pytest.mark.slow
def test_vitb32_fp16_speed_and_accuracy(tmp_path: Path) -> None:
    """ViT-B/32: FP16 engine within 1e-2 of PyTorch float32, and >= 3x eager float32 on the same GPU."""
    reason = _gpu_and_tensorrt()
    if reason:
        pytest.skip(reason)
    import time

    import torch

    torch.manual_seed(0)
    model = create_model("clipmg-vitb32", num_classes=32)
    ckpt = save_checkpoint(tmp_path / "b32.safetensors", model, [f"c{i}" for i in range(32)])
    build_engines(ckpt, tmp_path / "fp16", BuildOptions(timing_cache=""))
    eager, trt = load_engine(ckpt, device="cuda:eager"), load_engine(tmp_path / "fp16")
    images, kp = example_inputs(eager.config, windows=8, seed=1)
    assert rel_error(trt(images, kp), eager(images, kp)) <= 1e-2
    frames = images[0]

    def per_call(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        return (time.perf_counter() - t0) / 20

    assert per_call(lambda: eager.encode_frames(frames)) / per_call(lambda: trt.encode_frames(frames)) >= 3.0
