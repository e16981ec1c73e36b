"""CLIP-MG: the pose-guided CLIP model (spec sections 3-11), with its streaming split.

Shapes: ``B`` windows, ``T`` RGB frames per window (8), ``T_p`` pose samples (32), ``J`` joints,
``N = 1 + N_p`` tokens per frame, ``D`` ViT width, ``E`` CLIP embedding size, ``C`` classes.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .heatmaps import heatmap_volume, relevance_map
from .skeleton import SkeletonEncoder
from .tower import build_visual, freeze_stem


class CLIPMG(nn.Module):
    """The whole model. ``forward(images, keypoints)`` is exactly ``head(*encode_frames(...))``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        v, d = cfg.vision, cfg.vision.width
        self.visual = build_visual(v)
        self.num_frozen = freeze_stem(self.visual, v.trainable_blocks)
        self.stem_trainable = self.num_frozen == 0  # nothing frozen: the stem is trained too
        variant = cfg.variant
        # proj only feeds the frame embedding c_t, which only the no_cross_attention head reads; in
        # the other variants it cannot affect the loss, so it stays frozen at its CLIP value.
        self.visual.proj.requires_grad_(variant == "no_cross_attention")
        self.uses_pose = variant != "no_pose"
        self.uses_query = variant != "no_cross_attention"
        self.uses_gates = variant in ("full", "no_pose_guidance")
        self.uses_guidance = variant == "full"
        if self.uses_pose:
            self.skeleton = SkeletonEncoder(cfg.pose.num_joints, cfg.pose.skeleton_channels, d, cfg.pose.proj_init_gain)
        if self.uses_guidance:
            self.pose_gate = nn.Linear(d, d, bias=False)  # W_e
        if self.uses_gates:
            self.query_gate = nn.Linear(2 * d, d)  # W_q, b_q
            self.token_gate = nn.Linear(d, d)  # W_x, b_x
        if variant == "no_gating":
            self.query_proj = nn.Linear(2 * d, d)
        head_in = d if self.uses_query else v.embed_dim + d
        self.classifier = nn.Sequential(
            nn.Linear(head_in, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, cfg.num_classes),
        )

    # ------------------------------------------------------------------ frame encoder (per frame)
    def encode_frozen(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen part: ``(N_img, 3, H, W)`` -> tokens after the frozen blocks ``(N_img, N, D)``.

        Runs without autograd: nothing in it is trained. When the whole tower is trained
        (``trainable_blocks == layers``) this is just the stem, with autograd.
        """
        vis = self.visual
        if self.stem_trainable:
            return vis._embeds(images)
        with torch.no_grad():
            x = vis._embeds(images)  # patch embed + class token + positions + ln_pre
            for blk in vis.transformer.resblocks[: self.num_frozen]:
                x = blk(x)
        return x

    def encode_trainable(self, frozen_tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Trainable part of the frame encoder: ``(N_img, N, D)`` -> penultimate tokens
        ``X (N_img, N, D)`` and frame embedding ``c (N_img, E)``."""
        blocks = self.visual.transformer.resblocks
        x = frozen_tokens
        for blk in blocks[self.num_frozen : -1]:
            x = blk(x)
        return x, self.frame_embedding(x)

    def frame_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Block ``L`` + ``ln_post`` + ``proj`` on the CLS token: ``(N_img, N, D)`` -> ``(N_img, E)``.

        At inference only the CLS token's output is computed: block ``L`` runs for that one query
        over the frame's tokens (``_last_block_query``), never for the other ``N - 1`` (8 % of a
        ViT-B/32 frame's work). Training runs the block on every token (see ``_last_block_query``).
        """
        vis = self.visual
        blk = vis.transformer.resblocks[-1]
        y = blk(tokens)[:, 0] if self.training else self._last_block_query(tokens[:, 0], blk.ln_1(tokens))
        return vis.ln_post(y) @ vis.proj

    def encode_frames(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frame encoder: ``(N_img, 3, H, W)`` -> ``X (N_img, N, D)``, ``c (N_img, E)``."""
        return self.encode_trainable(self.encode_frozen(images))

    # ------------------------------------------------------------------ window head (per window)
    def pose_feature(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(B, T_p, J, 3)`` in model-input pixels -> ``p (B, D)``."""
        pc = self.cfg.pose
        vol = heatmap_volume(
            keypoints,
            self.cfg.vision.image_size,
            pc.heatmap_size,
            pc.heatmap_sigma,
            self.cfg.clip.rgb_frames,
            pc.min_confidence,
        )  # (B, J, T, Hh, Wh)
        return self.skeleton(vol)

    def pose_partials(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        """The skeleton encoder one time step at a time (``SkeletonEncoder.partials``).

        ``stage`` 0: ``x`` is one group's keypoints ``(N, G, J, 3)`` (model-input pixels), made into its
        heatmap frame ``(N, J, H_h, W_h)`` (the window volume's slice for that group: the same
        computation); stage ``i > 0``: ``x`` is stage ``i-1``'s pre-activations ``(N, C, H, W)`` at one
        time step. Returns the stage's three temporal taps ``(N, 3, C_out, H', W')``.
        """
        sk = self.skeleton
        if stage == 0:
            pc = self.cfg.pose
            x = heatmap_volume(x, self.cfg.vision.image_size, pc.heatmap_size, pc.heatmap_sigma, 1, pc.min_confidence)[
                :, :, 0
            ]
        else:
            x = sk.activate(stage - 1, x)
        return sk.partials(stage, x)

    def query(self, patches: torch.Tensor, p: torch.Tensor | None, keypoints: torch.Tensor) -> torch.Tensor:
        """The semantic query ``(B, D)`` from patch tokens ``(B, T, N_p, D)`` (sections 6-7)."""
        if self.uses_guidance:
            v, pc = self.cfg.vision, self.cfg.pose
            r = relevance_map(
                keypoints,
                v.image_size,
                v.patch_size,
                pc.relevance_sigma,
                pc.relevance_alpha,
                self.cfg.clip.rgb_frames,
                pc.min_confidence,
            )  # (B, T, N_p)
            e = self.pose_gate(p)  # (B, D)
            g = torch.sigmoid(torch.einsum("btnd,bd->btn", patches, e) / math.sqrt(patches.shape[-1]))
            w = r * g
            q = torch.einsum("btn,btnd->bd", w, patches) / (w.sum(dim=(1, 2)).unsqueeze(-1) + 1e-6)
        else:
            q = patches.mean(dim=(1, 2))  # visual-only query: mean patch token
        if self.cfg.variant == "no_gating":
            q = self.query_proj(torch.cat([q, p], dim=-1))
        elif self.uses_gates:
            q = torch.sigmoid(self.query_gate(torch.cat([q, p], dim=-1))) * q  # q~ = g_q * q
        return q

    def cross_attend(self, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Query ``(B, D)`` attends over all frames' tokens ``(B, M, D)`` through block ``L``'s own
        weights (section 8); returns ``Y = ln_post(y)`` of shape ``(B, D)``."""
        blk = self.visual.transformer.resblocks[-1]
        kv = blk.ln_1(tokens)
        if self.training:  # the textbook form, every token projected (see _last_block_query)
            y = q.unsqueeze(1)  # (B, 1, D)
            y = y + blk.ls_1(blk.attn(blk.ln_1(y), kv, kv, need_weights=False)[0])
            y = (y + blk.ls_2(blk.mlp(blk.ln_2(y))))[:, 0]
        else:
            y = self._last_block_query(q, kv)
        return self.visual.ln_post(y)

    def _last_block_query(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """Block ``L`` for one query token per row: ``q (B, D)`` attends over ``kv (B, M, D)``
        (already through ``ln_1``), then the block's MLP; returns ``y (B, D)`` before ``ln_post``.

        With one query the key and value projections are moved onto the query side, which is exact
        algebra, not an approximation: per head ``h``, ``q_h . (W_k,h x_i + b_k,h) =
        (W_k,h^T q_h) . x_i + const``, and the constant cancels in the softmax;
        ``sum_i a_hi (W_v,h x_i + b_v,h) = W_v,h (sum_i a_hi x_i) + b_v,h`` since the weights sum
        to 1. The ``M`` tokens (400 in the head, 50 for a frame's CLS token with ViT-B/32) are
        never projected: ``O(M D H)`` work instead of ``O(M D^2)`` (0.03 against 0.94 GFLOP in
        the ViT-B/32 head). tests/test_model.py holds it equal to ``nn.MultiheadAttention``.

        Used in eval mode (inference, export, streaming, validation). Training keeps the textbook
        forms: equal in exact arithmetic but rounded differently, and a training run is a chaotic
        function of its rounding, so published runs stay reproducible bit for bit (the measured
        effect on the training proof: docs/model.md, step 8).
        """
        blk = self.visual.transformer.resblocks[-1]
        attn = blk.attn
        b, d = q.shape
        h = attn.num_heads
        dh = d // h
        kv = kv.unsqueeze(1)  # (B, 1, M, D), shared by every head
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)  # (D, D) each; rows h*dh:(h+1)*dh are head h
        b_q = b_v = None
        if attn.in_proj_bias is not None:
            b_q, _, b_v = attn.in_proj_bias.chunk(3)  # the key bias cancels in the softmax
        qh = F.linear(blk.ln_1(q), w_q, b_q).reshape(b, h, 1, dh) * dh**-0.5
        u = qh @ w_k.reshape(h, dh, d)  # (B, H, 1, D): each head's query taken back to token space
        a = torch.softmax(u @ kv.transpose(-1, -2), dim=-1)  # (B, H, 1, M)
        z = a @ kv  # (B, H, 1, D): attention-weighted mean of the normalised tokens
        o = (z @ w_v.reshape(h, dh, d).transpose(-1, -2)).reshape(b, d)  # (B, H*dh): W_v,h z_h
        if b_v is not None:
            o = o + b_v
        y = q + blk.ls_1(attn.out_proj(o))
        return y + blk.ls_2(blk.mlp(blk.ln_2(y)))

    def head(
        self,
        tokens: torch.Tensor,
        frame_emb: torch.Tensor,
        keypoints: torch.Tensor,
        pose_pre: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Window head: penultimate tokens ``(B, T, N, D)``, frame embeddings ``(B, T, E)`` and
        keypoints ``(B, T_p, J, 3)`` (model-input pixels) -> logits ``(B, C)``.

        ``pose_pre``: the skeleton encoder's last-stage pre-activations ``(B, C3, T, H', W')`` when
        they were assembled from per-time-step pieces (``pose_partials``); the pose branch then only
        finishes them.
        """
        b, t, n, d = tokens.shape
        p = None
        if self.uses_pose:
            p = self.pose_feature(keypoints) if pose_pre is None else self.skeleton.finish(pose_pre)
        if not self.uses_query:  # no_cross_attention: classify [v_cls ; p]
            return self.classifier(torch.cat([frame_emb.mean(dim=1), p], dim=-1))
        q = self.query(tokens[:, :, 1:], p, keypoints)
        if self.uses_gates:
            tokens = tokens * torch.sigmoid(self.token_gate(p)).reshape(b, 1, 1, d)  # X~ = X * g_x
        y = self.cross_attend(q, tokens.reshape(b, t * n, d))
        return self.classifier(y)

    def forward(
        self, images: torch.Tensor | None, keypoints: torch.Tensor, frozen_tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Monolithic forward: images ``(B, T, 3, H, W)``, keypoints ``(B, T_p, J, 3)`` -> ``(B, C)``.

        Training with cached frozen-block outputs passes ``frozen_tokens (B, T, N, D)`` (from
        ``encode_frozen``) instead of images.
        """
        if frozen_tokens is None:
            b, t = images.shape[:2]
            frozen_tokens = self.encode_frozen(images.flatten(0, 1))
        else:
            b, t = frozen_tokens.shape[:2]
            frozen_tokens = frozen_tokens.flatten(0, 1)
        x, c = self.encode_trainable(frozen_tokens)
        return self.head(x.reshape(b, t, *x.shape[1:]), c.reshape(b, t, -1), keypoints)

    # ------------------------------------------------------------------ streaming split
    def split(self) -> Tuple["FrameEncoder", "WindowHead"]:
        """The two halves that streaming and export use; they share this model's weights."""
        return FrameEncoder(self), WindowHead(self)

    def check_inputs(self, images: torch.Tensor | None = None, keypoints: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` saying what was expected for wrongly shaped or invalid inputs."""
        v, c, j = self.cfg.vision, self.cfg.clip, self.cfg.pose.num_joints
        if images is not None:
            exp = (c.rgb_frames, 3, v.image_size, v.image_size)
            if images.ndim != 5 or tuple(images.shape[1:]) != exp:
                raise ValueError(f"images: expected shape (B, {', '.join(map(str, exp))}), got {tuple(images.shape)}")
        if keypoints is not None:
            exp = (c.pose_frames, j, 3)
            if keypoints.ndim != 4 or tuple(keypoints.shape[1:]) != exp:
                raise ValueError(
                    f"keypoints: expected shape (B, {', '.join(map(str, exp))}), got {tuple(keypoints.shape)}"
                )
            if not torch.isfinite(keypoints).all():
                raise ValueError("keypoints: contain NaN or infinite values; mark missing joints with confidence 0")
            if (keypoints[..., 2] < 0).any():
                raise ValueError("keypoints: negative confidence values; confidences must lie in [0, 1]")

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters to optimise, grouped: ``vit`` (unfrozen blocks, ln_post, proj) and ``new``."""
        groups: dict[str, list[nn.Parameter]] = {"vit": [], "new": []}
        for name, prm in self.named_parameters():
            if prm.requires_grad:
                groups["vit" if name.startswith("visual.") else "new"].append(prm)
        return groups


class FrameEncoder(nn.Module):
    """One RGB frame (batch) -> penultimate tokens and frame embedding; runs once per frame."""

    def __init__(self, model: CLIPMG) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(N_img, 3, H, W)`` -> ``X (N_img, N, D)``, ``c (N_img, E)``."""
        return self.model.encode_frames(images)


class PoseStage(nn.Module):
    """One stage of the skeleton encoder for single time steps (``CLIPMG.pose_partials``)."""

    def __init__(self, model: CLIPMG, stage: int) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.pose_partials(self.stage, x)


class CachedPoseHead(nn.Module):
    """The window head fed the pose branch's last-stage pre-activations."""

    def __init__(self, model: CLIPMG) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, tokens: torch.Tensor, frame_emb: torch.Tensor, keypoints: torch.Tensor, pose_pre: torch.Tensor
    ) -> torch.Tensor:
        return self.model.head(tokens, frame_emb, keypoints, pose_pre)


class WindowHead(nn.Module):
    """Everything after the frame encoder; runs once per window."""

    def __init__(self, model: CLIPMG) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, frame_emb: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """``(B, T, N, D)``, ``(B, T, E)``, ``(B, T_p, J, 3)`` -> logits ``(B, C)``."""
        return self.model.head(tokens, frame_emb, keypoints)
