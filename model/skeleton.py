"""Skeleton encoder (spec section 5): three 3D-conv stages over the heatmap volume."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
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
            layers += [
                nn.Conv3d(c_in, c_out, kernel_size=3, stride=(1, 2, 2), padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
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

    # ---------------------------------------------------------------- the same encoder, one time step at a time
    # A stage's Conv3d (temporal kernel 3, zero padding 1, temporal stride 1) is a sum over the three
    # temporal taps: out[t] = sum_dt conv2d(in[t + dt - 1], W[:, :, dt]). So each time step's input can be
    # convolved once with all three taps ("partials"), and a window's pre-activations are sums of its
    # neighbours' partials: pre[t] = P[t-1][0] + P[t][1] + P[t+1][2], a missing neighbour counting as zero
    # (the temporal padding). The live recognizer keeps the partials of time steps that later windows
    # share (model/pose_cache.py); ``finish`` completes the encoder from the last stage's pre-activations.
    @property
    def num_stages(self) -> int:
        return len(self.stages) // 3

    def activate(self, stage: int, pre: torch.Tensor) -> torch.Tensor:
        """BatchNorm (running statistics, as in eval mode) and ReLU of ``stage`` on its pre-activations,
        any shape ``(N, C, ...)``."""
        bn = self.stages[3 * stage + 1]
        return F.relu(F.batch_norm(pre, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))

    def partials(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        """``stage``'s input at one time step ``(N, C_in, H, W)`` -> its three temporal taps
        ``(N, 3, C_out, H', W')``: tap ``dt`` is its contribution to the output at ``t + 1 - dt``."""
        conv = self.stages[3 * stage]
        w = conv.weight  # (C_out, C_in, 3, 3, 3)
        c_out = w.shape[0]
        w2 = w.permute(2, 0, 1, 3, 4).reshape(3 * c_out, w.shape[1], *w.shape[3:])  # taps stacked on C_out
        y = F.conv2d(x, w2, None, stride=conv.stride[1:], padding=conv.padding[1:])
        return y.reshape(y.shape[0], 3, c_out, *y.shape[2:])

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """The last stage's pre-activations ``(B, C3, T, H', W')`` -> ``p (B, D)``."""
        f = self.activate(self.num_stages - 1, pre).mean(dim=(2, 3, 4))
        return self.proj(f)
