"""The training run behind ``clipmg-train``: the ``Trainer`` (loop, checkpoints, exact resume,
validation), the frozen-output cache, and the checks of a ``--pretrained`` weights file.

``clipmg.train.trainer`` is the command; it imports this module (and PyTorch) only once the flags
have been parsed, so a bad flag is refused at once. Its names are also reachable from there.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.distributed as dist_
from safetensors import SafetensorError, safe_open
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from clipmg.model import CLIPMG, create_model
from clipmg.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    user_message,
)
from clipmg.model.config import ConfigError
from clipmg.model.errors import ClipmgError, one_line
from clipmg.model.files import atomic_write, atomic_write_text
from clipmg.model.tower import load_clip_weights

from .config import TrainConfig
from .finetune import apply_freeze, init_from_checkpoint
from .loop import (
    DistInfo,
    EpochSampler,
    amp_dtype,
    class_prior,
    classification_metrics,
    loss_fn,
    lr_factor,
    resolve_device,
)

log = logging.getLogger("clipmg.train")


class TrainingDiverged(ClipmgError):
    """The loss became NaN or infinite: the run stopped before the optimiser step, nothing was saved."""


def check_weights_file(path: Path) -> None:
    """Refuse, with one sentence, a ``--pretrained`` file that cannot hold CLIP weights: a folder, an
    unreadable file, a truncated or corrupt safetensors file, or a file that is neither safetensors
    nor a PyTorch ``torch.save`` file (a zip archive or a pickle)."""
    if not path.is_file():
        raise ConfigError(
            f"--pretrained {path} is not a file; give a .safetensors file, a torch.save state dict or an open_clip tag"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ConfigError(f"--pretrained {path} cannot be read: {e.strerror or e}") from e
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except SafetensorError as e:
            raise ConfigError(
                f"--pretrained {path} is not a readable safetensors file ({one_line(e, 200)}); "
                f"it is truncated or corrupt: copy it again"
            ) from e
    elif not (
        head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
    ):
        raise ConfigError(
            f"--pretrained {path} is not a safetensors or PyTorch checkpoint file; give a "
            f".safetensors file or a state dict saved with torch.save"
        )


def load_pretrained(model: CLIPMG, spec: str) -> None:
    """Load the CLIP visual weights ``--pretrained`` names (a local file or an open_clip tag) into
    ``model``; what is wrong with them (unreadable, pickled code, another tower's shapes, an unknown
    tag) is the user's to fix and is said in one sentence."""
    path = Path(spec).expanduser()
    if path.exists():
        check_weights_file(path)
    try:
        load_clip_weights(model.visual, model.cfg.vision, spec)
    except (ValueError, RuntimeError) as e:  # the tower's sentences, torch's size mismatches
        raise ConfigError(f"--pretrained: {user_message(e)}") from e


class Indexed(torch.utils.data.Dataset):
    """Wraps a dataset so every item also carries its index (for the frozen-output cache) and is
    drawn with torch's RNG seeded by ``(seed, epoch, index)`` inside a forked RNG: augmentation is
    reproducible per item and leaves the global RNG (dropout) untouched, so resume is exact and
    DataLoader workers need no special seeding."""

    def __init__(self, ds: Any, seed: int) -> None:
        self.ds, self.seed, self.epoch = ds, seed, 0

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            item = self.ds[int(i)]
        return {**item, "index": int(i)}


def collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack arrays/tensors, make int tensors of numbers, keep lists of strings."""
    return torch.utils.data.default_collate(items)


class FrozenCache:
    """Outputs of the frozen ViT blocks per clip, ``(T, N, D)`` each, kept across epochs."""

    def __init__(self) -> None:
        self.store: Dict[int, torch.Tensor] = {}
        self.hits = self.misses = 0

    def tokens(self, model: CLIPMG, batch: Dict[str, Any], device: torch.device) -> torch.Tensor:
        idx: List[int] = batch["index"].tolist()
        missing = [j for j, i in enumerate(idx) if i not in self.store]
        self.hits += len(idx) - len(missing)
        self.misses += len(missing)
        if missing:
            imgs = batch["images"][missing].to(device)  # (m, T, 3, S, S)
            h = model.encode_frozen(imgs.flatten(0, 1))
            h = h.reshape(len(missing), imgs.shape[1], *h.shape[1:])
            for j, hj in zip(missing, h):
                self.store[idx[j]] = hj
        return torch.stack([self.store[i] for i in idx])


def evaluate_logits(
    model: CLIPMG, loader: DataLoader, device: torch.device, amp: torch.dtype | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, C)`` and labels ``(N,)`` of a whole loader, in eval mode."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc="validate", leave=False, disable=not progress):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = model(batch["images"].to(device), batch["keypoints"].to(device))
            logits.append(out.float().cpu().numpy())
            labels.append(batch["label"].numpy())
    model.train()
    if not logits:
        return np.zeros((0, model.cfg.num_classes), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(logits), np.concatenate(labels)


EMA_BN_BATCHES = 8  # training batches that the weight average's BatchNorm statistics are measured on


def refresh_batchnorm(
    model: CLIPMG,
    loader: DataLoader,
    device: torch.device,
    amp: torch.dtype | None = None,
    batches: int = EMA_BN_BATCHES,
) -> None:
    """Measure the BatchNorm running statistics of ``model`` afresh on the first ``batches`` batches
    of ``loader``, as ``torch.optim.swa_utils.update_bn`` does for an averaged model (cumulative
    averages, every other layer in eval mode so dropout draws nothing, the global RNG untouched).

    A moving average of the statistics does not fit a moving average of the weights: with weight
    decay the convolutions before each BatchNorm shrink all run long, so the averaged running
    variance (made mostly of older, larger variances) is far too large for the averaged weights
    (measured: 18 times too large in the skeleton encoder, validation 37.5 % where the weights
    themselves scored 85 %; docs/training.md)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                model(batch["images"].to(device), batch["keypoints"].to(device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.train(was_training)


def _rng_state() -> Dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2] if random.getstate()[2] is not None else -1,
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: Dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    pos = None if s["python_pos"] == -1 else s["python_pos"]
    random.setstate((3, tuple(s["python"]), pos))
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class Trainer:
    def __init__(self, cfg: TrainConfig, data: Any, dist: DistInfo | None = None) -> None:
        self.cfg, self.data = cfg, data
        self.dist = dist or DistInfo()
        self.device = resolve_device(cfg.device, self.dist)
        self.amp = amp_dtype(cfg.amp, self.device)
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        n_cls = len(data.class_names)
        # the model takes the dataset's preprocessing (the run's --crop / --person-scale, see
        # build_data), which the checkpoint carries on to eval, the engines and live
        self.model = create_model(
            cfg.preset, num_classes=n_cls, variant=cfg.variant, preprocess=data.train.cfg.preprocess
        )
        if cfg.pretrained:
            load_pretrained(self.model, cfg.pretrained)
        if cfg.init and not cfg.resume:  # a resumed run takes its weights from `last`
            log.info("%s", init_from_checkpoint(self.model, cfg.init, data.class_names))
        trained = apply_freeze(self.model, cfg.freeze)
        if cfg.freeze != "preset":
            log.info("--freeze %s: %d parameters are trained", cfg.freeze, trained)
        if cfg.cache_frozen and self.model.stem_trainable:
            raise ConfigError(
                f"--cache-frozen has nothing to cache: {cfg.preset} trains the whole ViT tower, "
                "stem included (trainable_blocks equals layers)"
            )
        self.model.to(self.device).train()
        groups = self.model.trainable_parameters()
        self.opt = torch.optim.AdamW(
            [
                {"params": groups["new"], "lr": cfg.lr_new, "base_lr": cfg.lr_new},
                {"params": groups["vit"], "lr": cfg.lr_vit, "base_lr": cfg.lr_vit},
            ],
            weight_decay=cfg.weight_decay,
        )
        self.train_ds = Indexed(data.train, cfg.seed)
        self.sampler = EpochSampler(data.train_labels, cfg.seed, self.dist, cfg.class_balance == "sampler")
        self.loader = DataLoader(
            self.train_ds,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=cfg.workers,
            collate_fn=collate,
            drop_last=False,
            persistent_workers=False,
            # its own generator: making an iterator must not consume the global RNG
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.val_loader = DataLoader(
            Indexed(data.val, cfg.seed),
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.steps_per_epoch = max(1, -(-len(self.sampler) // cfg.batch_size))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = int(cfg.warmup_epochs * self.steps_per_epoch)
        self.prior = class_prior(data.train_labels, n_cls).to(self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.cache = FrozenCache() if cfg.cache_frozen else None
        self.rgb_blanked = 0  # clips whose frames --rgb-dropout blanked (counted for the log and the tests)
        # --ema: PyTorch's own weight averaging of the parameters; the average's BatchNorm statistics are
        # measured for it on fixed training windows (refresh_batchnorm) before it is validated or saved
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=False)
            if cfg.ema > 0
            else None
        )
        self.ema_bn_step = -1  # the step at which the average's BatchNorm statistics were last measured
        # the first training windows of epoch 0's draw, the same at every refresh and on every process
        self.bn_loader = (
            DataLoader(
                Indexed(data.train, cfg.seed),
                batch_size=cfg.batch_size,
                shuffle=False,
                num_workers=0,
                collate_fn=collate,
            )
            if self.ema is not None
            else None
        )
        self.step, self.epoch, self.epoch_pos = 0, 0, 0
        self.best = -1.0
        self.has_val = len(data.val) > 0  # without validation clips: no accuracy, no `best`
        self.saved_step: int | None = None  # step of the last `last` checkpoint on disk (the last good one)
        self.history: List[Dict[str, Any]] = []
        self.ddp = None
        if self.dist.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    # ---------------------------------------------------------------- checkpoints
    def _meta_extra(self) -> Dict[str, Any]:
        return {"train": self.cfg.to_dict(), "split": self.data.split, "data_summary": self.data.summary}

    @property
    def evaluated(self) -> CLIPMG:
        """The weights that are validated and saved: the moving average with --ema (its BatchNorm
        statistics measured for it at this step), else the model."""
        if self.ema is None:
            return self.model
        if self.ema_bn_step != self.step:
            assert self.bn_loader is not None  # made with self.ema
            refresh_batchnorm(self.ema.module, self.bn_loader, self.device, self.amp)  # type: ignore[arg-type]
            self.ema_bn_step = self.step
        return self.ema.module  # type: ignore[return-value]

    def save(self, which: str, metrics: Dict[str, Any] | None = None) -> None:
        if not self.dist.main:
            return
        save_checkpoint(
            self.out / f"{which}.safetensors",
            self.evaluated,
            self.data.class_names,
            self.data.duration_stats,
            metrics or {},
            self._meta_extra(),
        )
        if which == "last":
            # The state carries its own copy of the weights: the two files are replaced one after the
            # other, so a kill between the writes leaves last.safetensors one save ahead of this file,
            # and resuming from this file alone is still exact (it just redoes that save's steps).
            state = {
                "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "step": self.step,
                "epoch": self.epoch,
                "epoch_pos": self.epoch_pos,
                "best": self.best,
                "rng": _rng_state(),
                "history": json.dumps(self.history),
            }
            if self.ema is not None:
                state["ema"] = {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}
            atomic_write(self.out / "last.state.pt", lambda tmp: torch.save(state, tmp))
            self.saved_step = self.step

    def resume(self) -> None:
        path = self.out / "last.safetensors"
        if not path.is_file() or not (self.out / "last.state.pt").is_file():
            raise CheckpointError(
                f"--resume: no checkpoint to resume in {self.out} (expected last.safetensors "
                f"and last.state.pt); start without --resume"
            )
        model, meta = load_checkpoint(path, config=self.model.cfg, class_names=self.data.class_names)
        self.model.load_state_dict(model.state_dict())
        try:  # weights_only: tensors and plain containers only; pickled code is refused
            state = torch.load(self.out / "last.state.pt", map_location=self.device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError for damaged files
            raise CheckpointError(
                f"cannot resume from {self.out / 'last.state.pt'}: {str(e).splitlines()[0]}; "
                f"the file is damaged or not a clipmg training state. Delete it to start over, "
                f"or restore it from a backup"
            ) from e
        if "model" in state:  # the weights that belong to this optimiser state (see save)
            self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(
                    f"--resume --ema: {self.out / 'last.state.pt'} has no weight average (the run "
                    f"was started without --ema); resume without --ema or start over"
                )
            self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.epoch_pos = state["step"], state["epoch"], state["epoch_pos"]
        self.saved_step = self.step
        self.best = state["best"]
        self.history = json.loads(state["history"])
        _set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    # ---------------------------------------------------------------- loop
    def _set_lr(self) -> float:
        f = lr_factor(self.step, self.total_steps, self.warmup_steps)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * f
        return f

    def _blank_rgb(self, images: torch.Tensor) -> torch.Tensor:
        """``--rgb-dropout``: each clip's frames ``(B, T, 3, S, S)`` are the normalised mean (0) with
        probability p. The draw uses PyTorch's generator, whose state checkpoints keep (resumes are
        exact), and only when p > 0, so runs without it draw exactly what they drew before."""
        p = self.cfg.rgb_dropout
        if p <= 0:
            return images
        self.rgb_blanked += int((keep := torch.rand(images.shape[0]) >= p).logical_not().sum())
        return images * keep.to(images.device, images.dtype).reshape(-1, 1, 1, 1, 1)

    def train_step(self, batch: Dict[str, Any]) -> float:
        model = self.ddp or self.model
        kp = batch["keypoints"].to(self.device, non_blocking=True)
        target = batch["label"].to(self.device)
        self._set_lr()
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if self.cache is not None:
                logits = model(None, kp, frozen_tokens=self.cache.tokens(self.model, batch, self.device))
            else:
                logits = model(self._blank_rgb(batch["images"].to(self.device, non_blocking=True)), kp)
            loss = loss_fn(
                logits, target, self.prior, self.cfg.class_balance, self.cfg.label_smoothing, self.cfg.logit_adjust
            )
        self._check_finite("loss", loss)  # before the step: the weights stay those of the last finite loss
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        params = [p for g in self.opt.param_groups for p in g["params"]]
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if self.amp != torch.float16:  # with fp16 the GradScaler skips steps with non-finite gradients by design
            self._check_finite("gradient norm", norm)  # identical on every process (all-reduced gradients)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return float(loss.detach())

    def _check_finite(self, what: str, value: torch.Tensor) -> None:
        """Stop the run (``TrainingDiverged``) when ``value`` (this step's loss or gradient norm) is NaN
        or infinite on any process, before the optimiser step; every process decides the same, so
        none waits for the others."""
        ok = torch.isfinite(value.detach()).float()
        if self.ddp is not None and what == "loss":
            dist_.all_reduce(ok, op=dist_.ReduceOp.MIN)
        if bool(ok.item()):
            return
        kept = (
            f"{self.out / 'last.safetensors'} (step {self.saved_step}) is the last good checkpoint"
            if self.saved_step is not None
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1} (epoch {self.epoch + 1}): the {what} "
            f"became {float(value.detach())}; stopped without saving, so {kept}; lower --lr-new "
            f"or --lr-vit (or raise --warmup-epochs) and train again"
        )

    def validate(self) -> Dict[str, Any]:
        logits, labels = evaluate_logits(self.evaluated, self.val_loader, self.device, self.amp)
        return classification_metrics(logits, labels, list(self.data.class_names))

    def _prepare_out(self) -> None:
        """Make the run directory ``--out``, or refuse in one sentence a path that cannot be one."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} exists and is not a folder; choose another run directory")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {self.out}: cannot create the run directory ({e.strerror or e})") from e

    def _write_config(self) -> None:
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg = {
                "train": self.cfg.to_dict(),
                "model": self.model.cfg.to_dict(),
                "class_names": list(self.data.class_names),
                "split": self.data.split,
                "duration_stats": self.data.duration_stats,
                "data_summary": self.data.summary,
            }
            atomic_write_text(self.out / "config.json", json.dumps(cfg, indent=2))

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        if self.dist.main:
            self._prepare_out()
            if not self.has_val:
                log.warning(
                    "no validation split: %s, so no accuracy is reported and only last.safetensors is "
                    "written (no best)",
                    "--val-fraction is 0" if cfg.val_fraction == 0 else "the held-out videos have no usable clips",
                )
        if self.dist.main and self.out.is_dir():  # what a kill in the middle of a write left behind
            for p in remove_stale_temporaries(self.out, ("best.safetensors", "last.safetensors", "last.state.pt")):
                log.info("removed %s, left by an interrupted checkpoint write", p.name)
        if cfg.resume:
            self.resume()
            if self.dist.main:
                self._trim_logs()
        self._write_config()
        t0 = time.monotonic()
        steps_this_run = 0
        stop = False
        # line-buffered: a killed run keeps the rows of the steps it completed
        step_log = open(self.out / "log.csv", "a", newline="", buffering=1) if self.dist.main else None
        writer = csv.writer(step_log) if step_log else None
        if writer and step_log is not None and step_log.tell() == 0:
            writer.writerow(["step", "epoch", "loss", "lr_new", "elapsed_s"])
        tb = None
        if cfg.tensorboard and self.dist.main:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(self.out / "tb"))
        try:
            while self.epoch < cfg.epochs and not stop:
                self.train_ds.epoch = self.epoch
                self.sampler.set_epoch(self.epoch, self.epoch_pos * cfg.batch_size)
                losses: List[float] = []
                bar = tqdm(
                    self.loader,
                    desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                    leave=False,
                    disable=not self.dist.main,
                    initial=self.epoch_pos,
                    total=self.steps_per_epoch,
                )
                try:
                    for batch in bar:
                        loss = self.train_step(batch)
                        losses.append(loss)
                        self.epoch_pos += 1
                        steps_this_run += 1
                        bar.set_postfix(loss=f"{loss:.3f}")
                        if writer:
                            writer.writerow(
                                [
                                    self.step,
                                    self.epoch,
                                    f"{loss:.6f}",
                                    f"{self.opt.param_groups[0]['lr']:.3e}",
                                    f"{time.monotonic() - t0:.1f}",
                                ]
                            )
                        if tb:
                            tb.add_scalar("train/loss", loss, self.step)
                        out_of_time = cfg.time_limit_min > 0 and time.monotonic() - t0 > 60 * cfg.time_limit_min
                        if (cfg.max_steps and steps_this_run >= cfg.max_steps) or out_of_time:
                            stop = True
                            break
                        if cfg.save_every and self.step % cfg.save_every == 0:
                            self.save("last")
                finally:  # also when a step raises: the error line must not share the bar's line
                    bar.close()
                if stop and self.epoch_pos < self.steps_per_epoch:
                    self.save("last")  # mid-epoch: resume continues from this exact batch
                    if step_log:
                        step_log.flush()
                    log.info("stopped at step %d (epoch %d, batch %d)", self.step, self.epoch, self.epoch_pos)
                    break
                self._end_epoch(losses, t0, tb)
                if stop:
                    break
        finally:
            if step_log:
                step_log.close()
            if tb:
                tb.close()
        if self.cache is not None and self.dist.main:
            log.info("frozen-output cache: %d hits, %d misses", self.cache.hits, self.cache.misses)
        return {
            "best_top1": self.best,
            "has_val": self.has_val,
            "history": self.history,
            "steps": self.step,
            "elapsed_s": time.monotonic() - t0,
        }

    def _trim_logs(self) -> None:
        """Drop the rows a killed run logged after the state it is resumed from (those steps and
        epochs are redone now), so log.csv keeps one row per step and metrics.csv one per epoch."""
        for name, last in (("log.csv", self.step), ("metrics.csv", self.epoch)):
            path = self.out / name
            if not path.is_file():
                continue
            rows = path.read_text().splitlines(keepends=True)
            keep = rows[:1] + [r for r in rows[1:] if r.split(",", 1)[0].isdigit() and int(r.split(",", 1)[0]) <= last]
            if len(keep) != len(rows):
                atomic_write(path, lambda tmp, text="".join(keep): Path(tmp).write_text(text))

    def _end_epoch(self, losses: List[float], t0: float, tb: Any) -> Dict[str, Any]:
        if self.ddp is not None:  # identical BatchNorm statistics on every rank
            for b in self.model.buffers():
                dist_.broadcast(b, 0)
            if self.ema is not None:
                for b in self.ema.buffers():
                    dist_.broadcast(b, 0)
        metrics: Dict[str, Any] = {}
        m: Dict[str, Any] = {}
        if self.dist.main:
            metrics = {"epoch": self.epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan")}
            text = f"epoch {metrics['epoch']}: loss {metrics['train_loss']:.4f}"
            if self.cfg.rgb_dropout:
                text += f"  ({self.rgb_blanked} clips' frames blanked so far)"
            if self.has_val:
                m = self.validate()
                metrics.update({"val_top1": m["top1"], "val_top5": m["top5"], "val_macro": m["macro"]})
                text += (
                    f"  val top-1 {m['top1']:.3f}"
                    + (f"  top-5 {m['top5']:.3f}" if m["top5"] is not None else "")
                    + f"  macro {m['macro']:.3f}"
                )
                if m["without_clips"]:
                    text += f" (no val clips of {len(m['without_clips'])} classes: {', '.join(m['without_clips'][:5])}"
                    text += ", ...)" if len(m["without_clips"]) > 5 else ")"
            metrics["elapsed_s"] = round(time.monotonic() - t0, 1)
            self.history.append(metrics)
            log.info("%s", text)
            new_file = not (self.out / "metrics.csv").exists()
            with open(self.out / "metrics.csv", "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(metrics))
                if new_file:
                    w.writeheader()
                w.writerow(metrics)
            if tb:
                for k in ("val_top1", "val_top5", "val_macro"):
                    if metrics.get(k) is not None:
                        tb.add_scalar(f"val/{k[4:]}", metrics[k], self.step)
        self.epoch += 1
        self.epoch_pos = 0
        if self.dist.main:
            if self.has_val and metrics["val_top1"] > self.best:
                self.best = metrics["val_top1"]
                self.save("best", {**metrics, "per_class": m["per_class"], "without_clips": m["without_clips"]})
            self.save("last", metrics)
        return metrics
