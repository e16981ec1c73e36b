"""The reference backend: eager PyTorch on a clipmg checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import numpy as np
import torch

from .base import Engine


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model: Any, metadata: dict, device: str = "cpu") -> None:
        super().__init__(metadata)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **expect: Any) -> "TorchEngine":
        from clipmg.train.checkpoint import file_sha256, load_checkpoint

        model, meta = load_checkpoint(path, **expect)
        meta = {**meta, "checkpoint_sha256": file_sha256(path)}
        return cls(model, meta, device)

    @torch.inference_mode()
    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        x, c = self.model.encode_frames(torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self.device))
        return x.float().cpu().numpy(), c.float().cpu().numpy()

    @torch.inference_mode()
    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        t = [torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device) for a in (tokens, frame_emb, keypoints)]
        return self.model.head(*t).float().cpu().numpy()
