"""Training: loss goes down, checkpoints round-trip and refuse mismatches, exact resume, torchrun."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from live_harness import EvilPickle

from clipmg.model import create_model, load_config
from clipmg.model.checkpoint import CheckpointError, add_digest, load_checkpoint, read_metadata, save_checkpoint
from clipmg.model.config import ConfigError
from clipmg.train.config import TrainConfig, parse
from clipmg.train.data import build_data
from clipmg.train.run import EMA_BN_BATCHES
from clipmg.train.synth import SynthConfig, write_dataset
from clipmg.train.trainer import Trainer, collate
from clipmg.train.trainer import main as train_main

CLASSES = ("touch chin", "fold arm", "rub eyes", "no gesture")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(
        root,
        seed=3,
        videos=5,
        clips_per_video=4,
        config=SynthConfig(classes=CLASSES, clip_frames=(24, 32), gap_frames=(8, 12)),
    )
    return root


def _cfg(root, out, **kw) -> TrainConfig:
    base = dict(data=str(root), out=str(out), epochs=2, batch_size=4, device="cpu", lr_new=1e-3, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _losses(out: Path) -> list[float]:
    with open(out / "log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_a_few_steps_reduce_the_loss(synth_root, tmp_path):
    cfg = _cfg(synth_root, tmp_path, augment=False, lr_new=2e-3, warmup_epochs=0, epochs=20)
    data = build_data(cfg, load_config(cfg.preset))
    tr = Trainer(cfg, data)
    assert tr.ema is None and tr.bn_loader is None  # the average's BatchNorm batches only with --ema
    batch = collate([data.train[i] for i in range(8)])

    def loss() -> float:
        tr.model.eval()
        with torch.no_grad():
            out = tr.model(batch["images"], batch["keypoints"])
        tr.model.train()
        return float(torch.nn.functional.cross_entropy(out, batch["label"]))

    before = loss()
    for _ in range(12):
        tr.train_step({**batch, "index": torch.arange(8)})
    after = loss()
    assert after < 0.7 * before, (before, after)


def test_train_writes_checkpoints_that_round_trip(synth_root, tmp_path):
    out = tmp_path / "run"
    assert (
        train_main(
            ["--data", str(synth_root), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
        )
        == 0
    )
    for f in ("config.json", "log.csv", "metrics.csv", "best.safetensors", "last.safetensors", "last.state.pt"):
        assert (out / f).is_file(), f
    meta = read_metadata(out / "best.safetensors")
    assert meta["class_names"] == list(CLASSES)
    assert meta["config"]["num_classes"] == 4 and meta["config"]["preprocess"]["crop"] == "center"
    assert meta["duration_stats"]["min"] >= 24 and meta["train"]["seed"] == 0
    assert meta["split"]["val_videos"] and "val_top1" in meta["metrics"]
    model, _ = load_checkpoint(out / "best.safetensors")
    ref = create_model("clipmg-tiny", num_classes=4).eval()
    model.eval()
    x = torch.randn(1, 8, 3, 96, 96)
    kp = torch.rand(1, 32, 22, 3) * 96
    # the same weights give the same logits after a save/load round trip
    p = tmp_path / "again.safetensors"
    save_checkpoint(p, model, CLASSES)
    again, _ = load_checkpoint(p)
    with torch.no_grad():
        assert torch.equal(model(x, kp), again.eval()(x, kp))
        assert not torch.equal(model(x, kp), ref(x, kp))


def test_person_crop_is_trained_recorded_and_used_by_eval(synth_root, tmp_path):
    """``--crop person`` reaches the model: the dataset and the checkpoint agree, and evaluation
    rebuilds the validation windows with the same policy (a run once stopped here with an internal
    error because the model kept its preset's centre crop)."""
    from clipmg.train.evaluate import main as eval_main

    out = tmp_path / "person"
    assert (
        train_main(
            [
                "--data",
                str(synth_root),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--crop",
                "person",
                "--person-scale",
                "1.1",
            ]
        )
        == 0
    )
    meta = read_metadata(out / "best.safetensors")
    assert meta["config"]["preprocess"]["crop"] == "person"
    assert meta["config"]["preprocess"]["person_scale"] == 1.1
    model, _ = load_checkpoint(out / "best.safetensors")
    assert (model.cfg.preprocess.crop, model.cfg.preprocess.person_scale) == ("person", 1.1)
    windows = tmp_path / "val.npz"
    assert eval_main([str(out / "best.safetensors"), "--data", str(synth_root), "--save-windows", str(windows)]) == 0
    # eval's first window is the person-crop dataset's, not the centre-crop one's
    first = {
        name: build_data(_cfg(synth_root, tmp_path / name, **kw), load_config("clipmg-tiny")).val[0]
        for name, kw in (
            ("person", dict(crop="person", person_scale=1.1)),
            ("person-1.25", dict(crop="person")),
            ("center", dict(crop="center")),
        )
    }
    with np.load(windows) as z:
        assert np.allclose(z["images"][0], first["person"]["images"].numpy(), atol=1e-6)
        for other in ("person-1.25", "center"):
            assert not np.allclose(z["images"][0], first[other]["images"].numpy(), atol=1e-2), other
    with pytest.raises(ValueError, match="--person-scale must lie in"):
        _cfg(synth_root, tmp_path, person_scale=0.2)


def test_checkpoint_mismatch_and_damage_are_refused(tmp_path):
    model = create_model("clipmg-tiny", num_classes=4)
    p = save_checkpoint(tmp_path / "m.safetensors", model, CLASSES)
    with pytest.raises(CheckpointError, match="has 4 classes but 32 were requested"):
        load_checkpoint(p, num_classes=32)
    with pytest.raises(CheckpointError, match="variant is 'full' in the checkpoint but 'no_pose' was requested"):
        load_checkpoint(p, variant="no_pose")
    with pytest.raises(CheckpointError, match="preset is 'clipmg-tiny' in the checkpoint but 'clipmg-vitb32'"):
        load_checkpoint(p, preset="clipmg-vitb32")
    other = load_config("clipmg-tiny").replace(num_classes=4)
    other = other.replace(preprocess=other.preprocess.__class__(crop="person"))
    with pytest.raises(CheckpointError, match="preprocess.crop is 'center' in the checkpoint but 'person'"):
        load_checkpoint(p, config=other)
    with pytest.raises(CheckpointError, match="class names differ"):
        load_checkpoint(p, class_names=["a", "b", "c", "d"])
    data = p.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="class names given for a model with 4 classes"):
        save_checkpoint(tmp_path / "x.safetensors", model, ["a"])


