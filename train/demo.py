"""Making the built-in demo model: retrain its checkpoint, re-make its ONNX export.

The live side finds and runs it (``clipmg.stream.demo``); this module only writes the two assets in
``stream/assets/``. Reproduce the shipped checkpoint (``python -m clipmg.train.demo --retrain``, which
also re-makes the export)::

    clipmg-synth runs/synth-default --seed 0
    clipmg-train --data runs/synth-default --out runs/demo --preset clipmg-tiny --epochs 78 \\
        --batch-size 16 --lr-new 2e-3 --lr-vit 1e-3 --colour-jitter 0.3 --crop person --person-scale 1.1 \\
        --weight-decay 0.2 --time-limit-min 14.5 --seed 0 --workers 1
    cp runs/demo/best.safetensors stream/assets/demo-tiny-synth.safetensors
    python -m clipmg.train.demo --export-asset
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from clipmg.stream.demo import DEMO_CHECKPOINT, DEMO_EXPORT, demo_model

log = logging.getLogger("clipmg.demo")

TRAIN_ARGS = ["--preset", "clipmg-tiny", "--epochs", "78", "--batch-size", "16", "--lr-new", "2e-3",
              "--lr-vit", "1e-3", "--colour-jitter", "0.3", "--crop", "person", "--person-scale", "1.1",
              "--weight-decay", "0.2", "--time-limit-min", "14.5", "--seed", "0", "--workers", "1"]


def export_asset() -> Path:
    """Re-make the shipped ONNX export of the shipped checkpoint (``stream/assets/demo-tiny-synth-onnx``)."""
    from clipmg.engines.export import export_onnx

    if DEMO_EXPORT.exists():
        shutil.rmtree(DEMO_EXPORT)
    export_onnx(DEMO_CHECKPOINT, DEMO_EXPORT, log=log.info)
    return DEMO_EXPORT


def retrain(workdir: Path) -> Path:
    """Regenerate the synthetic set and retrain the demo checkpoint (CPU: ~15 minutes)."""
    from clipmg.train.synth import write_dataset
    from clipmg.train.trainer import main as train_main

    data = workdir / "synth-default"
    if not (data / "classes.txt").is_file():
        write_dataset(data, seed=0, progress=True)
    run = workdir / "demo"
    if train_main(["--data", str(data), "--out", str(run), *TRAIN_ARGS]) != 0:
        raise RuntimeError("demo training failed; see the messages above")
    shutil.copyfile(run / "best.safetensors", DEMO_CHECKPOINT)
    export_asset()  # the export always follows the checkpoint
    return DEMO_CHECKPOINT


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--retrain", action="store_true", help="regenerate the synthetic set and retrain the demo model")
    ap.add_argument("--export-asset", action="store_true", help="re-make the shipped ONNX export from the shipped checkpoint")
    ap.add_argument("--workdir", type=Path, default=Path("runs"), help="where --retrain writes data and runs")
    args = ap.parse_args(argv)
    try:
        path = retrain(args.workdir) if args.retrain else export_asset() if args.export_asset else demo_model()
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"clipmg demo: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
