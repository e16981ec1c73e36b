"""Measure a training step of a preset on this machine: seconds, clips/s, FLOPs per clip, memory.

``python -m clipmg.train.measure --preset clipmg-vitb16 --batch-size 2 --steps 3`` prints one JSON
line; docs/reproduce-imigue.md turns it into time estimates for full iMiGUE training.
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
    args = ap.parse_args(argv)
    model = create_model(args.preset, num_classes=args.num_classes).train()
    cfg = model.cfg
    s, b = cfg.vision.image_size, args.batch_size
    images = torch.randn(b, cfg.clip.rgb_frames, 3, s, s)
    kp = torch.rand(b, cfg.clip.pose_frames, cfg.pose.num_joints, 3) * torch.tensor([s, s, 1.0])
    target = torch.randint(0, args.num_classes, (b,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    flops = train_step_flops(model, images, kp, target)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.steps + 1):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images, kp), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = sorted(times[1:])[len(times[1:]) // 2]
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # --cache-frozen: the same step from cached frozen-block outputs, timed interleaved with the
    # plain step so that load from other processes falls on both alike
    with torch.no_grad():
        frozen = model.encode_frozen(images.flatten(0, 1)).reshape(b, cfg.clip.rgb_frames, -1, cfg.vision.width)
    plain, cached = [], []
    for _ in range(args.steps):
        for kind, bucket in (("plain", plain), ("cached", cached)):
            t = time.perf_counter()
            logits = model(images, kp) if kind == "plain" else model(None, kp, frozen_tokens=frozen)
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(logits, target).backward()
            opt.step()
            bucket.append(time.perf_counter() - t)
    out = {"preset": args.preset, "batch_size": b, "threads": torch.get_num_threads(),
           "step_s": round(step, 3), "clips_per_s": round(b / step, 3),
           "gflop_per_clip_train": round(flops / b / 1e9, 1), "achieved_gflops": round(flops / step / 1e9, 1),
           "peak_rss_mib": round(rss1 / 1024, 1), "rss_growth_during_steps_mib": round((rss1 - rss0) / 1024, 1),
           "interleaved_step_s": {"plain": round(sorted(plain)[len(plain) // 2], 3),
                                  "cached_frozen": round(sorted(cached)[len(cached) // 2], 3)},
           "cache_frozen_speedup": round(sorted(plain)[len(plain) // 2] / sorted(cached)[len(cached) // 2], 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
