"""``clipmg-ablate``: train and evaluate the five variants on the same data and seed, and write a
table shaped like the paper's Table 2 (``ablation.md`` and ``ablation.json`` in ``--out``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from clipmg.model import VARIANTS

from .checkpoint import CheckpointError
from .config import TrainConfig, add_arguments, from_args

PAPER_TOP1 = {"full": 61.82, "no_gating": 60.08, "no_cross_attention": 53.17, "no_pose_guidance": 51.23,
              "no_pose": 45.30}  # CLIP-MG paper, Table 2 (iMiGUE, ViT-B/16)
DESCRIPTION = {"full": "full model", "no_gating": "w/o gated fusion", "no_cross_attention": "w/o cross-attention",
               "no_pose_guidance": "w/o pose guidance", "no_pose": "w/o pose (RGB only)"}


def ablation_table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| variant | | val top-1 (%) | val top-5 (%) | macro (%) | train time (min) | paper top-1 (%) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['variant']}` | {DESCRIPTION[r['variant']]} | {100 * r['top1']:.2f} | "
                     f"{100 * r['top5']:.2f} | {100 * r['macro']:.2f} | {r['minutes']:.1f} | "
                     f"{PAPER_TOP1[r['variant']]:.2f} |")
    return "\n".join(lines) + "\n"


def run_ablation(base: TrainConfig, variants: List[str]) -> List[Dict[str, Any]]:
    import dataclasses

    from .evaluate import evaluate_checkpoint
    from .trainer import train

    rows = []
    for v in variants:
        out = Path(base.out) / v
        cfg = dataclasses.replace(base, variant=v, out=str(out))
        t0 = time.monotonic()
        train(cfg)
        minutes = (time.monotonic() - t0) / 60
        rep = evaluate_checkpoint(out / "best.safetensors", base.data, base.layout, "val", out / "eval",
                                  base.batch_size, base.device)
        rows.append({"variant": v, "top1": rep["top1"], "top5": rep["top5"], "macro": rep["macro"],
                     "minutes": minutes, "count": rep["count"]})
        logging.getLogger("clipmg.ablate").info("%s: top-1 %.4f (%.1f min)", v, rep["top1"], minutes)
    return rows


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__)
    add_arguments(ap)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    args = ap.parse_args(argv)
    try:
        base = from_args(args, {"out": "runs/ablation"})
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
        if not base.data:
            raise ValueError("--data is required (a dataset root; make one with clipmg-synth)")
        rows = run_ablation(base, variants)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"clipmg-ablate: {e}", file=sys.stderr)
        return 2
    out = Path(base.out)
    table = ablation_table(rows)
    (out / "ablation.md").write_text(table)
    (out / "ablation.json").write_text(json.dumps({"config": base.to_dict(), "rows": rows}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
