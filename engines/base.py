"""The one runtime interface every backend implements (torch, onnxruntime, tensorrt).

An engine runs the two halves of CLIP-MG on NumPy arrays:

- ``encode_frames(images)``: ``(N, 3, S, S)`` float32 -> tokens ``(N, 1+N_p, D)`` and frame
  embeddings ``(N, E)``, float32; called once per RGB frame (the streaming cache keeps the outputs);
- ``head(tokens, frame_emb, keypoints)``: ``(B, T_r, 1+N_p, D)``, ``(B, T_r, E)``,
  ``(B, T_p, J, 3)`` (model-input pixels) -> logits ``(B, C)`` float32; once per window.

``metadata`` is the dict every artifact carries (model config, class names, preprocessing,
checkpoint sha256, ...); ``config`` is the ``ModelConfig`` built from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import numpy as np

from clipmg.model import ModelConfig


class EngineError(ValueError):
    """An artifact that cannot be run; the message says why and what to do."""


class Engine(ABC):
    backend: str = "?"  # torch | onnxruntime | tensorrt
    precision: str = "fp32"

    def __init__(self, metadata: Dict[str, Any]) -> None:
        self.metadata = metadata
        self.config = ModelConfig.from_dict(metadata["config"])
        self.class_names = list(metadata["class_names"])

    @abstractmethod
    def encode_frames(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(N, 3, S, S)`` -> ``(N, 1+N_p, D)``, ``(N, E)``."""

    @abstractmethod
    def head(self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """``(B, T_r, 1+N_p, D)``, ``(B, T_r, E)``, ``(B, T_p, J, 3)`` -> logits ``(B, C)``."""

    def __call__(self, images: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Whole model: images ``(B, T_r, 3, S, S)``, keypoints ``(B, T_p, J, 3)`` -> logits ``(B, C)``."""
        b, t = images.shape[:2]
        x, c = self.encode_frames(images.reshape(b * t, *images.shape[2:]))
        return self.head(x.reshape(b, t, *x.shape[1:]), c.reshape(b, t, -1), keypoints)

    def check_frames(self, images: np.ndarray) -> np.ndarray:
        """``images`` as contiguous float32 ``(N, 3, S, S)``; ``ValueError`` naming the expected shape."""
        s = self.config.vision.image_size
        a = np.ascontiguousarray(images, dtype=np.float32)
        if a.ndim != 4 or a.shape[1:] != (3, s, s):
            raise ValueError(f"images: expected shape (N, 3, {s}, {s}), got {tuple(np.shape(images))}")
        return a

    def check_head_inputs(self, tokens: np.ndarray, frame_emb: np.ndarray,
                          keypoints: np.ndarray) -> Dict[str, np.ndarray]:
        """The head's inputs as contiguous float32 arrays keyed by graph input name, shapes checked:
        ``tokens (B, T_r, 1+N_p, D)``, ``frame_emb (B, T_r, E)``, ``keypoints (B, T_p, J, 3)``."""
        cfg = self.config
        v, c = cfg.vision, cfg.clip
        want = {"tokens": (c.rgb_frames, 1 + v.num_patches, v.width), "frame_emb": (c.rgb_frames, v.embed_dim),
                "keypoints": (c.pose_frames, cfg.pose.num_joints, 3)}
        out: Dict[str, np.ndarray] = {}
        for name, arr in (("tokens", tokens), ("frame_emb", frame_emb), ("keypoints", keypoints)):
            a = np.ascontiguousarray(arr, dtype=np.float32)
            if a.ndim != len(want[name]) + 1 or a.shape[1:] != want[name]:
                raise ValueError(f"{name}: expected shape (B, {', '.join(map(str, want[name]))}), "
                                 f"got {tuple(np.shape(arr))}")
            out[name] = a
        if len({a.shape[0] for a in out.values()}) != 1:
            raise ValueError(f"tokens, frame_emb and keypoints disagree on the batch size: "
                             f"{[a.shape[0] for a in out.values()]}")
        return out

    def dummy_inputs(self, batch: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        s = cfg.vision.image_size
        rng = np.random.default_rng(0)
        images = rng.standard_normal((batch, cfg.clip.rgb_frames, 3, s, s)).astype(np.float32)
        kp = rng.random((batch, cfg.clip.pose_frames, cfg.pose.num_joints, 3)).astype(np.float32)
        kp[..., :2] *= s
        return images, kp

    def warmup(self, runs: int = 2) -> None:
        """Run the model on dummy inputs so the first real frame pays no start-up cost."""
        images, kp = self.dummy_inputs()
        for _ in range(runs):
            self(images, kp)

    @property
    def identity(self) -> Dict[str, str]:
        """What a published message says about the model that produced it."""
        return {"checkpoint_sha256": str(self.metadata.get("checkpoint_sha256", "")),
                "backend": self.backend, "precision": self.precision,
                "preset": self.config.name, "variant": self.config.variant}
