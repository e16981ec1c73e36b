"""Pose heatmap volumes and patch relevance maps (spec sections 4 and 6), as pure torch functions.

They take keypoints already mapped into the crop (model-input pixels, ``0..image_size``) and run
inside the window head, so training, ONNX export and streaming share one implementation.
All shapes: ``B`` batch, ``T_p`` pose samples, ``T_r`` RGB frames (windows), ``G = T_p // T_r``,
``J`` joints.
"""

from __future__ import annotations

import torch


def _windows(keypoints: torch.Tensor, rgb_frames: int) -> torch.Tensor:
    """``(B, T_p, J, 3)`` -> ``(B, T_r, G, J, 3)``."""
    b, tp, j, _ = keypoints.shape
    return keypoints.reshape(b, rgb_frames, tp // rgb_frames, j, 3)


def heatmap_volume(
    keypoints: torch.Tensor,
    image_size: int,
    canvas: int,
    sigma: float = 0.6,
    rgb_frames: int = 8,
    min_confidence: float = 1e-3,
) -> torch.Tensor:
    """PoseConv3D-style volume ``P`` of shape ``(B, J, T_r, canvas, canvas)``.

    ``H[j,k](u,v) = c * exp(-((u-x)^2 + (v-y)^2) / (2 sigma^2))`` on a canvas whose cell ``u`` has
    its centre at ``(u + 0.5) * image_size / canvas`` input pixels; joints with ``c < min_confidence``
    give zero maps. ``V[j,t]`` is the mean of ``H[j,k]`` over the ``G`` samples of window ``t``.
    """
    kp = _windows(keypoints, rgb_frames)  # (B, T_r, G, J, 3)
    g = kp.shape[2]
    scale = canvas / float(image_size)
    x = kp[..., 0] * scale - 0.5  # canvas coordinates of the joint, (B, T_r, G, J)
    y = kp[..., 1] * scale - 0.5
    c = kp[..., 2]
    c = torch.where(c >= min_confidence, c, torch.zeros_like(c))
    grid = torch.arange(canvas, dtype=keypoints.dtype, device=keypoints.device)
    inv = 1.0 / (2.0 * sigma * sigma)
    gx = torch.exp(-((grid - x.unsqueeze(-1)) ** 2) * inv)  # (B, T_r, G, J, W)
    gy = torch.exp(-((grid - y.unsqueeze(-1)) ** 2) * inv)  # (B, T_r, G, J, H)
    # Separable Gaussian, averaged over the window's G samples without materialising (G, H, W).
    vol = torch.einsum("btgjh,btgjw->bjthw", gy * c.unsqueeze(-1), gx)
    return vol / g


def relevance_map(
    keypoints: torch.Tensor,
    image_size: int,
    patch_size: int,
    sigma: float = 16.0,
    alpha: float = 0.1,
    rgb_frames: int = 8,
    min_confidence: float = 1e-3,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Spatial relevance ``r`` of each patch of each RGB frame, ``(B, T_r, N_p)``.

    ``r_ti = max_j c_tj * a_tj * exp(-|u_i - p_tj|^2 / (2 sigma^2))`` with ``p_tj`` the
    confidence-weighted mean joint position over window ``t``, ``c_tj`` its mean confidence, and
    ``a_tj = alpha + (1 - alpha) m_tj / (max m + eps)`` where ``m_tj`` is the mean displacement
    between consecutive confident samples. A sample with no confident joint anywhere gets ``r = 1``.
    """
    kp = _windows(keypoints, rgb_frames)  # (B, T_r, G, J, 3)
    conf = kp[..., 2]
    conf = torch.where(conf >= min_confidence, conf, torch.zeros_like(conf))  # (B, T_r, G, J)
    valid = (conf > 0).to(kp.dtype)
    xy = kp[..., :2]
    c_tj = conf.mean(dim=2)  # (B, T_r, J)
    p_tj = (xy * conf.unsqueeze(-1)).sum(dim=2) / (conf.sum(dim=2).unsqueeze(-1) + eps)  # (B, T_r, J, 2)
    step = torch.linalg.vector_norm(xy[:, :, 1:] - xy[:, :, :-1], dim=-1)  # (B, T_r, G-1, J)
    pair = valid[:, :, 1:] * valid[:, :, :-1]
    m_tj = (step * pair).sum(dim=2) / pair.sum(dim=2).clamp(min=1.0)  # (B, T_r, J)
    m_max = m_tj.flatten(1).amax(dim=1).reshape(-1, 1, 1)
    a_tj = alpha + (1.0 - alpha) * m_tj / (m_max + eps)

    grid = image_size // patch_size
    centres = (torch.arange(grid, dtype=kp.dtype, device=kp.device) + 0.5) * patch_size
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # row-major, as conv1 flattens patches
    u = torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=-1)  # (N_p, 2)
    d2 = ((u.reshape(1, 1, 1, -1, 2) - p_tj.unsqueeze(3)) ** 2).sum(-1)  # (B, T_r, J, N_p)
    r = (c_tj * a_tj).unsqueeze(-1) * torch.exp(-d2 / (2.0 * sigma * sigma))
    r = r.amax(dim=2)  # (B, T_r, N_p)
    anyone = (c_tj.flatten(1).amax(dim=1) > 0).reshape(-1, 1, 1)
    return torch.where(anyone, r, torch.ones_like(r))
