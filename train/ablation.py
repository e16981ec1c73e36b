"""``clipmg-ablate``: train and evaluate the five variants on the same data and seed, and write a
table shaped like the paper's Table 2 (``ablation.md`` and ``ablation.json`` in ``--out``). It needs a
validation split (``--val-fraction`` above 0): the table is of validation accuracy. Errors: one
sentence, exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List

from clipmg.model import VARIANTS
from clipmg.model.checkpoint_format import read_metadata
from clipmg.model.config import ConfigError
from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.files import atomic_write_text
from clipmg.model.logs import TRAINING

from .config import TrainConfig, add_arguments, from_args
from .trainer import train

PAPER_TOP1 = {
    "full": 61.82,
    "no_gating": 60.08,
    "no_cross_attention": 53.17,
    "no_pose_guidance": 51.23,
    "no_pose": 45.30,
}  # CLIP-MG paper, Table 2 (iMiGUE, ViT-B/16)
DESCRIPTION = {
    "full": "full model",
    "no_gating": "w/o gated fusion",
    "no_cross_attention": "w/o cross-attention",
    "no_pose_guidance": "w/o pose guidance",
    "no_pose": "w/o pose (RGB only)",
}


def ablation_table(rows: List[Dict[str, Any]]) -> str:
    """The rows as a Markdown table; top-5 reads "n/a" with 5 classes or fewer (it would be 100 %)."""
    lines = [
        "| variant | | val top-1 (%) | val top-5 (%) | macro (%) | train time (min) | paper top-1 (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top5 = f"{100 * r['top5']:.2f}" if r["top5"] is not None else "n/a"
        lines.append(
            f"| `{r['variant']}` | {DESCRIPTION[r['variant']]} | {100 * r['top1']:.2f} | "
            f"{top5} | {100 * r['macro']:.2f} | {r['minutes']:.1f} | "
            f"{PAPER_TOP1[r['variant']]:.2f} |"
        )
    return "\n".join(lines) + "\n"


# settings that do not change what a run computes: a finished run may be reused across them
_RUN_ONLY = ("out", "workers", "threads", "device", "resume", "save_every", "tensorboard", "time_limit_min")


def finished_run(cfg: TrainConfig) -> float | None:
    """Minutes a finished run of exactly ``cfg``'s recipe took, if ``cfg.out`` holds one; else ``None``."""
    last = Path(cfg.out) / "last.safetensors"
    if not (last.is_file() and (Path(cfg.out) / "best.safetensors").is_file()):
        return None
    meta = read_metadata(last)
    recorded = {k: v for k, v in meta.get("train", {}).items() if k not in _RUN_ONLY}
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in _RUN_ONLY}
    if recorded != wanted:
        diff = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
        raise ClipmgError(
            f"{cfg.out} holds a run with other settings ({', '.join(diff)}); remove it or choose another --out"
        )
    metrics = meta.get("metrics", {})
    if cfg.max_steps <= 0 and metrics.get("epoch") != cfg.epochs:
        return None  # stopped early (time limit or killed): not the same run, train again
    return float(metrics.get("elapsed_s", 0.0)) / 60


def run_ablation(base: TrainConfig, variants: List[str], reuse: bool = False) -> List[Dict[str, Any]]:
    from .evaluate import evaluate_checkpoint

    rows = []
    for v in variants:
        out = Path(base.out) / v
        cfg = dataclasses.replace(base, variant=v, out=str(out))
        minutes = finished_run(cfg) if reuse else None
        if minutes is None:
            t0 = time.monotonic()
            train(cfg)
            minutes = (time.monotonic() - t0) / 60
        else:
            logging.getLogger("clipmg.ablate").info("%s: reusing the finished run in %s", v, out)
        if not (out / "best.safetensors").is_file():
            raise ClipmgError(
                f"{v}: the run in {out} has no best.safetensors: its validation split holds no usable "
                f"clips; use a data set with more videos or a larger --val-fraction"
            )
        rep = evaluate_checkpoint(
            out / "best.safetensors", base.data, base.layout, "val", out / "eval", base.batch_size, base.device
        )
        rows.append(
            {
                "variant": v,
                "top1": rep["top1"],
                "top5": rep["top5"],
                "macro": rep["macro"],
                "minutes": minutes,
                "count": rep["count"],
            }
        )
        logging.getLogger("clipmg.ablate").info("%s: top-1 %.4f (%.1f min)", v, rep["top1"], minutes)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``clipmg-ablate``: exit 0, or 2 with one sentence for what the user can fix, 1 for a bug."""
    return run_command("clipmg-ablate", lambda: _main(argv), style=TRAINING)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="clipmg-ablate", description=__doc__)
    add_arguments(ap)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate, instead of retraining, a variant whose run "
        "directory already holds a finished run of the same recipe (e.g. variants trained in "
        "parallel by separate clipmg-ablate --variants calls)",
    )
    args = ap.parse_args(argv)
    base = from_args(args, {"out": "runs/ablation"})
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ConfigError(
            f"--variants: unknown variant(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(VARIANTS)}"
        )
    if not base.data:
        raise ConfigError("--data is required (a dataset root; make one with clipmg-synth)")
    if base.val_fraction == 0:
        raise ConfigError(
            "--val-fraction 0 leaves no validation split, and the ablation table is of validation "
            "accuracy; give a fraction above 0"
        )
    rows = run_ablation(base, variants, args.reuse)
    out = Path(base.out)
    table = ablation_table(rows)
    atomic_write_text(out / "ablation.md", table)
    atomic_write_text(out / "ablation.json", json.dumps({"config": base.to_dict(), "rows": rows}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
