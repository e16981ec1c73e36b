"""The one runtime interface every backend implements (torch, cuda, onnxruntime, tensorrt).

An engine runs the two halves of CLIP-MG on NumPy arrays:

- ``encode_frames(images)``: ``(N, 3, S, S)`` float32 -> tokens ``(N, 1+N_p, D)`` and frame
  embeddings ``(N, E)``, float32; called once per RGB frame (the streaming cache keeps the outputs);
- ``head(tokens, frame_emb, keypoints)``: ``(B, T_r, 1+N_p, D)``, ``(B, T_r, E)``,
  ``(B, T_p, J, 3)`` (model-input pixels) -> logits ``(B, C)`` float32; once per window.

Optionally (``pose_cache`` true: the torch and cuda backends, ONNX exports with the pose-branch graphs) it
also runs the skeleton encoder one time step at a time, ``pose_partials(stage, x)``, and the head
on the assembled pre-activations, ``head_cached(...)``; the live recognizer then computes each
group's share of the pose branch once (``clipmg.model.pose_cache``).

``metadata`` is the dict every artifact carries (model config, class names, preprocessing,
checkpoint sha256, ...); ``config`` is the ``ModelConfig`` built from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import numpy as np

from clipmg.model import ModelConfig
from clipmg.model.errors import ClipmgError
from clipmg.model.pose_cache import PoseBranchCache, stage_shapes


class EngineError(ClipmgError, ValueError):
    """An artifact that cannot be run, or an engines tool's input that cannot work; the message says
    why and what to do (a ``ClipmgError``: exit status 2, one line)."""


class Engine(ABC):
    backend: str = "?"  # torch | cuda | onnxruntime | tensorrt
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

    # ---------------------------------------------------------------- the pose branch in pieces (optional)
    @property
    def pose_cache(self) -> bool:
        """Whether the engine runs the skeleton encoder one time step at a time, so the live recognizer
        computes each group's share once (``clipmg.model.pose_cache``); otherwise ``head`` does it all."""
        return False

    def pose_partials(self, stage: int, x: np.ndarray) -> np.ndarray:
        """Stage ``stage`` of the skeleton encoder on single time steps: stage 0 takes groups' keypoints
        ``(n, G, J, 3)`` (model-input pixels), stage ``i > 0`` stage ``i-1``'s pre-activations
        ``(n, C, H, W)``; returns the temporal taps ``(n, 3, C_out, H', W')`` (``CLIPMG.pose_partials``)."""
        raise EngineError(f"the {self.backend} engine does not run the pose branch in pieces; use head()")

    def head_cached(
        self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray, pose_pre: np.ndarray
    ) -> np.ndarray:
        """``head`` with the skeleton encoder's last-stage pre-activations ``(B, C3, T_r, H', W')`` given."""
        raise EngineError(f"the {self.backend} engine does not run the pose branch in pieces; use head()")

    def check_pose_input(self, stage: int, x: np.ndarray) -> np.ndarray:
        """``pose_partials``' input as contiguous float32, its shape checked."""
        cfg = self.config
        shapes = stage_shapes(cfg)
        if not 0 <= stage < len(shapes):
            raise ValueError(f"stage must lie in [0, {len(shapes)}), got {stage}")
        want = (cfg.clip.group, cfg.pose.num_joints, 3) if stage == 0 else shapes[stage]["input"]
        a = np.ascontiguousarray(x, dtype=np.float32)
        if a.ndim != len(want) + 1 or a.shape[1:] != want:
            raise ValueError(
                f"stage {stage} input: expected shape (n, {', '.join(map(str, want))}), got {tuple(np.shape(x))}"
            )
        return a

    def check_pose_pre(self, pose_pre: np.ndarray, batch: int) -> np.ndarray:
        """``head_cached``'s ``pose_pre`` as contiguous float32 ``(B, C3, T_r, H', W')``, shape checked."""
        _, c, h, w = stage_shapes(self.config)[-1]["taps"]
        want = (batch, c, self.config.clip.rgb_frames, h, w)
        a = np.ascontiguousarray(pose_pre, dtype=np.float32)
        if a.shape != want:
            raise ValueError(f"pose_pre: expected shape {want}, got {tuple(np.shape(pose_pre))}")
        return a

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

    def check_head_inputs(
        self, tokens: np.ndarray, frame_emb: np.ndarray, keypoints: np.ndarray
    ) -> Dict[str, np.ndarray]:
        """The head's inputs as contiguous float32 arrays keyed by graph input name, shapes checked:
        ``tokens (B, T_r, 1+N_p, D)``, ``frame_emb (B, T_r, E)``, ``keypoints (B, T_p, J, 3)``."""
        cfg = self.config
        v, c = cfg.vision, cfg.clip
        want = {
            "tokens": (c.rgb_frames, 1 + v.num_patches, v.width),
            "frame_emb": (c.rgb_frames, v.embed_dim),
            "keypoints": (c.pose_frames, cfg.pose.num_joints, 3),
        }
        out: Dict[str, np.ndarray] = {}
        for name, arr in (("tokens", tokens), ("frame_emb", frame_emb), ("keypoints", keypoints)):
            a = np.ascontiguousarray(arr, dtype=np.float32)
            if a.ndim != len(want[name]) + 1 or a.shape[1:] != want[name]:
                raise ValueError(
                    f"{name}: expected shape (B, {', '.join(map(str, want[name]))}), got {tuple(np.shape(arr))}"
                )
            out[name] = a
        if len({a.shape[0] for a in out.values()}) != 1:
            raise ValueError(
                f"tokens, frame_emb and keypoints disagree on the batch size: {[a.shape[0] for a in out.values()]}"
            )
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
        if self.pose_cache:  # the pose-branch pieces the live recognizer runs instead of the whole head
            cfg = self.config
            v, t = cfg.vision, cfg.clip.rgb_frames
            x = np.zeros((1, t, 1 + v.num_patches, v.width), np.float32)  # any tokens: only speed matters here
            c = np.zeros((1, t, v.embed_dim), np.float32)
            for _ in range(runs):
                pre = PoseBranchCache.for_config(self.pose_partials, cfg).window(0, kp[0])
                self.head_cached(x, c, kp, pre[None])

    @property
    def identity(self) -> Dict[str, str]:
        """What a published message says about the model that produced it."""
        return {
            "checkpoint_sha256": str(self.metadata.get("checkpoint_sha256", "")),
            "backend": self.backend,
            "precision": self.precision,
            "preset": self.config.name,
            "variant": self.config.variant,
        }
