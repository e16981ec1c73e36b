"""The synthetic demo model that the live recognizer runs by default.

A tiny CLIP-MG trained by this project on its own synthetic micro-gesture set ships inside the
package (``clipmg/train/assets/demo-tiny-synth.safetensors``, ~4 MB). ``ensure_demo_model()``
exports it to ONNX once (cached under ``~/.cache/clipmg``) and returns the artifact to run.
It recognises the *synthetic* gestures only; it says nothing about real people.

Reproduce the shipped checkpoint (``python -m clipmg.train.demo --retrain``)::

    clipmg-synth runs/synth-default --seed 0
    clipmg-train --data runs/synth-default --out runs/demo --preset clipmg-tiny --epochs 78 \\
        --batch-size 16 --lr-new 2e-3 --lr-vit 1e-3 --colour-jitter 0.3 --crop person --person-scale 1.1 \\
        --weight-decay 0.2 --time-limit-min 14.5 --seed 0 --workers 1
    cp runs/demo/best.safetensors train/assets/demo-tiny-synth.safetensors
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Callable

log = logging.getLogger("clipmg.demo")

DEMO_NAME = "demo-tiny-synth.safetensors"
TRAIN_ARGS = ["--preset", "clipmg-tiny", "--epochs", "78", "--batch-size", "16", "--lr-new", "2e-3",
              "--lr-vit", "1e-3", "--colour-jitter", "0.3", "--crop", "person", "--person-scale", "1.1",
              "--weight-decay", "0.2", "--time-limit-min", "14.5", "--seed", "0", "--workers", "1"]
DEMO_NOTICE = ("this is the synthetic demo model: a tiny CLIP-MG trained on clipmg's synthetic micro-gesture "
               "set; its labels mean nothing for real people (train your own with clipmg-train)")


def cache_dir() -> Path:
    base = os.environ.get("CLIPMG_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "clipmg")
    return Path(base).expanduser()


def demo_checkpoint() -> Path:
    """Path of the shipped demo checkpoint."""
    p = Path(str(resources.files("clipmg.train.assets") / DEMO_NAME))
    if not p.is_file():
        raise FileNotFoundError(f"the demo checkpoint {p} is missing from this installation; rebuild it with "
                                f"`python -m clipmg.train.demo --retrain` or pass --engine PATH")
    return p


# Part of the cached export's name: bumped when exports gain graphs the live demo uses, so an export
# cached by an older clipmg is replaced (2: the pose-branch graphs, engines/export.py).
DEMO_EXPORT_REVISION = 2


def ensure_demo_model(cache: Path | None = None, backend: str = "auto",
                      say: Callable[[str], None] = log.info) -> Path:
    """The artifact the live demo runs: an ONNX export of the demo checkpoint (made once, cached)
    when ONNX Runtime is installed (``backend`` ``auto``/``onnxruntime``), else the checkpoint.
    A failed export falls back to the checkpoint (PyTorch backend), saying why."""
    ckpt = demo_checkpoint()
    if backend == "torch":
        return ckpt
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if backend == "onnxruntime":
            raise
        return ckpt
    from clipmg.train.checkpoint import file_sha256

    out = (cache or cache_dir()) / f"demo-onnx-{file_sha256(ckpt)[:16]}-r{DEMO_EXPORT_REVISION}"
    if not (out / "manifest.json").is_file():
        from clipmg.engines.export import export_onnx

        say(f"exporting the demo model to ONNX once ({out})")
        try:
            export_onnx(ckpt, out, log=lambda m: None)
        except Exception as e:  # noqa: BLE001 - the demo must run: fall back to PyTorch, say why
            if backend == "onnxruntime":
                raise
            say(f"ONNX export of the demo model failed ({' '.join(str(e).split())[:200]}): running it in PyTorch")
            return ckpt
    return out


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
    target = Path(str(resources.files("clipmg.train.assets"))) / DEMO_NAME
    shutil.copyfile(run / "best.safetensors", target)
    return target


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--retrain", action="store_true", help="regenerate the synthetic set and retrain the demo model")
    ap.add_argument("--workdir", type=Path, default=Path("runs"), help="where --retrain writes data and runs")
    args = ap.parse_args(argv)
    try:
        path = retrain(args.workdir) if args.retrain else ensure_demo_model()
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"clipmg demo: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
