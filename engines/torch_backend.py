"""The reference backend: eager PyTorch on a clipmg checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import torch

from clipmg.model.checkpoint import CheckpointError, file_sha256, load_checkpoint

from .base import Engine, EngineError
from .metadata import check_checkpoint, preprocess_summary


def torch_device(device: str | torch.device, engine: str = "torch") -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` (any device PyTorch names) -> ``torch.device``; a CUDA device
    PyTorch cannot see is refused with one sentence, before any weights are read."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise EngineError(
            f"the {engine} engine cannot run on device {str(device)!r} ({e}); give cpu, cuda or cuda:N"
        ) from None
    if d.type != "cuda":
        return d
    if not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise EngineError(
            f"the {engine} engine needs a GPU PyTorch can see: torch.cuda.is_available() is false here "
            f"(PyTorch {torch.__version__}, {build}); run it on a machine with an NVIDIA GPU and its driver, "
            f"or give --device cpu"
        )
    count = torch.cuda.device_count()
    if d.index is not None and d.index >= count:
        raise EngineError(
            f"the {engine} engine was asked for {d} but PyTorch sees {count} GPU(s); give cuda:0 to cuda:{count - 1}"
        )
    return torch.device("cuda", torch.cuda.current_device() if d.index is None else d.index)


def load_model(path: str | Path, **expect: Any) -> Tuple[Any, Dict[str, Any]]:
    """A checkpoint's model (on the CPU, float32) and the metadata an engine carries; ``expect`` is
    checked against the checkpoint's metadata before the weights are read."""
    check_checkpoint(path, **expect)  # refuse before the weights are read
    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as e:
        raise EngineError(str(e)) from e
    return model, {**meta, "checkpoint_sha256": file_sha256(path), "preprocess": preprocess_summary(model.cfg)}


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model: Any, metadata: dict, device: str | torch.device = "cpu") -> None:
        super().__init__(metadata)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **expect: Any) -> "TorchEngine":
        """Load a checkpoint; ``expect`` is checked against its metadata before the weights are read."""
        dev = torch_device(device)
        model, meta = load_model(path, **expect)
        return cls(model, meta, dev)

    @torch.inference_mode()
    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        x, c = self.model.encode_frames(torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self.device))
        return x.float().cpu().numpy(), c.float().cpu().numpy()

    @torch.inference_mode()
    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        t = [
            torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)
            for a in (tokens, frame_emb, keypoints)
        ]
        return self.model.head(*t).float().cpu().numpy()

    @property
    def pose_cache(self) -> bool:
        return bool(self.model.uses_pose)

    @torch.inference_mode()
    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        if not self.pose_cache:
            return super().pose_partials(stage, x)
        t = torch.from_numpy(self.check_pose_input(stage, x)).to(self.device)
        return self.model.pose_partials(stage, t).float().cpu().numpy()

    @torch.inference_mode()
    def head_cached(
        self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray, pose_pre: np.ndarray
    ) -> np.ndarray:
        if not self.pose_cache:
            return super().head_cached(tokens, frame_emb, keypoints, pose_pre)
        feeds = self.check_head_inputs(tokens, frame_emb, keypoints)
        pre = self.check_pose_pre(pose_pre, feeds["tokens"].shape[0])
        t = [
            torch.from_numpy(a).to(self.device) for a in (feeds["tokens"], feeds["frame_emb"], feeds["keypoints"], pre)
        ]
        return self.model.head(*t).float().cpu().numpy()
