"""The skeleton encoder across sliding windows, each time step's work done once.

Window ``w`` holds ``T`` groups of pose samples (one heatmap frame each, model.md section 4) and
the next window, ``S / G`` groups later, shares most of them. The encoder's three stages are 3D
convolutions with a temporal kernel of 3 and zero temporal padding, so a stage's output at window
position ``p`` depends on its input at ``p - 1 .. p + 1`` inside the window only:

- stage ``i``'s input (stages counted from 0) at position ``p`` is the same in every window when
  ``i <= p <= T - 1 - i``: stage 0's (the heatmap frames) everywhere, stage 1's away from the two
  ends, stage 2's away from the two positions at each end; such an input belongs to the stream,
  keyed by its group number;
- elsewhere it depends on where the window starts (the zero padding) and is computed per window.

Each input is turned once into its three temporal taps (``SkeletonEncoder.partials``); a stage's
pre-activations are sums of neighbouring taps, here in NumPy. Stream taps are kept until the
windows move past their group. At ``T = 8`` and ``S = 8`` (two new groups a window) a window
computes taps for 2, 4 and 6 inputs of the three stages instead of 8, 8 and 8.

The partials function is an engine's (``Engine.pose_partials``) or the PyTorch model's; the result,
the last stage's pre-activations of the window, goes to the head (``Engine.head_cached``).
"""

from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from .config import ModelConfig

Partials = Callable[[int, np.ndarray], np.ndarray]


class PoseBranchCache:
    """Taps of the stream's stage inputs, kept across windows (see the module docstring).

    ``partials(stage, x)``: stage 0 takes groups' keypoints ``(n, G, J, 3)`` (model-input pixels),
    stage ``i > 0`` the previous stage's pre-activations ``(n, C, H, W)``; both return the taps
    ``(n, 3, C_out, H', W')``. ``computed[i]`` counts the stage-``i`` inputs turned into taps so far.
    """

    def __init__(self, partials: Partials, rgb_frames: int, group: int, stages: int = 3) -> None:
        self.partials, self.T, self.G, self.stages = partials, rgb_frames, group, stages
        self.keypoints: Dict[int, np.ndarray] = {}  # group -> the keypoints its stream taps come from
        self.taps: List[Dict[int, np.ndarray]] = [{} for _ in range(stages)]  # stage -> group -> (3, C, H, W)
        self.computed = [0] * stages

    @classmethod
    def for_config(cls, partials: Partials, cfg: ModelConfig) -> "PoseBranchCache":
        """A cache shaped for ``cfg``'s windows (``T_r`` time steps of ``G`` samples) and encoder."""
        return cls(partials, cfg.clip.rgb_frames, cfg.clip.group, len(cfg.pose.skeleton_channels))

    def clear(self) -> None:
        self.keypoints.clear()
        for t in self.taps:
            t.clear()

    def _stream(self, stage: int, p: int) -> bool:
        return stage <= p <= self.T - 1 - stage

    def window(self, first_group: int, keypoints: np.ndarray) -> np.ndarray:
        """The window whose position 0 is group ``first_group``: keypoints ``(T*G, J, 3)`` (model-input
        pixels, each group mapped with its own crop box) -> last-stage pre-activations ``(C, T, H', W')``."""
        t_len, g = self.T, self.G
        kp = np.ascontiguousarray(keypoints, np.float32).reshape(t_len, g, *keypoints.shape[1:])
        groups = [first_group + p for p in range(t_len)]
        # A group's keypoints never change in one stream; if they differ (a restarted stream reusing
        # numbers), nothing kept can be trusted.
        if any(s in self.keypoints and not np.array_equal(self.keypoints[s], kp[p]) for p, s in enumerate(groups)):
            self.clear()
        for store in (self.keypoints, *self.taps):  # windows only move forward
            for s in [s for s in store if s < first_group]:
                del store[s]
        for p, s in enumerate(groups):
            self.keypoints.setdefault(s, kp[p].copy())

        prev: List[np.ndarray] = []  # previous stage's taps at every position
        for i in range(self.stages):
            todo = [p for p in range(t_len) if not (self._stream(i, p) and groups[p] in self.taps[i])]
            if todo:
                if i == 0:
                    x = kp[todo]
                else:
                    x = np.stack([self._pre(prev, p) for p in todo])
                out = self.partials(i, x)
                self.computed[i] += len(todo)
            taps: List[np.ndarray] = []
            for p in range(t_len):
                if p in todo:
                    tp = out[todo.index(p)]
                    if self._stream(i, p):
                        self.taps[i][groups[p]] = tp
                else:
                    tp = self.taps[i][groups[p]]
                taps.append(tp)
            prev = taps
        return np.stack([self._pre(prev, p) for p in range(t_len)], axis=1)

    def _pre(self, taps: List[np.ndarray], p: int) -> np.ndarray:
        """Pre-activations at position ``p`` from the taps of positions ``p-1, p, p+1`` (zero outside)."""
        pre = taps[p][1].copy()
        if p > 0:
            pre += taps[p - 1][0]
        if p + 1 < len(taps):
            pre += taps[p + 1][2]
        return pre


def stage_shapes(cfg: ModelConfig) -> List[Dict[str, tuple]]:
    """Per stage of ``cfg``'s skeleton encoder: its input ``(C, H, W)`` at one time step and its
    taps ``(3, C_out, H', W')``; stage 0's input is a heatmap frame (its graph takes keypoints)."""
    pc = cfg.pose
    c, h = pc.num_joints, pc.heatmap_size
    out: List[Dict[str, tuple]] = []
    for c_out in pc.skeleton_channels:
        h_out = (h - 1) // 2 + 1  # kernel 3, stride 2, padding 1
        out.append({"input": (c, h, h), "taps": (3, c_out, h_out, h_out)})
        c, h = c_out, h_out
    return out
