"""Skeleton encoder (spec section 5): three 3D-conv stages over the heatmap volume."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class SkeletonEncoder(nn.Module):
    """``P (B, J, T, H, W)`` -> pose feature ``p (B, D)``.

    Stage ``i``: Conv3d(k=3, stride=(1, 2, 2), pad=1) -> BatchNorm3d -> ReLU, downsampling space
    only; global average pooling over (T, H, W) gives ``f_p``; ``p = W_p f_p + b_p``, with ``W_p``
    initialised at ``proj_init_gain`` times PyTorch's default scale.
    """

    def __init__(self, num_joints: int, channels: Sequence[int], out_dim: int, proj_init_gain: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = num_joints
        for c_out in channels:
            layers += [nn.Conv3d(c_in, c_out, kernel_size=3, stride=(1, 2, 2), padding=1, bias=False),
                       nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, out_dim)
        if proj_init_gain != 1.0:  # ModelConfig.pose.proj_init_gain: pose and visual parts of the gates alike
            with torch.no_grad():
                self.proj.weight.mul_(proj_init_gain)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        f = self.stages(volume)  # (B, C3, T, H/8, W/8)
        f = f.mean(dim=(2, 3, 4))  # (B, C3) = f_p
        return self.proj(f)
