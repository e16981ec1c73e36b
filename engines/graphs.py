"""The graphs of an ONNX export: their file names and input/output names (the I/O contract that
``clipmg-export`` writes, ``OnnxEngine`` and the int8 quantiser read), and how two graphs' outputs are
compared. No PyTorch, no ONNX: the runtime imports this.
"""

from __future__ import annotations

import numpy as np

FRAME_ENCODER = "frame_encoder.onnx"
WINDOW_HEAD = "window_head.onnx"
FRAME_ENCODER_INT8 = "frame_encoder.int8.onnx"
CACHED_HEAD = "window_head_cached.onnx"


def graph_file(graph: str) -> str:
    """The file a graph of an export is written to (``pose_stage1`` -> ``pose_stage1.onnx``)."""
    return f"{graph}.onnx"


FE_INPUTS, FE_OUTPUTS = ("images",), ("tokens", "frame_emb")
HEAD_INPUTS, HEAD_OUTPUTS = ("tokens", "frame_emb", "keypoints"), ("logits",)


def rel_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """``max |actual - reference| / max |reference|``: the error relative to the reference's scale."""
    a, r = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    if a.shape != r.shape:
        return float("inf")
    return float(np.abs(a - r).max() / max(float(np.abs(r).max()), 1e-12))
