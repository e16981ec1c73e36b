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

The shipped checkpoint was trained before checkpoints carried a digest of their weights; the digest
was added with ``clipmg.model.checkpoint.add_digest`` (the tensor bytes untouched) and the export
re-made from it, so the export's recorded checkpoint sha256 is the shipped file's.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from clipmg.engines.export import export_onnx
from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.logs import NAMED, LogStyle
from clipmg.stream.demo import DEMO_CHECKPOINT, DEMO_EXPORT, demo_model
from clipmg.train.synth import write_dataset
from clipmg.train.trainer import main as train_main

log = logging.getLogger("clipmg.demo")

TRAIN_ARGS = [
    "--preset",
    "clipmg-tiny",
    "--epochs",
    "78",
    "--batch-size",
    "16",
    "--lr-new",
    "2e-3",
    "--lr-vit",
    "1e-3",
    "--colour-jitter",
    "0.3",
    "--crop",
    "person",
    "--person-scale",
    "1.1",
    "--weight-decay",
    "0.2",
    "--time-limit-min",
    "14.5",
    "--seed",
    "0",
    "--workers",
    "1",
]


def export_asset() -> Path:
    """Re-make the shipped ONNX export of the shipped checkpoint (``stream/assets/demo-tiny-synth-onnx``)."""
    if DEMO_EXPORT.exists():
        shutil.rmtree(DEMO_EXPORT)
    export_onnx(DEMO_CHECKPOINT, DEMO_EXPORT)
    return DEMO_EXPORT


def retrain(workdir: Path) -> Path:
    """Regenerate the synthetic set and retrain the demo checkpoint (CPU: ~15 minutes)."""
    data = workdir / "synth-default"
    if not (data / "classes.txt").is_file():
        write_dataset(data, seed=0, progress=True)
    run = workdir / "demo"
    if train_main(["--data", str(data), "--out", str(run), *TRAIN_ARGS]) != 0:
        raise ClipmgError("demo training failed; see the messages above")
    shutil.copyfile(run / "best.safetensors", DEMO_CHECKPOINT)
    export_asset()  # the export always follows the checkpoint
    return DEMO_CHECKPOINT


def main(argv: list[str] | None = None) -> int:
    """Exit 0, or 2 with one sentence for what the user can fix, 1 for a bug."""
    return run_command("clipmg demo", lambda: _main(argv), style=LogStyle(NAMED, speak=False, libraries=logging.INFO))


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--retrain", action="store_true", help="regenerate the synthetic set and retrain the demo model")
    ap.add_argument(
        "--export-asset", action="store_true", help="re-make the shipped ONNX export from the shipped checkpoint"
    )
    ap.add_argument("--workdir", type=Path, default=Path("runs"), help="where --retrain writes data and runs")
    args = ap.parse_args(argv)
    if args.retrain:
        path = retrain(args.workdir)
    elif args.export_asset:
        path = export_asset()
    else:
        try:  # where the demo model cannot run, demo_model says why and what to install
            path = demo_model()
        except FileNotFoundError as e:
            raise ClipmgError(str(e)) from e
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
