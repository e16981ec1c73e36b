"""Measure a training step of a preset on this machine: seconds, clips/s, FLOPs per clip, memory.

``python -m clipmg.train.measure --preset clipmg-vitb16 --batch-size 2 --steps 3`` prints one JSON
line; docs/reproduce-imigue.md turns it into time estimates for full iMiGUE training. On a GPU:
``--device cuda --amp bf16 --batch-size 32`` (CUDA time is taken after a synchronise, memory is the
allocator's peak).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from clipmg.model import create_model


def train_step_flops(model, images, kp, target) -> int:
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as fc:
            torch.nn.functional.cross_entropy(model(images, kp), target).backward()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="clipmg-vitb16")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--num-classes", type=int, default=32)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument(
        "--amp",
        default="none",
        choices=["none", "bf16", "fp16"],
        help="autocast dtype of the timed steps (the FLOP count is always float32)",
    )
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    model = create_model(args.preset, num_classes=args.num_classes).train().to(dev)
    cfg = model.cfg
    s, b = cfg.vision.image_size, args.batch_size
    images = torch.randn(b, cfg.clip.rgb_frames, 3, s, s, device=dev)
    kp = torch.rand(b, cfg.clip.pose_frames, cfg.pose.num_joints, 3, device=dev) * torch.tensor([s, s, 1.0], device=dev)
    target = torch.randint(0, args.num_classes, (b,), device=dev)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    flops = train_step_flops(model, images, kp, target)

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    def train_step(*inputs, **kw) -> None:
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(model(*inputs, **kw), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(args.steps + 1):
        t = clock()
        train_step(images, kp)
        times.append(clock() - t)
    step = sorted(times[1:])[len(times[1:]) // 2]
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu_peak = torch.cuda.max_memory_allocated(dev) if cuda else 0
    # --cache-frozen: the same step from cached frozen-block outputs, timed interleaved with the
    # plain step so that load from other processes falls on both alike
    with torch.no_grad(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
        frozen = model.encode_frozen(images.flatten(0, 1)).reshape(b, cfg.clip.rgb_frames, -1, cfg.vision.width)
    plain: list[float] = []
    cached: list[float] = []
    for _ in range(args.steps):
        for kind, bucket in (("plain", plain), ("cached", cached)):
            t = clock()
            if kind == "plain":
                train_step(images, kp)
            else:
                train_step(None, kp, frozen_tokens=frozen)
            bucket.append(clock() - t)
    out = {
        "preset": args.preset,
        "batch_size": b,
        "device": str(dev),
        "amp": args.amp,
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "step_s": round(step, 3),
        "clips_per_s": round(b / step, 3),
        "gflop_per_clip_train": round(flops / b / 1e9, 1),
        "achieved_gflops": round(flops / step / 1e9, 1),
        "peak_rss_mib": round(rss1 / 1024, 1),
        "rss_growth_during_steps_mib": round((rss1 - rss0) / 1024, 1),
        "gpu_peak_allocated_mib": round(gpu_peak / 2**20, 1),
        "interleaved_step_s": {
            "plain": round(sorted(plain)[len(plain) // 2], 3),
            "cached_frozen": round(sorted(cached)[len(cached) // 2], 3),
        },
        "cache_frozen_speedup": round(sorted(plain)[len(plain) // 2] / sorted(cached)[len(cached) // 2], 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
