"""Engines on the CPU: ONNX export == PyTorch, artifact round trips, refusals, CLI error paths.

Real files throughout: tiny checkpoints written with ``save_checkpoint``, real ONNX exports run by
ONNX Runtime, real (fake-plan) TensorRT engine files for the header and refusal logic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import onnx
import pytest

from clipmg.engines import Engine, EngineError, load_engine
from clipmg.engines.artifacts import MANIFEST, TRT_EXPORT, detect_artifact, file_entry, write_manifest
from clipmg.engines.export import FRAME_ENCODER, WINDOW_HEAD, ExportCheckError, example_inputs, export_onnx, rel_error
from clipmg.engines.metadata import META_KEY, preprocess_summary
from clipmg.engines.quantize import compare_top1
from clipmg.engines.trt_format import RuntimeInfo, check_compatible, read_engine_file, write_engine_file
from clipmg.model import PreprocessConfig, create_model
from clipmg.model.checkpoint import file_sha256, save_checkpoint

CLASSES = ["nod", "shrug", "touch_face", "cross_arms", "scratch"]
DURATIONS = {"mean_s": 1.9, "std_s": 0.6}
TOL = 1e-4


def _checkpoint(path: Path, variant: str, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    model = create_model("clipmg-tiny", num_classes=len(CLASSES), variant=variant)
    return save_checkpoint(path, model, CLASSES, duration_stats=DURATIONS)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Checkpoints and ONNX exports of the tiny preset, ``full`` and ``no_pose``, made once."""
    root = tmp_path_factory.mktemp("engines")
    out: Dict[str, Path] = {}
    for variant in ("full", "no_pose"):
        ckpt = _checkpoint(root / f"{variant}.safetensors", variant)
        out[f"{variant}-ckpt"] = ckpt
        out[variant] = export_onnx(ckpt, root / f"{variant}-onnx").out_dir
    out["root"] = root
    return out


def _tensorrt_runs_here() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- ONNX == PyTorch
@pytest.mark.parametrize("variant", ["full", "no_pose"])
def test_onnx_matches_pytorch(work: Dict[str, Path], variant: str) -> None:
    """Frame encoder, head and their composition within 1e-4 (relative) of PyTorch, at batch sizes
    other than the trace batch (2) and the export check's (1)."""
    torch_engine = load_engine(work[f"{variant}-ckpt"], warmup=False)
    onnx_engine = load_engine(work[variant], warmup=False)
    images, kp = example_inputs(torch_engine.config, windows=3, seed=7)
    flat = images.reshape(-1, *images.shape[2:])
    tx, tc = torch_engine.encode_frames(flat)
    ox, oc = onnx_engine.encode_frames(flat)
    assert rel_error(ox, tx) <= TOL and rel_error(oc, tc) <= TOL
    x, c = tx.reshape(3, 8, *tx.shape[1:]), tc.reshape(3, 8, -1)
    assert rel_error(onnx_engine.head(x, c, kp), torch_engine.head(x, c, kp)) <= TOL
    assert rel_error(onnx_engine(images, kp), torch_engine(images, kp)) <= TOL
    single = onnx_engine.encode_frames(flat[:1])[0]  # batch 1 through the dynamic axis
    assert rel_error(single, tx[:1]) <= TOL


def test_head_inputs_a_variant_does_not_use_are_absent(work: Dict[str, Path]) -> None:
    full = onnx.load(str(work["full"] / WINDOW_HEAD), load_external_data=False)
    no_pose = onnx.load(str(work["no_pose"] / WINDOW_HEAD), load_external_data=False)
    assert [i.name for i in full.graph.input] == ["tokens", "keypoints"]
    assert [i.name for i in no_pose.graph.input] == ["tokens"]
    # the engine still takes all three and ignores the unused ones
    engine = load_engine(work["no_pose"], warmup=False)
    images, kp = engine.dummy_inputs(1)
    a = engine(images, kp)
    b = engine(images, np.zeros_like(kp))
    np.testing.assert_array_equal(a, b)


