"""The demo model the live recognizer runs when no ``--engine`` is given.

A tiny CLIP-MG trained by this project on its own synthetic micro-gesture set ships in two forms in
``stream/assets/``: its checkpoint (``demo-tiny-synth.safetensors``, for the PyTorch backend) and its
ONNX export (``demo-tiny-synth-onnx/``, for ONNX Runtime: the form a runtime-only install without
PyTorch runs). Nothing is exported or downloaded at run time. It recognises the *synthetic*
gestures only; it says nothing about real people. Both assets are made by ``python -m
clipmg.train.demo`` (``--retrain``: the checkpoint; ``--export-asset``: the export from it), and a test
checks that the shipped export is the shipped checkpoint's (same sha256 in its metadata, logits
equal).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_CHECKPOINT = ASSETS / "demo-tiny-synth.safetensors"
DEMO_EXPORT = ASSETS / "demo-tiny-synth-onnx"
DEMO_NOTICE = (
    "this is the synthetic demo model: a tiny CLIP-MG trained on clipmg's synthetic micro-gesture "
    "set; its labels mean nothing for real people (train your own with clipmg-train)"
)
BACKENDS = ("auto", "onnxruntime", "torch")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def demo_model(backend: str = "auto") -> Path:
    """The demo artifact to run: the ONNX export where ONNX Runtime is installed (``auto``,
    ``onnxruntime``), else the checkpoint (``torch``: PyTorch). ``FileNotFoundError`` with what to do
    when neither can run here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "torch" and (DEMO_EXPORT / "manifest.json").is_file() and _installed("onnxruntime"):
        return DEMO_EXPORT
    if backend == "onnxruntime":
        raise FileNotFoundError(
            f"the demo model's ONNX export ({DEMO_EXPORT}) or ONNX Runtime is missing; "
            f"install clipmg[runtime] or pass --engine PATH"
        )
    if DEMO_CHECKPOINT.is_file() and _installed("torch"):
        return DEMO_CHECKPOINT
    raise FileNotFoundError(
        "the demo model cannot run in this installation (it needs ONNX Runtime for its export "
        "or PyTorch for its checkpoint): install clipmg[runtime] or pass --engine PATH"
    )
