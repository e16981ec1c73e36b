"""``clipmg-eval``: top-1, top-5, per-class and macro accuracy, a confusion-matrix PNG and a JSON
report for any checkpoint on any supported dataset layout.

Top-5 is reported only with more than 5 classes; classes without clips in the evaluated split are
named, not left out silently; a split without clips is refused. Errors: one sentence, exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, cast

import numpy as np
import torch
from torch.utils.data import DataLoader

from clipmg.model.checkpoint import CheckpointError, load_checkpoint
from clipmg.model.config import ConfigError
from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.files import atomic_write, atomic_write_text
from clipmg.model.logs import NAMED, LogStyle

from .config import TrainConfig
from .data import build_data
from .loop import DistInfo, classification_metrics, resolve_device
from .run import Indexed, collate, evaluate_logits

# What a modality test withholds (--withhold): the RGB frames become the normalised mean (grey, what
# clipmg-train --rgb-dropout trains with), the keypoints confidence 0 (empty heatmaps: no person seen).
WITHHOLD = {"none": "", "rgb": "RGB withheld: grey frames", "pose": "pose withheld: no keypoints"}


def plot_confusion(confusion: List[List[int]], class_names: List[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix as a PNG (rows = true class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(confusion, dtype=np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    side = max(4.0, 0.32 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(m[i, j])),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    layout: str | None = None,
    split: str = "val",
    out: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    strict: bool = False,
    save_windows: str | Path | None = None,
    withhold: str = "none",
) -> Dict[str, Any]:
    """Evaluate a checkpoint on a dataset; the split (seed, validation fraction, background class)
    is the one recorded in the checkpoint, so ``split='val'`` is the held-out set it was chosen on.

    ``save_windows``: also write the evaluated windows as an ``.npz`` (``images``, ``keypoints``,
    ``labels``: exactly the model's inputs), the validation samples ``clipmg-export --int8
    --val-samples`` measures the int8 accuracy change on.

    ``withhold``: ``rgb`` or ``pose`` scores the model with that modality blanked (``WITHHOLD``): how
    much it relies on the other."""
    if withhold not in WITHHOLD:
        raise ConfigError(f"--withhold must be one of {', '.join(WITHHOLD)}; got {withhold!r}")
    if split not in ("val", "train", "all"):
        raise ConfigError(f"--split must be one of val, train, all; got {split!r}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be an integer of at least 1, got {batch_size}")
    if save_windows and Path(save_windows).suffix != ".npz":
        raise ConfigError(f"--save-windows {save_windows}: the file name must end in .npz")
    model, meta = load_checkpoint(checkpoint)
    train_meta = meta.get("train", {})
    cfg = TrainConfig(
        data=data,
        layout=layout or train_meta.get("layout", "openpose_json"),
        val_fraction=train_meta.get("val_fraction", 0.2),
        seed=train_meta.get("seed", 0),
        background=train_meta.get("background", False),
        crop=model.cfg.preprocess.crop,
        preset=model.cfg.name,
        variant=model.cfg.variant,
        strict=strict,
        augment=False,
    )
    ds = build_data(cfg, model.cfg)
    if list(ds.class_names) != list(meta["class_names"]):
        raise CheckpointError(
            f"checkpoint {checkpoint} was trained on classes {meta['class_names'][:4]}... but the "
            f"dataset at {data} has {list(ds.class_names)[:4]}...; evaluate it on data with "
            f"the same class list"
        )
    subsets = {"val": [ds.val], "train": [ds.train], "all": [ds.train, ds.val]}
    if sum(len(sub) for sub in subsets[split]) == 0:
        why = " (the checkpoint was trained with --val-fraction 0)" if split == "val" and cfg.val_fraction == 0 else ""
        raise ClipmgError(f"the {split} split of {data} has no usable clips{why}; evaluate another --split")
    dev = resolve_device(device, DistInfo())
    model.to(dev)
    logits: List[Any] = []
    labels: List[Any] = []
    windows: List[Dict[str, Any]] = []
    for sub in subsets[split]:
        loader = DataLoader(Indexed(sub, cfg.seed), batch_size=batch_size, shuffle=False, collate_fn=collate)
        batches: Any = _keep(loader, windows) if save_windows else loader  # a DataLoader, or one that keeps the windows
        if withhold != "none":
            batches = _withheld(batches, withhold)
        lg, lb = evaluate_logits(model, batches, dev, progress=True)
        logits.append(lg)
        labels.append(lb)
    if save_windows:
        write_windows(save_windows, windows)
    metrics = classification_metrics(np.concatenate(logits), np.concatenate(labels), list(ds.class_names))
    report = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "layout": cfg.layout,
        "split": split,
        "preset": model.cfg.name,
        "variant": model.cfg.variant,
        "withheld": withhold,
        "class_names": list(ds.class_names),
        **metrics,
    }
    if out:
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ClipmgError(f"--out {out}: cannot create the folder ({e.strerror or e})") from e
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        plot_confusion(
            cast(List[List[int]], metrics["confusion"]),
            list(ds.class_names),
            out / "confusion.png",
            f"{model.cfg.name} / {model.cfg.variant} on {split}: top-1 {metrics['top1']:.3f}",
        )
    return report


def _withheld(loader: Any, what: str) -> Iterator[Dict[str, Any]]:
    """The loader's batches with the ``what`` modality blanked (``WITHHOLD``)."""
    key = {"rgb": "images", "pose": "keypoints"}[what]
    for batch in loader:
        yield {**batch, key: torch.zeros_like(batch[key])}


def _keep(loader: Any, sink: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The loader's batches, each also kept in ``sink``."""
    for batch in loader:
        sink.append(batch)
        yield batch


def write_windows(path: str | Path, batches: List[Dict[str, Any]]) -> None:
    """Write batches of model inputs as ``images``, ``keypoints``, ``labels`` (an ``.npz``, no pickles),
    atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"--save-windows {path}: the file name must end in .npz")
    arrays = {
        "images": np.concatenate([b["images"].numpy() for b in batches]).astype(np.float32),
        "keypoints": np.concatenate([b["keypoints"].numpy() for b in batches]).astype(np.float32),
        "labels": np.concatenate([np.asarray(b["label"]) for b in batches]).astype(np.int64),
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
            np.savez(f, **arrays)

    try:
        atomic_write(path, write)
    except OSError as e:
        raise ClipmgError(f"--save-windows {path}: cannot write it ({e.strerror or e})") from e


def main(argv: list[str] | None = None) -> int:
    """``clipmg-eval``: exit 0, or 2 with one sentence for a bad checkpoint, data or flag, 1 for a bug."""
    return run_command("clipmg-eval", lambda: _main(argv), style=LogStyle(NAMED, speak=False, level=logging.WARNING))


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="clipmg-eval", description=__doc__)
    ap.add_argument("checkpoint", help="a .safetensors checkpoint written by clipmg-train")
    ap.add_argument("--data", required=True, help="dataset root")
    ap.add_argument("--layout", help="dataset layout (default: the one the checkpoint was trained on)")
    ap.add_argument(
        "--split",
        default="val",
        choices=("val", "train", "all"),
        help="which clips: the checkpoint's validation videos, its training videos, or all (default: val)",
    )
    ap.add_argument("--out", help="write report.json and confusion.png here")
    ap.add_argument("--batch-size", type=int, default=16, help="clips per forward pass (default: 16)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    ap.add_argument("--strict", action="store_true", help="malformed files are errors, not skipped")
    ap.add_argument(
        "--save-windows",
        metavar="VAL.npz",
        help="also write the evaluated windows (model inputs and "
        "labels) as an .npz: the validation samples of clipmg-export --int8 --val-samples",
    )
    ap.add_argument(
        "--withhold",
        default="none",
        choices=tuple(WITHHOLD),
        help="score with one modality blanked: rgb (grey frames) or pose (no keypoints), to see how much the "
        "model relies on the other (default: none)",
    )
    args = ap.parse_args(argv)
    if args.device != "auto" and not args.device.startswith(("cpu", "cuda")):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    r = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.layout,
        args.split,
        args.out,
        args.batch_size,
        args.device,
        args.strict,
        args.save_windows,
        args.withhold,
    )
    top5 = f"  top-5 {r['top5']:.4f}" if r["top5"] is not None else ""
    print(
        f"{r['preset']} / {r['variant']} on {r['split']} ({r['count']} clips"
        + (f"; {WITHHOLD[args.withhold]}" if args.withhold != "none" else "")
        + f"): top-1 {r['top1']:.4f}{top5}  macro {r['macro']:.4f}"
    )
    for name, acc in sorted(r["per_class"].items(), key=lambda kv: kv[1]):
        print(f"  {acc:6.3f}  {name}")
    if r["without_clips"]:
        print(f"  no clips in this split (no accuracy): {', '.join(r['without_clips'])}")
    if args.save_windows:
        print(f"windows: {args.save_windows} ({r['count']} windows with labels)")
    if args.out:
        print(f"report: {Path(args.out) / 'report.json'}, confusion matrix: {Path(args.out) / 'confusion.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