def test_pose_branch_pieces_match_pytorch(work: Dict[str, Path], tmp_path: Path) -> None:
    """The pose-stage graphs and the cached head against the torch engine's, stage by stage, and a
    window assembled from them against the whole head; an export without them runs the whole head."""
    from clipmg.model.pose_cache import PoseBranchCache

    te = load_engine(work["full-ckpt"], warmup=False)
    oe = load_engine(work["full"], warmup=False)
    assert te.pose_cache and oe.pose_cache
    cfg = oe.config
    images, kp = example_inputs(cfg, windows=3, seed=11)
    x = kp.reshape(3 * 8, 4, *kp.shape[2:])  # every group of the three windows
    for stage in range(3):
        taps = oe.pose_partials(stage, x)
        assert rel_error(taps, te.pose_partials(stage, x)) <= TOL
        x = taps[:, 1]  # some pre-activations of the right shape for the next stage
    with pytest.raises(ValueError, match="stage 1 input: expected shape"):
        oe.pose_partials(1, kp)
    flat = images.reshape(-1, *images.shape[2:])
    tx, tc = te.encode_frames(flat)
    tokens, emb = tx.reshape(3, 8, *tx.shape[1:]), tc.reshape(3, 8, -1)
    pre = np.stack([PoseBranchCache(oe.pose_partials, 8, 4).window(0, k) for k in kp])
    whole = te.head(tokens, emb, kp)
    assert rel_error(oe.head_cached(tokens, emb, kp, pre), whole) <= TOL
    assert rel_error(te.head_cached(tokens, emb, kp, pre), whole) <= TOL
    with pytest.raises(ValueError, match="pose_pre: expected shape"):
        oe.head_cached(tokens, emb, kp, pre[:, :, :4])

    plain = export_onnx(work["full-ckpt"], tmp_path / "plain", pose_cache=False).out_dir
    assert sorted(json.loads((plain / MANIFEST).read_text())["files"]) == ["frame_encoder", "window_head"]
    pe = load_engine(plain, warmup=False)
    assert not pe.pose_cache and rel_error(pe.head(tokens, emb, kp), whole) <= TOL
    with pytest.raises(EngineError, match="does not run the pose branch in pieces"):
        pe.pose_partials(0, kp[:, :4])
    assert not load_engine(work["no_pose"], warmup=False).pose_cache


# ----------------------------------------------------------------------------- metadata
def test_export_layout_and_metadata(work: Dict[str, Path]) -> None:
    d, ckpt = work["full"], work["full-ckpt"]
    manifest = json.loads((d / MANIFEST).read_text())
    graphs = ["frame_encoder", "window_head", "pose_stage0", "pose_stage1", "pose_stage2", "window_head_cached"]
    assert sorted(p.name for p in d.iterdir()) == sorted([*(f"{g}.onnx" for g in graphs), MANIFEST])
    assert sorted(manifest["files"]) == sorted(graphs) and sorted(manifest["metadata"]["io"]) == sorted(graphs)
    assert manifest["files"]["frame_encoder"]["sha256"] == file_sha256(d / FRAME_ENCODER)
    assert set(manifest["check"]["errors"]) >= {"window_head.logits", "window_head_cached.logits"}
    assert max(manifest["check"]["errors"].values()) <= TOL
    for graph in graphs:
        fname = manifest["files"][graph]["file"]
        props = {p.key: p.value for p in onnx.load(str(d / fname)).metadata_props}
        meta = json.loads(props[META_KEY])
        assert props["clipmg.graph"] == graph
        assert meta == manifest["metadata"]
        assert meta["class_names"] == CLASSES and meta["duration_stats"] == DURATIONS
        assert meta["checkpoint_sha256"] == file_sha256(ckpt)
        assert meta["config"]["name"] == "clipmg-tiny" and meta["config"]["variant"] == "full"
        assert meta["preprocess"]["mean"] == list(PreprocessConfig().mean)
        assert {"torch", "onnx", "opset", "clipmg"} <= set(meta["exporter"]) and meta["exporter"]["opset"] == 17


