"""The ONNX Runtime backend: an export directory from ``clipmg-export`` run on the CPU (or on CUDA
or TensorRT execution providers where the installed onnxruntime build has them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .artifacts import ONNX_EXPORT, read_manifest, verify_files
from .base import Engine, EngineError
from .graphs import CACHED_HEAD, FRAME_ENCODER, FRAME_ENCODER_INT8, WINDOW_HEAD
from .metadata import META_KEY, check_expectations, decode

GRAPH_OPTIMIZATION = ("disable", "basic", "extended", "all")


def session_options(
    threads: int | None = None, graph_optimization: str = "all", allow_spinning: bool | None = None
) -> Any:
    """``onnxruntime.SessionOptions``: intra-op ``threads`` (``None``: one per physical core),
    graph optimisation level, and whether idle intra-op threads spin (``None``: ORT's default, on)."""
    import onnxruntime as ort

    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise EngineError(
            f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION)}, got {graph_optimization!r}"
        )
    if threads is not None and threads < 1:
        raise EngineError(f"threads must be at least 1, got {threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    if allow_spinning is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    so.log_severity_level = 3  # errors only; warnings about unused initialisers are noise here
    return so


def resolve_providers(providers: Sequence[str] | None) -> List[str]:
    """Requested execution providers, checked against this onnxruntime build.

    ``None``: CUDA when the build has it, else CPU. TensorRT's provider builds engines on first run
    (minutes), so it is used only when named.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None:
        return (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if "CUDAExecutionProvider" in available
            else ["CPUExecutionProvider"]
        )
    missing = [p for p in providers if p not in available]
    if missing:
        raise EngineError(
            f"execution provider(s) {', '.join(missing)} are not in this onnxruntime build "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or drop the option"
        )
    return list(providers)


def open_session(path: Path, providers: Sequence[str] | None = None, **options: Any) -> Any:
    """An ``InferenceSession`` for ``path``; refuses an unreadable model with one sentence."""
    import onnxruntime as ort

    so = session_options(**options)
    provs = resolve_providers(providers)
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=provs)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several pybind types for bad files
        first = " ".join(str(e).split())[:200]
        raise EngineError(
            f"{path} cannot be loaded by ONNX Runtime ({first}); the file is truncated or "
            f"corrupt: export it again with clipmg-export"
        ) from e


def session_metadata(session: Any, path: Path) -> Dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise EngineError(
            f"{path} has no clipmg metadata; it was not written by clipmg-export: export the "
            f"checkpoint with clipmg-export"
        )
    return decode(raw, path)


class OnnxEngine(Engine):
    """Frame encoder and window head as two ONNX Runtime sessions."""

    backend = "onnxruntime"

    def __init__(
        self,
        metadata: Dict[str, Any],
        encoder: Any,
        head: Any,
        precision: str = "fp32",
        pose_sessions: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        self.precision = precision
        self._encoder, self._head = encoder, head
        self._encoder_inputs = [i.name for i in encoder.get_inputs()]
        self._head_inputs = [i.name for i in head.get_inputs()]  # a variant may not use all three
        # pose_stage0.., then window_head_cached (see engines/export.py); absent in older exports
        self._stages = list(pose_sessions[:-1]) if pose_sessions else []
        self._cached_head = pose_sessions[-1] if pose_sessions else None
        if pose_sessions and len(self._stages) != len(self.config.pose.skeleton_channels):
            raise EngineError(
                f"the export has {len(self._stages)} pose-stage graphs but the model has "
                f"{len(self.config.pose.skeleton_channels)} stages; export the checkpoint again"
            )
        self._cached_inputs = [i.name for i in self._cached_head.get_inputs()] if self._cached_head else []
        self._stage_inputs = [sess.get_inputs()[0].name for sess in self._stages]

    @property
    def providers(self) -> List[str]:
        return list(self._encoder.get_providers())

    @classmethod
    def from_files(
        cls,
        encoder_path: Path,
        head_path: Path,
        metadata: Dict[str, Any] | None = None,
        precision: str = "fp32",
        providers: Sequence[str] | None = None,
        pose_files: Sequence[Path] | None = None,
        **options: Any,
    ) -> "OnnxEngine":
        """Open the graphs; metadata comes from the encoder file unless given, and every file must
        carry the same. ``pose_files``: the pose-stage graphs in stage order and the cached head last
        (``export.pose_cache_files``), or ``None``."""
        paths = [Path(encoder_path), Path(head_path), *(Path(p) for p in pose_files or ())]
        sessions = [open_session(p, providers, **options) for p in paths]
        metas = [session_metadata(sess, p) for sess, p in zip(sessions, paths)]
        if any(m != metas[0] for m in metas) or (metadata is not None and json.loads(json.dumps(metadata)) != metas[0]):
            raise EngineError(
                f"{', '.join(map(str, paths))} come from different exports (their metadata "
                f"differ); export the checkpoint again into an empty directory"
            )
        return cls(metas[0], sessions[0], sessions[1], precision, sessions[2:] or None)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        precision: str = "auto",
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        allow_spinning: bool | None = False,
        verify: bool = True,
        **expect: Any,
    ) -> "OnnxEngine":
        """Load an export directory.

        ``precision``: ``auto`` (int8 only where the export marked it safe), ``fp32`` or ``int8``.
        ``threads``: intra-op threads (``None``: one per physical core). ``allow_spinning``: off by
        default, because the live pipeline shares the CPU with the pose estimator and idle ORT
        threads that spin steal it (the runs that chose this: docs/benchmarks.md, "ONNX Runtime
        session options"); ``True`` or ``None`` (ORT's default, on) restores spinning.
        ``verify``: check every file's sha256 against the manifest (a few hundred ms for ViT-B).
        ``expect``: expectations checked against the metadata (see ``metadata.check_expectations``).
        """
        directory = Path(directory)
        manifest = read_manifest(directory, ONNX_EXPORT)
        meta = decode(json.dumps(manifest["metadata"]), directory / "manifest.json")
        check_expectations(meta, directory, **expect)
        if precision not in ("auto", "fp32", "int8"):
            raise EngineError(f"precision must be auto, fp32 or int8 for ONNX Runtime, got {precision!r}")
        int8 = manifest.get("int8") or {}
        if precision == "int8" and "frame_encoder_int8" not in manifest["files"]:
            raise EngineError(f"{directory} has no int8 frame encoder; export with clipmg-export --int8 or use fp32")
        use_int8 = precision == "int8" or (precision == "auto" and bool(int8.get("default")))
        verify_files(directory, manifest, check_hash=verify)
        enc = directory / (FRAME_ENCODER_INT8 if use_int8 else FRAME_ENCODER)
        files = manifest["files"]
        pose_files = None
        if "window_head_cached" in files:  # exports since the pose cache; never for no_pose
            stages = [f"pose_stage{i}" for i in range(len(meta["config"]["pose"]["skeleton_channels"]))]
            missing = [g for g in stages if g not in files]
            if missing:
                raise EngineError(
                    f"{directory} has a cached head but no {', '.join(missing)} in its manifest; "
                    f"export the checkpoint again"
                )
            pose_files = [directory / files[g]["file"] for g in stages] + [directory / CACHED_HEAD]
        return cls.from_files(
            enc,
            directory / WINDOW_HEAD,
            meta,
            "int8" if use_int8 else "fp32",
            providers,
            pose_files=pose_files,
            threads=threads,
            graph_optimization=graph_optimization,
            allow_spinning=allow_spinning,
        )

    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        images = self.check_frames(images)
        tokens, emb = self._encoder.run(None, {self._encoder_inputs[0]: images})
        return tokens, emb

    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        feeds = self.check_head_inputs(tokens, frame_emb, keypoints)
        return self._head.run(None, {k: feeds[k] for k in self._head_inputs})[0]

    @property
    def pose_cache(self) -> bool:
        return self._cached_head is not None

    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        if not self.pose_cache:
            return super().pose_partials(stage, x)
        x = self.check_pose_input(stage, x)
        return self._stages[stage].run(None, {self._stage_inputs[stage]: x})[0]

    def head_cached(
        self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray, pose_pre: np.ndarray
    ) -> np.ndarray:
        if not self.pose_cache:
            return super().head_cached(tokens, frame_emb, keypoints, pose_pre)
        feeds = self.check_head_inputs(tokens, frame_emb, keypoints)
        feeds["pose_pre"] = self.check_pose_pre(pose_pre, feeds["tokens"].shape[0])
        assert self._cached_head is not None  # pose_cache is True only when the export has the cached head
        return self._cached_head.run(None, {k: feeds[k] for k in self._cached_inputs})[0]
