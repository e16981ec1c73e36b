"""CLIP-MG in PyTorch: the model, its presets and the preprocessing shared by training and inference."""

from .clipmg import CLIPMG, FrameEncoder, WindowHead
from .config import (VARIANTS, ClipConfig, ModelConfig, PoseConfig, PreprocessConfig, VisionConfig,
                     list_presets, load_config)
from .factory import build_model, create_model
from .layouts import extract_layout, list_layouts

__all__ = [
    "CLIPMG", "FrameEncoder", "WindowHead", "VARIANTS", "ClipConfig", "ModelConfig", "PoseConfig",
    "PreprocessConfig", "VisionConfig", "list_presets", "load_config", "build_model", "create_model",
    "extract_layout", "list_layouts",
]