def test_round_trip_through_load_engine(work: Dict[str, Path]) -> None:
    """Checkpoint -> torch engine and export -> onnxruntime engine: same identity, metadata, answers."""
    te = load_engine(work["full-ckpt"])
    oe = load_engine(work["full"], threads=1)
    assert (te.backend, oe.backend) == ("torch", "onnxruntime")
    assert isinstance(oe, Engine) and oe.precision == "fp32"
    for e in (te, oe):
        assert e.class_names == CLASSES
        assert e.metadata["duration_stats"] == DURATIONS
        assert e.metadata["preprocess"] == preprocess_summary(e.config)
    assert te.config == oe.config
    ti, oi = te.identity, oe.identity
    assert ti["checkpoint_sha256"] == oi["checkpoint_sha256"] == file_sha256(work["full-ckpt"])
    assert (ti["preset"], ti["variant"]) == (oi["preset"], oi["variant"]) == ("clipmg-tiny", "full")
    images, kp = te.dummy_inputs(2)
    assert rel_error(oe(images, kp), te(images, kp)) <= TOL
    # a model file inside the export stands for its directory
    assert detect_artifact(work["full"] / FRAME_ENCODER) == ("onnx", work["full"])


def test_wrong_input_shapes_are_refused_with_the_expected_shape(work: Dict[str, Path]) -> None:
    e = load_engine(work["full"], warmup=False)
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, 96, 96\)"):
        e.encode_frames(np.zeros((2, 3, 64, 64), np.float32))
    x, c = e.encode_frames(np.zeros((8, 3, 96, 96), np.float32))
    with pytest.raises(ValueError, match="keypoints: expected shape"):
        e.head(x[None], c[None], np.zeros((1, 32, 17, 3), np.float32))


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "expect, words",
    [
        ({"num_classes": 7}, "has 5 classes but 7 were requested"),
        ({"class_names": ["a", "b", "c", "d", "e"]}, "class names differ"),
        ({"variant": "no_pose"}, "variant is 'full'"),
        ({"preprocess": PreprocessConfig(crop="person")}, "preprocess.crop is 'center'"),
        ({"image_size": 224}, "image_size is 96"),
    ],
)
@pytest.mark.parametrize("artifact", ["full", "full-ckpt"])
def test_mismatched_metadata_is_refused(work: Dict[str, Path], artifact: str, expect: dict, words: str) -> None:
    with pytest.raises(EngineError) as err:
        load_engine(work[artifact], warmup=False, **expect)
    msg = str(err.value)
    assert words in msg and "\n" not in msg and "drop the conflicting options" in msg