def _flip_weight_bytes(path: Path) -> None:
    """Invert 16 bytes in the middle of a checkpoint's tensor data: same size, same header."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    mid = start + (len(data) - start) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    path.write_bytes(bytes(data))


def test_weight_digest_catches_same_size_corruption_and_old_checkpoints_warn(tmp_path, caplog):
    import logging

    from safetensors.torch import load_file, save

    model = create_model("clipmg-tiny", num_classes=4)
    p = save_checkpoint(tmp_path / "m.safetensors", model, CLASSES)
    assert len(read_metadata(p)["tensor_sha256"]) == 64
    size = p.stat().st_size
    _flip_weight_bytes(p)
    assert p.stat().st_size == size
    with pytest.raises(CheckpointError, match="weights do not match their digest: the file is corrupt"):
        load_checkpoint(p)
    # a checkpoint written before digests existed: the same tensors and metadata, no digest
    meta = read_metadata(save_checkpoint(tmp_path / "m.safetensors", model, CLASSES))
    del meta["tensor_sha256"]
    old = tmp_path / "old.safetensors"
    old.write_bytes(save(load_file(str(tmp_path / "m.safetensors")), metadata={"clipmg": json.dumps(meta)}))
    with caplog.at_level(logging.WARNING, logger="clipmg.model"):
        loaded, _ = load_checkpoint(old)
        load_checkpoint(old)
    warnings = [r for r in caplog.records if "has no weight digest" in r.getMessage()]
    assert len(warnings) == 1 and str(old) in warnings[0].getMessage()  # once a file
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # add_digest gives it one without touching the tensor bytes
    before = old.read_bytes()
    add_digest(old)
    after = old.read_bytes()
    body = lambda b: b[8 + int.from_bytes(b[:8], "little") :]  # noqa: E731 - the data section
    assert body(after) == body(before) and read_metadata(old)["tensor_sha256"] == read_metadata(p)["tensor_sha256"]
    load_checkpoint(old)
    _flip_weight_bytes(old)
    with pytest.raises(CheckpointError, match="do not match their digest"):
        load_checkpoint(old)


def test_non_finite_weights_are_never_saved(tmp_path):
    model = create_model("clipmg-tiny", num_classes=4)
    good = save_checkpoint(tmp_path / "m.safetensors", model, CLASSES)
    before = good.read_bytes()
    name, param = next(iter(model.named_parameters()))
    with torch.no_grad():
        param[0] = float("nan")
    with pytest.raises(CheckpointError, match=f"refusing to write .*NaN or infinity \\(first: {re.escape(name)}"):
        save_checkpoint(good, model, CLASSES)
    assert good.read_bytes() == before  # the good checkpoint stays
    with torch.no_grad():
        param[0] = float("inf")
    with pytest.raises(CheckpointError, match="refusing to write"):
        save_checkpoint(tmp_path / "new.safetensors", model, CLASSES)
    assert not (tmp_path / "new.safetensors").exists() and not list(tmp_path.glob(".new.safetensors.*"))


def test_a_diverging_run_stops_in_one_line_and_keeps_the_last_good_checkpoint(synth_root, tmp_path, capsys):
    """A learning rate of 10 (the largest allowed) makes the training explode within a few steps; the
    run stops at the first non-finite loss or gradient norm, before that step's optimiser step, with
    `last` from the step before."""
    out = tmp_path / "run"
    rc = train_main(
        [
            "--data",
            str(synth_root),
            "--out",
            str(out),
            "--epochs",
            "10",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--lr-new",
            "10",
            "--lr-vit",
            "10",
            "--warmup-epochs",
            "0",
            "--grad-clip",
            "0",
            "--weight-decay",
            "0",
            "--save-every",
            "1",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in "\n".join(err)
    m = re.fullmatch(
        r"clipmg-train: training diverged at step (\d+) \(epoch \d+\): the (loss|gradient norm) "
        r"became (nan|inf|-inf); stopped without saving, so (\S+) \(step (\d+)\) is the last good "
        r"checkpoint; lower .*",
        err[-1],
    )
    assert m, err[-1]
    bad_step, kept, kept_step = int(m[1]), Path(m[4]), int(m[5])
    assert kept == out / "last.safetensors" and kept_step == bad_step - 1 >= 1
    logged = _losses(out)
    assert len(logged) == kept_step and all(np.isfinite(logged))  # no row for the diverged step
    model, _ = load_checkpoint(kept)  # digest checked
    assert all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point())
    state = torch.load(out / "last.state.pt", weights_only=True)
    assert state["step"] == kept_step and not list(out.glob(".*.safetensors.*"))


def test_no_validation_split_reports_no_accuracy_and_keeps_last_only(synth_root, tmp_path, capsys, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="clipmg.train")
    out = tmp_path / "run"
    assert (
        train_main(
            [
                "--data",
                str(synth_root),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--val-fraction",
                "0",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "done: no validation split, so no accuracy and no best checkpoint" in captured.out
    assert "no validation split: --val-fraction is 0" in caplog.text
    assert (out / "last.safetensors").is_file() and not (out / "best.safetensors").exists()
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and not any(k.startswith("val_") for k in rows[0])
    assert "epoch 1: loss" in caplog.text and "val top-1" not in caplog.text


def test_metrics_leave_out_top5_for_few_classes_and_name_classes_without_clips():
    from clipmg.train.loop import classification_metrics

    logits = np.array([[3.0, 1, 0, 0], [0, 3, 1, 0], [3, 0, 1, 0]], np.float32)
    m = classification_metrics(logits, np.array([0, 1, 1]), list(CLASSES))
    assert m["top5"] is None  # 4 classes: top-5 would be 1 by construction
    assert m["per_class"] == {"touch chin": 1.0, "fold arm": 0.5} and m["without_clips"] == ["rub eyes", "no gesture"]
    assert m["macro"] == pytest.approx(0.75) and m["top1"] == pytest.approx(2 / 3)
    six = [f"c{i}" for i in range(6)]
    logits6 = np.tile(np.arange(6, dtype=np.float32), (2, 1))  # ranks c5 first, c0 last
    m6 = classification_metrics(logits6, np.array([5, 0]), six)
    assert m6["top5"] == pytest.approx(0.5) and m6["top1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one clip"):
        classification_metrics(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), list(CLASSES))


def test_interrupted_then_resumed_equals_uninterrupted(synth_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(_cfg(synth_root, a), build_data(_cfg(synth_root, a), load_config("clipmg-tiny"))).run()
    full = _losses(a)
    # stop mid-epoch 2 (4 steps an epoch), then resume in a fresh Trainer
    cb = _cfg(synth_root, b, max_steps=6)
    Trainer(cb, build_data(cb, load_config("clipmg-tiny"))).run()
    assert len(_losses(b)) == 6
    cr = _cfg(synth_root, b, resume=True)
    Trainer(cr, build_data(cr, load_config("clipmg-tiny"))).run()
    resumed = _losses(b)
    assert len(resumed) == len(full) == 8
    np.testing.assert_allclose(resumed, full, rtol=0, atol=1e-5)
    wa, _ = load_checkpoint(a / "last.safetensors")
    wb, _ = load_checkpoint(b / "last.safetensors")
    for (k, va), vb in zip(wa.state_dict().items(), wb.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_ema_weights_are_validated_saved_and_resumed_exactly(synth_root, tmp_path):
    """--ema: the checkpoints hold the weight average (not the last weights), validation scores it,
    and an interrupted run resumes with the same average as an uninterrupted one."""
    a, b = tmp_path / "a", tmp_path / "b"
    ca = _cfg(synth_root, a, ema=0.8)
    tr = Trainer(ca, build_data(ca, load_config("clipmg-tiny")))
    tr.run()
    saved, _ = load_checkpoint(a / "last.safetensors")
    avg = dict(tr.ema.module.state_dict())
    raw = dict(tr.model.state_dict())
    moved = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], avg[k])]
    assert moved, "the average should differ from the last weights"
    for k, v in saved.state_dict().items():
        assert torch.equal(v, avg[k]), k
    # validation scores the average, whose logits are not the last weights'
    from clipmg.train.trainer import evaluate_logits

    assert tr.evaluated is tr.ema.module
    l_avg, _ = evaluate_logits(saved, tr.val_loader, torch.device("cpu"))
    l_raw, _ = evaluate_logits(tr.model, tr.val_loader, torch.device("cpu"))
    assert not np.allclose(l_raw, l_avg, atol=1e-4)
    # the average's BatchNorm statistics are those of its own activations on the training windows, not
    # an average of the live model's (which do not fit averaged weights once weight decay shrinks them)
    bn = tr.ema.module.skeleton.stages[1]
    seen: list = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    tr.ema.module.eval()
    with torch.no_grad():
        for i, batch in enumerate(tr.bn_loader):
            if i < EMA_BN_BATCHES:
                tr.ema.module(batch["images"], batch["keypoints"])
    hook.remove()
    x = torch.cat(seen).transpose(0, 1).flatten(1)  # (C, N*T*H*W)
    torch.testing.assert_close(bn.running_mean, x.mean(1), rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(bn.running_var, x.var(1), rtol=0.2, atol=1e-6)
    assert not torch.allclose(bn.running_mean, tr.model.skeleton.stages[1].running_mean, rtol=1e-3)
    cb = _cfg(synth_root, b, ema=0.8, max_steps=6)
    Trainer(cb, build_data(cb, load_config("clipmg-tiny"))).run()
    cr = _cfg(synth_root, b, ema=0.8, resume=True)
    Trainer(cr, build_data(cr, load_config("clipmg-tiny"))).run()
    np.testing.assert_allclose(_losses(b), _losses(a), rtol=0, atol=1e-5)
    resumed, _ = load_checkpoint(b / "last.safetensors")
    for k, v in resumed.state_dict().items():
        assert torch.allclose(v, avg[k], atol=1e-6), k
    # a state written without --ema cannot be resumed with it
    c = tmp_path / "c"
    cc = _cfg(synth_root, c, max_steps=2)
    Trainer(cc, build_data(cc, load_config("clipmg-tiny"))).run()
    ce = _cfg(synth_root, c, ema=0.8, resume=True)
    with pytest.raises(CheckpointError, match="has no weight average"):
        Trainer(ce, build_data(ce, load_config("clipmg-tiny"))).run()
    with pytest.raises(ValueError, match=r"--ema must be a finite number in \[0, 1\)"):
        _cfg(synth_root, c, ema=1.0)


def test_resume_refuses_pickled_code_and_missing_state(synth_root, tmp_path):
    cfg = _cfg(synth_root, tmp_path, resume=True)
    data = build_data(cfg, load_config("clipmg-tiny"))
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        Trainer(cfg, data).run()
    save_checkpoint(tmp_path / "last.safetensors", create_model("clipmg-tiny", num_classes=4), CLASSES)
    torch.save({"optimizer": EvilPickle(tmp_path / "pwned")}, tmp_path / "last.state.pt")
    with pytest.raises(CheckpointError, match="cannot resume"):
        Trainer(cfg, data).run()
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


def test_cached_frozen_outputs_give_the_same_training(synth_root, tmp_path):
    a = _cfg(synth_root, tmp_path / "plain", augment=False, epochs=2)
    b = _cfg(synth_root, tmp_path / "cached", augment=False, epochs=2, cache_frozen=True)
    Trainer(a, build_data(a, load_config("clipmg-tiny"))).run()
    tb = Trainer(b, build_data(b, load_config("clipmg-tiny")))
    tb.run()
    assert tb.cache.hits > 0 and tb.cache.misses == len(tb.data.train)
    np.testing.assert_allclose(_losses(tmp_path / "cached"), _losses(tmp_path / "plain"), atol=1e-4)


def test_config_file_and_overrides(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[train]\nepochs = 7\nbatch_size = 3\nvariant = "no_pose"\n')
    cfg = parse(["--config", str(f), "--epochs", "9", "--no-augment"], "x")
    assert (cfg.epochs, cfg.batch_size, cfg.variant, cfg.augment) == (9, 3, "no_pose", False)
    with pytest.raises(ValueError, match="unknown settings"):
        parse(["--config", str(tmp_path / "bad.toml")], "x") if (tmp_path / "bad.toml").write_text("lr = 1\n") else None
    with pytest.raises(ValueError, match="--cache-frozen needs --no-augment"):
        parse(["--cache-frozen"], "x")
    with pytest.raises(ValueError, match="--class-balance must be one of"):
        parse(["--class-balance", "focal"], "x")
    assert parse(["--roll-jitter", "6"], "x").roll_jitter == 6.0
    for bad in ("50", "-1", "nan"):
        with pytest.raises(ValueError, match="--roll-jitter"):
            parse(["--roll-jitter", bad], "x")
    with pytest.raises(ValueError, match="--roll-jitter is an augmentation: it needs --augment"):
        parse(["--roll-jitter", "6", "--no-augment"], "x")
    with pytest.raises(ValueError, match="--colour-jitter is an augmentation"):
        parse(["--colour-jitter", "0.3", "--no-augment"], "x")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert train_main(["--epochs", "1"]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert train_main(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


@pytest.mark.slow
def test_torchrun_two_cpu_processes_agree(synth_root, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(Path(__file__).parent / "ddp_worker.py"),
            str(synth_root),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    d0 = (tmp_path / "rank0.digest").read_text().split()
    d1 = (tmp_path / "rank1.digest").read_text().split()
    assert d0[0] == d1[0]  # identical weights (and BatchNorm statistics) on both ranks
    assert d0[1] == d1[1] and int(d0[1]) >= 2 and d0[2] == "2"
    assert (tmp_path / "best.safetensors").is_file()


def test_eval_writes_report_confusion_and_validation_windows_for_int8(synth_root, tmp_path, capsys):
    """``clipmg-eval --out --save-windows``: report.json, confusion.png and the evaluated windows as
    an .npz whose re-evaluation gives the report's accuracy; ``clipmg-export --int8 --val-samples``
    measures int8 on exactly those labelled windows."""
    import json

    from clipmg.engines.export import export_onnx
    from clipmg.train.evaluate import main as eval_main

    run = tmp_path / "run"
    assert (
        train_main(
            [
                "--data",
                str(synth_root),
                "--out",
                str(run),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--lr-new",
                "2e-3",
            ]
        )
        == 0
    )
    ckpt = run / "best.safetensors"
    assert (
        eval_main(
            [
                str(ckpt),
                "--data",
                str(synth_root),
                "--out",
                str(tmp_path / "ev"),
                "--save-windows",
                str(tmp_path / "val.npz"),
            ]
        )
        == 0
    )
    assert "windows:" in capsys.readouterr().out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
    with np.load(tmp_path / "val.npz", allow_pickle=False) as z:
        images, kp, labels = z["images"], z["keypoints"], z["labels"]
    assert images.shape == (report["count"], 8, 3, 96, 96) and kp.shape == (report["count"], 32, 22, 3)
    assert sorted(report["class_names"]) == sorted(CLASSES) and labels.dtype == np.int64
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(images), torch.from_numpy(kp)).argmax(-1).numpy()
    assert float((pred == labels).mean()) == pytest.approx(report["top1"])
    assert not list(tmp_path.glob(".val*"))  # written atomically: no temporary left
    res = export_onnx(ckpt, tmp_path / "onnx", int8=True, val_samples=tmp_path / "val.npz")
    rep = res.manifest["int8"]
    assert rep["labelled"] and rep["samples"] == report["count"] and rep["validation"] == "val.npz"
    assert rep["reference_accuracy"] == pytest.approx(report["top1"], abs=1e-6)
    assert eval_main([str(ckpt), "--data", str(synth_root), "--save-windows", str(tmp_path / "val.txt")]) == 2
    assert "must end in .npz" in capsys.readouterr().err


def test_whole_tower_training_for_towers_without_pretrained_weights(synth_root, tmp_path):
    """``trainable_blocks == layers`` trains the stem too (every visual parameter gets a gradient);
    the split still equals the monolithic model, and ``--cache-frozen`` is refused: nothing is frozen."""
    import json as _json

    from clipmg.model.config import ModelConfig

    cfg = load_config("clipmg-tiny")
    with pytest.raises(ValueError, match=r"trainable_blocks must be in \[1, 4\]"):
        ModelConfig.from_dict({**cfg.to_dict(), "vision": {**cfg.to_dict()["vision"], "trainable_blocks": 5}})
    d = cfg.to_dict()
    d["vision"]["trainable_blocks"] = 4
    preset = tmp_path / "tiny-all.json"
    preset.write_text(_json.dumps(d))
    model = create_model(preset, num_classes=4)
    assert model.stem_trainable and all(
        p.requires_grad for p in model.visual.parameters() if p is not model.visual.proj
    )
    x, kp = torch.randn(2, 8, 3, 96, 96), torch.rand(2, 32, 22, 3) * 96
    model(x, kp).sum().backward()
    assert model.visual.conv1.weight.grad is not None and model.visual.positional_embedding.grad is not None
    enc, head = model.eval().split()
    with torch.no_grad():
        toks, emb = enc(x.flatten(0, 1))
        torch.testing.assert_close(
            head(toks.reshape(2, 8, *toks.shape[1:]), emb.reshape(2, 8, -1), kp), model(x, kp), rtol=1e-5, atol=1e-5
        )
    assert not create_model("clipmg-tiny", num_classes=4).visual.conv1.weight.requires_grad
    bad = _cfg(synth_root, tmp_path / "x", preset=str(preset), augment=False, cache_frozen=True)
    with pytest.raises(ValueError, match="nothing to cache"):
        Trainer(bad, build_data(bad, load_config(str(preset))))


def test_ablation_table_and_reuse_of_finished_runs(synth_root, tmp_path, capsys):
    """``clipmg-ablate`` trains and evaluates each variant and writes the Table-2-shaped table;
    ``--reuse`` evaluates finished runs of the same recipe without retraining them and refuses a
    run directory that holds another recipe."""
    import json

    from clipmg.train.ablation import main as ablate_main

    out = tmp_path / "abl"
    common = ["--data", str(synth_root), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
    assert ablate_main([*common, "--variants", "full,no_pose"]) == 0
    table = (out / "ablation.md").read_text()
    assert "| `full` | full model |" in table and "| `no_pose` | w/o pose (RGB only) |" in table and "61.82" in table
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["full", "no_pose"] and all(0 <= r["top1"] <= 1 for r in rows)
    stamp = (out / "full" / "best.safetensors").stat().st_mtime_ns
    assert ablate_main([*common, "--variants", "full,no_pose", "--reuse"]) == 0
    assert (out / "full" / "best.safetensors").stat().st_mtime_ns == stamp  # evaluated, not retrained
    again = json.loads((out / "ablation.json").read_text())["rows"]
    assert [r["top1"] for r in again] == [r["top1"] for r in rows]
    capsys.readouterr()
    assert ablate_main([*common, "--variants", "full", "--reuse", "--lr-new", "5e-3"]) == 2
    assert "holds a run with other settings (lr_new)" in capsys.readouterr().err


def test_rgb_dropout_blanks_whole_clips_and_resumes_exactly(synth_root, tmp_path, monkeypatch):
    """--rgb-dropout: the shipped train step hands the model grey (0) frames for about p of the clips,
    the others untouched; without it nothing is drawn (runs stay as they were); a resume is exact."""
    cfg = _cfg(synth_root, tmp_path / "r", rgb_dropout=0.5)
    data = build_data(cfg, load_config(cfg.preset))
    tr = Trainer(cfg, data)
    seen: list[torch.Tensor] = []
    forward = tr.model.forward
    monkeypatch.setattr(tr.model, "forward", lambda images, kp, **kw: seen.append(images) or forward(images, kp, **kw))
    batch = collate([data.train[i] for i in range(8)])
    for _ in range(6):
        tr.train_step({**batch, "index": torch.arange(8)})
    blank = torch.cat([(x.flatten(1) == 0).all(dim=1) for x in seen])
    kept = torch.tensor([torch.equal(x[i], batch["images"][i]) for x in seen for i in range(8)])
    assert bool((blank ^ kept).all())  # a clip is either wholly grey or wholly its own frames
    assert 12 <= int(blank.sum()) <= 36 and tr.rgb_blanked == int(blank.sum())  # 48 clips at p = 0.5
    plain = Trainer(_cfg(synth_root, tmp_path / "p"), data)
    state = torch.get_rng_state()
    assert plain._blank_rgb(batch["images"]) is batch["images"] and torch.equal(torch.get_rng_state(), state)
    # a run stopped mid-way and resumed equals the uninterrupted one with dropout on too
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(_cfg(synth_root, a, rgb_dropout=0.5), data).run()
    Trainer(_cfg(synth_root, b, rgb_dropout=0.5, max_steps=6), data).run()
    Trainer(_cfg(synth_root, b, rgb_dropout=0.5, resume=True), data).run()
    np.testing.assert_allclose(_losses(b), _losses(a), rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="--rgb-dropout needs the frames themselves"):
        _cfg(synth_root, tmp_path, rgb_dropout=0.3, cache_frozen=True, augment=False)
    with pytest.raises(ConfigError, match="rgb.dropout"):
        _cfg(synth_root, tmp_path, rgb_dropout=1.0)


def test_eval_withholds_a_modality(synth_root, tmp_path, capsys):
    """clipmg-eval --withhold rgb|pose scores the same clips with grey frames or no keypoints."""
    from clipmg.train.evaluate import evaluate_checkpoint
    from clipmg.train.evaluate import main as eval_main

    run = tmp_path / "run"
    args = ["--data", str(synth_root), "--out", str(run), "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
    assert train_main(args) == 0
    ckpt = run / "best.safetensors"
    full = evaluate_checkpoint(ckpt, str(synth_root))
    runs = {w: evaluate_checkpoint(ckpt, str(synth_root), withhold=w) for w in ("rgb", "pose")}
    for w, r in runs.items():
        assert r["withheld"] == w and r["count"] == full["count"]
    assert runs["rgb"]["confusion"] != full["confusion"] or runs["pose"]["confusion"] != full["confusion"]
    assert eval_main([str(ckpt), "--data", str(synth_root), "--withhold", "rgb"]) == 0
    assert "RGB withheld: grey frames" in capsys.readouterr().out
    p = subprocess.run(
        [sys.executable, "-m", "clipmg.train.evaluate", str(ckpt), "--data", str(synth_root), "--withhold", "x"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "--withhold" in p.stderr
