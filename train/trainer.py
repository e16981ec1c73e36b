"""``clipmg-train``: train CLIP-MG on one CPU/GPU or many (``torchrun``), with exact resume.

Run directory ``--out``: ``config.json`` (training + model + preprocessing settings),
``log.csv`` (every step), ``metrics.csv`` (every epoch), ``best.safetensors`` and
``last.safetensors`` (checkpoints, written atomically), ``last.state.pt`` (optimiser, schedule,
RNG and sampler position for exact resume; plain tensors, loaded with ``weights_only=True``).

Errors the user can fix (a bad flag, data or file) end the command with one sentence and exit
status 2 (``clipmg.model.errors``). A loss that becomes NaN or infinite stops the run with one
sentence before the optimiser step, so nothing non-finite is written: the checkpoints on disk are
the last good ones. With no validation clips (``--val-fraction 0``, or a split that leaves none) no
accuracy is reported and only ``last`` is written.
"""

from __future__ import annotations

from typing import Any, Dict

from clipmg.model import load_config
from clipmg.model.config import ConfigError
from clipmg.model.errors import run_command
from clipmg.model.logs import TRAINING

from .config import TrainConfig, parse

# the training run's names, loaded with PyTorch on first use (PEP 562): `clipmg-train --lr-new nan`
# is refused before PyTorch is imported
_RUN_NAMES = (
    "Trainer",
    "TrainingDiverged",
    "Indexed",
    "FrozenCache",
    "collate",
    "evaluate_logits",
    "check_weights_file",
    "load_pretrained",
)


def __getattr__(name: str) -> Any:
    if name in _RUN_NAMES:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(cfg: TrainConfig, dist: Any = None) -> Dict[str, Any]:
    """Build the data and the model from ``cfg`` and train (``dist``: a ``loop.DistInfo``, default one
    process); returns a summary dict."""
    from .data import build_data
    from .run import Trainer

    model_cfg = load_config(cfg.preset)
    if cfg.init and not cfg.resume:  # refused before the data is read when it cannot fit this run
        from .finetune import check_init

        check_init(cfg.init, model_cfg.replace(variant=cfg.variant, preprocess=cfg.preprocess(model_cfg.preprocess)))
    data = build_data(cfg, model_cfg)
    return Trainer(cfg, data, dist).run()


def main(argv: list[str] | None = None) -> int:
    """``clipmg-train``: exit 0 when done, 2 with one sentence for what the user can fix, 1 for a bug."""
    return run_command("clipmg-train", lambda: _main(argv), style=TRAINING)


def _main(argv: list[str] | None) -> int:
    cfg = parse(argv, "Train CLIP-MG (single process, or many under torchrun).", prog="clipmg-train")
    if not cfg.data:
        raise ConfigError("--data is required (a dataset root; make one with clipmg-synth)")
    import torch  # heavy: only once the flags are known to be good
    import torch.distributed as dist_

    from .loop import DistInfo

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = DistInfo.from_env()
    if d.world > 1:
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(d.local_rank)
        dist_.init_process_group(backend=backend)
    try:
        result = train(cfg, d)
    finally:
        if d.world > 1 and dist_.is_initialized():
            dist_.destroy_process_group()
    if d.main:
        if not result["has_val"]:
            best = "no validation split, so no accuracy and no best checkpoint"
        elif result["best_top1"] >= 0:
            best = f"best val top-1 {result['best_top1']:.4f}"
        else:
            best = "no validation pass yet (stopped inside the first epoch)"
        print(
            f"done: {best} after {result['steps']} steps "
            f"in {result['elapsed_s'] / 60:.1f} min; checkpoints in {cfg.out}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