def test_truncated_and_corrupt_onnx_files_are_refused(work: Dict[str, Path], tmp_path: Path) -> None:
    d = _copy(work["full"], tmp_path / "trunc")
    data = (d / FRAME_ENCODER).read_bytes()
    (d / FRAME_ENCODER).write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError, match="truncated"):
        load_engine(d, warmup=False)

    d = _copy(work["full"], tmp_path / "flipped")  # same size, one weight byte changed
    data = bytearray((d / FRAME_ENCODER).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / FRAME_ENCODER).write_bytes(bytes(data))
    with pytest.raises(EngineError, match="sha256"):
        load_engine(d, warmup=False)

    d = _copy(work["full"], tmp_path / "garbage")  # unparsable, hash check skipped: ONNX Runtime refuses
    (d / WINDOW_HEAD).write_bytes(b"\x00garbage" * ((d / WINDOW_HEAD).stat().st_size // 8))
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["files"]["window_head"] = file_entry(d / WINDOW_HEAD)
    write_manifest(d, manifest)
    with pytest.raises(EngineError, match="cannot be loaded by ONNX Runtime"):
        load_engine(d, warmup=False)


def test_incomplete_or_mixed_exports_are_refused(work: Dict[str, Path], tmp_path: Path) -> None:
    d = _copy(work["full"], tmp_path / "no-manifest")
    (d / MANIFEST).unlink()
    with pytest.raises(EngineError, match="not a finished clipmg export"):
        load_engine(d, warmup=False)

    d = _copy(work["full"], tmp_path / "bad-manifest")
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        load_engine(d, warmup=False)

    d = _copy(work["full"], tmp_path / "mixed")  # head of another export, manifest updated to match
    shutil.copy(work["no_pose"] / WINDOW_HEAD, d / WINDOW_HEAD)
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["files"]["window_head"] = file_entry(d / WINDOW_HEAD)
    write_manifest(d, manifest)
    with pytest.raises(EngineError, match="different exports"):
        load_engine(d, warmup=False)

    d = _copy(work["full"], tmp_path / "stage-missing")  # a manifest that lost one pose stage
    manifest = json.loads((d / MANIFEST).read_text())
    del manifest["files"]["pose_stage2"]
    write_manifest(d, manifest)
    with pytest.raises(EngineError, match="no pose_stage2 in its manifest"):
        load_engine(d, warmup=False)

    other = export_onnx(_checkpoint(tmp_path / "other.safetensors", "full", seed=1), tmp_path / "other").out_dir
    d = _copy(work["full"], tmp_path / "mixed-pose")  # one pose stage of another checkpoint's export
    shutil.copy(other / "pose_stage1.onnx", d / "pose_stage1.onnx")
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["files"]["pose_stage1"] = file_entry(d / "pose_stage1.onnx")
    write_manifest(d, manifest)
    with pytest.raises(EngineError, match="different exports"):
        load_engine(d, warmup=False)


def test_truncated_checkpoint_is_refused(work: Dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "cut.safetensors"
    data = work["full-ckpt"].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(EngineError, match="truncated or corrupt"):
        load_engine(bad, warmup=False)
    with pytest.raises(EngineError, match="does not exist"):
        load_engine(tmp_path / "missing.safetensors")


def test_failed_export_check_leaves_nothing(work: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ExportCheckError, match="above the tolerance"):
        export_onnx(work["full-ckpt"], out, tolerance=0.0)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_refuses_an_unrelated_non_empty_directory(work: Dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EngineError, match="not empty and is not a clipmg artifact"):
        export_onnx(work["full-ckpt"], tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- int8
def test_int8_is_measured_and_off_by_default_without_validation(work: Dict[str, Path], tmp_path: Path) -> None:
    res = export_onnx(work["full-ckpt"], tmp_path / "q", int8=True, int8_samples=4)
    report = res.manifest["int8"]
    assert report["validation"] == "synthetic" and report["default"] is False and report["samples"] == 4
    assert load_engine(tmp_path / "q", warmup=False).precision == "fp32"
    q = load_engine(tmp_path / "q", precision="int8", warmup=False)
    assert q.precision == "int8" and q.identity["precision"] == "int8"
    with pytest.raises(EngineError, match="no int8 frame encoder"):
        load_engine(work["full"], precision="int8", warmup=False)

    # labelled validation windows: labels = fp32 predictions, so fp32 scores 100 % and the int8
    # loss is exactly its disagreement; int8 becomes the default only if that is under 1 point
    fp32 = load_engine(tmp_path / "q", precision="fp32", warmup=False)
    images, kp = example_inputs(fp32.config, 6, seed=11)
    labels = fp32(images, kp).argmax(-1)
    cmp = compare_top1(fp32, q, images, kp, labels)
    assert cmp.labelled and cmp.reference_accuracy == 1.0
    assert cmp.loss_points == pytest.approx(100 * (1 - cmp.agreement))
    np.savez(tmp_path / "val.npz", images=images, keypoints=kp, labels=labels)
    res = export_onnx(work["full-ckpt"], tmp_path / "q2", int8=True, val_samples=tmp_path / "val.npz")
    report = res.manifest["int8"]
    assert report["validation"] == "val.npz" and report["labelled"]
    assert report["default"] == (report["loss_points"] < 1.0)
    assert load_engine(tmp_path / "q2", warmup=False).precision == ("int8" if report["default"] else "fp32")


# ----------------------------------------------------------------------------- TensorRT files (no GPU needed)
HERE = RuntimeInfo("10.3.0", "NVIDIA H100 80GB HBM3", (9, 0))


def _trt_dir(work: Dict[str, Path], d: Path) -> Path:
    """A TensorRT artifact directory whose plans are stand-in bytes: enough for everything that is
    checked before TensorRT itself is needed."""
    meta = json.loads((work["full"] / MANIFEST).read_text())["metadata"]
    d.mkdir()
    files = {}
    for graph in ("frame_encoder", "window_head"):
        write_engine_file(
            d / f"{graph}.engine",
            b"plan-bytes-" * 100,
            {
                "metadata": meta,
                "graph": graph,
                "precision": "fp16",
                "built_for": HERE.as_dict(),
                "io": {"inputs": {}, "outputs": {}},
            },
        )
        files[graph] = file_entry(d / f"{graph}.engine")
    write_manifest(d, {"format": TRT_EXPORT, "files": files, "metadata": meta})
    return d


def test_engine_file_header_round_trip_and_damage(tmp_path: Path) -> None:
    p = tmp_path / "x.engine"
    written = write_engine_file(p, b"\x01\x02" * 500, {"graph": "frame_encoder", "built_for": HERE.as_dict()})
    header, plan = read_engine_file(p)
    assert header == written and plan == b"\x01\x02" * 500 and header["plan_bytes"] == 1000
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(EngineError, match="truncated"):
        read_engine_file(p)
    p.write_bytes(data[:20])
    with pytest.raises(EngineError, match="truncated"):
        read_engine_file(p)
    p.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(EngineError, match="corrupt"):
        read_engine_file(p)
    p.write_bytes(b"a bare TensorRT plan, no header")
    with pytest.raises(EngineError, match="not a clipmg TensorRT engine"):
        read_engine_file(p)


@pytest.mark.parametrize(
    "other, words",
    [
        (RuntimeInfo("10.3.0", "NVIDIA A10", (8, 6)), "built for NVIDIA H100 80GB HBM3"),
        (RuntimeInfo("10.7.0", "NVIDIA H100 80GB HBM3", (9, 0)), "with TensorRT 10.3.0 but this machine has"),
    ],
)
def test_engine_for_another_gpu_or_tensorrt_is_refused(other: RuntimeInfo, words: str) -> None:
    header = {"built_for": HERE.as_dict()}
    check_compatible(header, HERE, "x.engine")  # same GPU, same TensorRT: fine
    with pytest.raises(EngineError, match="rebuild it here with clipmg-build") as err:
        check_compatible(header, other, "x.engine")
    assert words in str(err.value)


def test_tensorrt_directory_dispatch_and_refusals(work: Dict[str, Path], tmp_path: Path) -> None:
    d = _trt_dir(work, tmp_path / "trt")
    assert detect_artifact(d) == ("tensorrt", d)
    with pytest.raises(EngineError, match="has 5 classes but 3 were requested"):
        load_engine(d, num_classes=3)
    if not _tensorrt_runs_here():  # intact files, no TensorRT or GPU: one sentence naming what is missing
        with pytest.raises(EngineError, match="TensorRT is not installed|no CUDA GPU") as err:
            load_engine(d)
        assert "\n" not in str(err.value)
    data = (d / "window_head.engine").read_bytes()
    (d / "window_head.engine").write_bytes(data[:-5])
    with pytest.raises(EngineError, match="truncated"):
        load_engine(d)


# ----------------------------------------------------------------------------- CLIs
def _one_line_error(capsys: pytest.CaptureFixture[str], words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and words in err[-1] and "Traceback" not in "\n".join(err)


def test_export_cli_error_paths(work: Dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clipmg.engines.export import main

    assert main([str(tmp_path / "missing.safetensors"), str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "does not exist")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    assert main([str(bad), str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "truncated or corrupt")
    assert main([str(work["full-ckpt"]), str(tmp_path / "o"), "--num-classes", "32"]) == 2
    _one_line_error(capsys, "has 5 classes but 32 were requested")
    assert main([str(work["full-ckpt"]), str(tmp_path / "o"), "--tolerance", "0"]) == 1
    _one_line_error(capsys, "check failed")
    assert not (tmp_path / "o").exists()


def test_build_cli_error_paths(work: Dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clipmg.engines.build import main

    assert main([str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "does not exist")
    assert main([str(work["full"]), str(tmp_path / "o"), "--num-classes", "9"]) == 2
    _one_line_error(capsys, "has 5 classes but 9 were requested")
    assert main([str(work["full"]), str(tmp_path / "o"), "--via", "torch-tensorrt"]) == 2
    _one_line_error(capsys, "builds from the checkpoint")
    assert main([str(work["full"]), str(tmp_path / "o"), "--opt-batch", "9"]) == 2
    _one_line_error(capsys, "opt_batch <= max_batch")
    assert not (tmp_path / "o").exists()


def test_build_cli_without_tensorrt_exits_3_naming_what_is_missing(
    work: Dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipmg.engines.build import main

    if _tensorrt_runs_here():
        pytest.skip(
            "TensorRT and a GPU are here: the no-TensorRT path cannot be taken "
            "(test_build_cli_with_tensorrt_builds_engines_that_load runs instead)"
        )
    assert main([str(work["full"]), str(tmp_path / "o")]) == 3
    _one_line_error(capsys, "TensorRT")
    assert not (tmp_path / "o").exists()


@pytest.mark.gpu
def test_build_cli_with_tensorrt_builds_engines_that_load(
    work: Dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipmg.engines.build import main

    if not _tensorrt_runs_here():
        pytest.skip(
            "needs TensorRT and an NVIDIA GPU (pip install 'clipmg[gpu]'); the no-TensorRT path is "
            "test_build_cli_without_tensorrt_exits_3_naming_what_is_missing"
        )
    assert main([str(work["full"]), str(tmp_path / "o"), "--max-batch", "2", "--max-windows", "1"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    engine = load_engine(tmp_path / "o")
    assert engine.backend == "tensorrt"
    images, kp = engine.dummy_inputs()
    assert np.isfinite(engine(images, kp)).all()


def test_console_script_fails_with_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("clipmg-export")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "clipmg.engines.export"]
    r = subprocess.run(
        [*cmd, str(tmp_path / "nope.safetensors"), str(tmp_path / "o")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_bench_runs_on_the_tiny_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clipmg.bench.engines import main

    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--presets",
                "clipmg-tiny",
                "--backends",
                "torch",
                "onnxruntime",
                "--ort-variants",
                "threads2-nospin",
                "--batches",
                "2",
                "--repeats",
                "1",
                "--json",
                str(out),
                "--workdir",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| torch eager (cpu) |" in text and "| onnxruntime threads2-nospin |" in text
    assert "GFLOP per frame" in text
    res = json.loads(out.read_text())["results"][0]
    assert res["flops"]["frame_encoder_per_frame"] > 0 and set(res["encoder"]) == {"2"}
    assert main(["--presets", "clipmg-nope"]) == 2


def test_an_option_the_backend_does_not_take_is_refused(work: Dict[str, Path]) -> None:
    with pytest.raises(EngineError, match="unknown option\\(s\\) device for this backend"):
        load_engine(work["full"], device="cuda", warmup=False)
