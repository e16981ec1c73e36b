"""Parameter and FLOP counts of the two halves of a preset (``python -m clipmg.model.profile``)."""

from __future__ import annotations

import argparse
from typing import Dict

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .config import list_presets
from .factory import create_model
from .pose_cache import stage_shapes


def count_flops(fn, *args) -> int:
    """FLOPs (multiply-add = 2) of one call, counted by PyTorch's dispatcher-level counter.

    nn.MultiheadAttention's inference fast path and the fused CPU attention kernel are opaque to
    the counter, so both are switched to their plain forms while counting; element-wise ops
    (GELU, LayerNorm, softmax) are not counted, as usual.
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            fn(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return int(counter.get_total_flops())


def split_flops(model) -> Dict[str, float]:
    """FLOPs of the frame encoder per frame and of the window head per window for ``model``."""
    cfg = model.cfg
    s, t = cfg.vision.image_size, cfg.clip.rgb_frames
    img = torch.zeros(1, 3, s, s)
    model = model.eval()
    with torch.no_grad():
        tokens, emb = model.encode_frames(img)
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(1, cfg.clip.pose_frames, cfg.pose.num_joints, 3, generator=g) * torch.tensor([s, s, 1.0])
    tok_w = tokens.unsqueeze(1).expand(1, t, *tokens.shape[1:]).contiguous()
    emb_w = emb.unsqueeze(1).expand(1, t, emb.shape[-1]).contiguous()
    out = {
        "frame_encoder_per_frame": float(count_flops(model.encode_frames, img)),
        "window_head_per_window": float(count_flops(model.head, tok_w, emb_w, kp)),
    }
    if model.uses_pose:
        out["window_head_pose_cache_s8"] = float(pose_cached_head_flops(model, tok_w, emb_w, kp, new_groups=2))
    return out


def pose_cached_head_flops(model, tokens, frame_emb, keypoints, new_groups: int) -> int:
    """FLOPs of a window's head in the live recognizer's steady state with the pose-branch cache
    (``model/pose_cache.py``): stage ``i`` computes ``new_groups + 2 i`` inputs (at most ``T``), then
    the head on the assembled pre-activations. ``new_groups`` is ``S / G`` (2 at ``S = 8``)."""
    cfg = model.cfg
    t, g = cfg.clip.rgb_frames, cfg.clip.group
    total = 0
    for i, sh in enumerate(stage_shapes(cfg)):
        n = min(t, new_groups + 2 * i)
        x = keypoints[0, : n * g].reshape(n, g, *keypoints.shape[2:]) if i == 0 else torch.zeros(n, *sh["input"])
        total += count_flops(model.pose_partials, i, x)
    _, c, h, w = stage_shapes(cfg)[-1]["taps"]
    return total + count_flops(model.head, tokens, frame_emb, keypoints, torch.zeros(1, c, t, h, w))


def profile_preset(preset: str, num_classes: int = 32, variant: str = "full") -> Dict[str, float]:
    """Parameters (total / trainable) and FLOPs of the frame encoder per frame and the head per window."""
    model = create_model(preset, num_classes=num_classes, variant=variant).eval()
    flops = split_flops(model)
    head_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("visual."))
    last = model.visual.transformer.resblocks[-1]
    shared = sum(p.numel() for p in last.parameters()) + sum(p.numel() for p in model.visual.ln_post.parameters())
    return {
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params_frame_encoder": sum(p.numel() for p in model.visual.parameters()),
        "params_head": head_params + shared,  # the head reuses block L and ln_post
        "gflops_frame_encoder_per_frame": flops["frame_encoder_per_frame"] / 1e9,
        "gflops_head_per_window": flops["window_head_per_window"] / 1e9,
        "gflops_head_pose_cache_s8": flops.get("window_head_pose_cache_s8", float("nan")) / 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("presets", nargs="*", default=list(list_presets()))
    ap.add_argument("--variant", default="full")
    args = ap.parse_args(argv)
    print(
        "| preset | params (M) | trainable (M) | frame encoder GFLOP / frame | head GFLOP / window | "
        "head with pose cache, S = 8 | 8-frame window, naive re-encode GFLOP |"
    )
    print("|---|---|---|---|---|---|---|")
    for p in args.presets:
        r = profile_preset(p, variant=args.variant)
        naive = 8 * r["gflops_frame_encoder_per_frame"] + r["gflops_head_per_window"]
        print(
            f"| {p} | {r['params_total'] / 1e6:.2f} | {r['params_trainable'] / 1e6:.2f} | "
            f"{r['gflops_frame_encoder_per_frame']:.2f} | {r['gflops_head_per_window']:.3f} | "
            f"{r['gflops_head_pose_cache_s8']:.3f} | {naive:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
