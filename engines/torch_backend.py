"""The reference backend: eager PyTorch on a clipmg checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import numpy as np
import torch

from clipmg.model.checkpoint import CheckpointError, file_sha256, load_checkpoint

from .base import Engine, EngineError
from .metadata import check_checkpoint, preprocess_summary


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model: Any, metadata: dict, device: str = "cpu") -> None:
        super().__init__(metadata)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **expect: Any) -> "TorchEngine":
        """Load a checkpoint; ``expect`` is checked against its metadata before the weights are read."""
        check_checkpoint(path, **expect)  # refuse before the weights are read
        try:
            model, meta = load_checkpoint(path)
        except CheckpointError as e:
            raise EngineError(str(e)) from e
        meta = {**meta, "checkpoint_sha256": file_sha256(path), "preprocess": preprocess_summary(model.cfg)}
        return cls(model, meta, device)

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
