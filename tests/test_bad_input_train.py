"""Bad input to the training commands: refused with one sentence, exit status 2, no traceback.

Each case runs a real command (``python -m clipmg.train.<module>``) as a subprocess: every value that
used to end in a traceback (``--threads -1``, ``--label-smoothing 2``, a truncated or random-bytes
``--pretrained``) and every value that used to be accepted silently (a NaN or negative learning
rate, ``--time-limit-min -1``, ``--max-steps -5``, ``--save-every -1``, a data set whose keypoints
are all NaN, a checkpoint whose weights were corrupted without changing its size). Most cases fail
while the flags are parsed; the data-dependent ones use a tiny synthetic set. The cases run two at a
time the first time one of them is asked for; each is then checked on its own. Every case is a row
of docs/reliability.md. In-process checks of the settings themselves (every field's range, every
flag's help) follow.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
from live_harness import tiny_checkpoint
from test_bad_input import NOISE, TRAIN_CLASSES, tiny_dataset

MODULES = {
    "clipmg-train": "clipmg.train.trainer",
    "clipmg-eval": "clipmg.train.evaluate",
    "clipmg-synth": "clipmg.train.synth",
    "clipmg-data": "clipmg.train.summary",
    "clipmg-ablate": "clipmg.train.ablation",
}


@dataclass(frozen=True)
class Case:
    id: str
    argv: Tuple[str, ...]  # the command's name, then its arguments; "{name}" placeholders are artifacts
    words: str  # must appear in the one error line
    logs: bool = False  # the command logs progress (timestamped clipmg.* lines) before it refuses


def train(*args: str) -> Tuple[str, ...]:
    return ("clipmg-train", "--data", "{ds}", "--device", "cpu", "--out", "{out}", *args)


CASES = [
    # clipmg-train: refused while the flags are parsed (tracebacks or silent acceptance before)
    Case("train-lr-new-nan", train("--lr-new", "nan"), "--lr-new must be a finite number in (0, 10], got nan"),
    Case("train-lr-new-negative", train("--lr-new=-1e-3"), "--lr-new must be a finite number in (0, 10]"),
    Case("train-lr-new-inf", train("--lr-new", "inf"), "--lr-new must be a finite number in (0, 10], got inf"),
    Case("train-lr-new-huge", train("--lr-new", "100"), "--lr-new must be a finite number in (0, 10], got 100.0"),
    Case("train-lr-vit-zero", train("--lr-vit", "0"), "--lr-vit must be a finite number in (0, 10], got 0.0"),
    Case("train-lr-vit-nan", train("--lr-vit", "nan"), "--lr-vit must be a finite number in (0, 10]"),
    Case("train-threads", train("--threads", "-1"), "--threads must be an integer in [0, 4096], got -1"),
    Case(
        "train-label-smoothing", train("--label-smoothing", "2"), "--label-smoothing must be a finite number in [0, 1)"
    ),
    Case("train-time-limit", train("--time-limit-min", "-1"), "--time-limit-min must be a finite number of at least 0"),
    Case("train-max-steps", train("--max-steps", "-5"), "--max-steps must be an integer of at least 0, got -5"),
    Case("train-save-every", train("--save-every", "-1"), "--save-every must be an integer of at least 0"),
    Case("train-workers", train("--workers", "-2"), "--workers must be an integer of at least 0"),
    Case("train-seed", train("--seed", "-1"), "--seed must be an integer in [0, 4294967295]"),
    Case("train-warmup", train("--warmup-epochs", "-1"), "--warmup-epochs must be a finite number of at least 0"),
    Case("train-grad-clip", train("--grad-clip", "nan"), "--grad-clip must be a finite number of at least 0"),
    Case("train-weight-decay", train("--weight-decay", "-0.1"), "--weight-decay must be a finite number of at least 0"),
    Case("train-val-fraction", train("--val-fraction", "1"), "--val-fraction must be a finite number in [0, 1)"),
    Case("train-ema", train("--ema", "1"), "--ema must be a finite number in [0, 1)"),
    Case("train-person-scale", train("--person-scale", "nan"), "--person-scale must lie in [0.5, 4]"),
    Case("train-device", train("--device", "gpu0"), "--device must be auto, cpu, cuda or cuda:N"),
    Case("train-variant", train("--variant", "no_rgb"), "--variant must be one of full"),
    Case(
        "train-config-type",
        ("clipmg-train", "--config", "{bad_type_toml}", "--out", "{out}"),
        "--epochs must be an integer, got 'three'",
    ),
    # clipmg-train: refused once the data or the weights file is looked at
    Case(
        "train-pretrained-cut",
        train("--pretrained", "{cut_safetensors}"),
        "is not a readable safetensors file",
        logs=True,
    ),
    Case(
        "train-pretrained-junk",
        train("--pretrained", "{junk_pt}"),
        "is not a safetensors or PyTorch checkpoint file",
        logs=True,
    ),
    Case(
        "train-nan-keypoints",
        ("clipmg-train", "--data", "{ds_nan}", "--device", "cpu", "--out", "{out}"),
        "has usable keypoints",
        logs=True,
    ),
    Case(
        "train-resume-corrupt-weights",
        ("clipmg-train", "--data", "{ds}", "--device", "cpu", "--out", "{run_flipped}", "--resume"),
        "weights do not match their digest: the file is corrupt",
        logs=True,
    ),
    # clipmg-eval
    Case(
        "eval-corrupt-weights",
        ("clipmg-eval", "{flipped_ckpt}", "--data", "{ds}"),
        "weights do not match their digest: the file is corrupt",
    ),
    Case(
        "eval-batch-size",
        ("clipmg-eval", "{ckpt4}", "--data", "{ds}", "--batch-size", "0"),
        "--batch-size must be an integer of at least 1",
    ),
    Case(
        "eval-save-windows",
        ("clipmg-eval", "{ckpt4}", "--data", "{ds}", "--save-windows", "{tmp}/w.txt"),
        "must end in .npz",
    ),
    # clipmg-synth, clipmg-data, clipmg-ablate
    Case(
        "synth-seed",
        ("clipmg-synth", "{tmp}/s1", "--seed", "-1", "--no-video"),
        "--seed must be an integer of at least 0",
    ),
    Case("synth-fps", ("clipmg-synth", "{tmp}/s2", "--fps", "nan", "--no-video"), "fps must lie in [1, 120]"),
    Case("synth-out-is-a-file", ("clipmg-synth", "{junk_pt}", "--no-video"), "exists and is not a folder"),
    Case("data-missing", ("clipmg-data", "summary", "{tmp}/nowhere"), "does not exist"),
    Case(
        "ablate-variants",
        ("clipmg-ablate", "--data", "{ds}", "--variants", "full,no_rgb", "--out", "{out}"),
        "unknown variant(s) no_rgb",
    ),
    Case(
        "ablate-no-validation",
        ("clipmg-ablate", "--data", "{ds}", "--val-fraction", "0", "--out", "{out}"),
        "no validation split",
    ),
    Case(
        "ablate-lr",
        ("clipmg-ablate", "--data", "{ds}", "--lr-new", "-1", "--out", "{out}"),
        "--lr-new must be a finite number in (0, 10]",
    ),
]


# ------------------------------------------------------------------------------------ artifacts
def flip_weight_bytes(src: Path, dst: Path) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with 16 bytes in the middle of its tensor data inverted:
    the size and the header stay as they were, only the weights change."""
    data = bytearray(src.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    mid = start + (len(data) - start) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    dst.write_bytes(bytes(data))
    return dst


def _make_artifacts(root: Path) -> Dict[str, str]:
    import torch

    a: Dict[str, Path] = {"tmp": root}
    a["ds"] = ds = tiny_dataset(root / "ds")
    a["ds_nan"] = shutil.copytree(ds, root / "ds_nan")
    nan = json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": [float("nan")] * 75}]})
    for f in a["ds_nan"].rglob("*_keypoints.json"):
        f.write_text(nan)
    a["ckpt4"] = tiny_checkpoint(root / "tiny4.safetensors", TRAIN_CLASSES)
    a["flipped_ckpt"] = flip_weight_bytes(a["ckpt4"], root / "flipped.safetensors")
    data = a["ckpt4"].read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) // 2])
    a["cut_safetensors"] = root / "cut.safetensors"
    (root / "junk.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    a["junk_pt"] = root / "junk.pt"
    (root / "bad_type.toml").write_text('[train]\ndata = "x"\nepochs = "three"\n')
    a["bad_type_toml"] = root / "bad_type.toml"
    run = root / "run_flipped"
    run.mkdir()
    flip_weight_bytes(a["ckpt4"], run / "last.safetensors")
    torch.save({"step": 1, "optimizer": {}}, run / "last.state.pt")
    a["run_flipped"] = run
    return {k: str(v) for k, v in a.items()}


def _command(case: Case, arts: Dict[str, str]) -> List[str]:
    argv = [x.format(**arts, out=f"{arts['tmp']}/out-{case.id}") for x in case.argv]
    return [sys.executable, "-m", MODULES[argv[0]], *argv[1:]]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Dict[str, str], Dict[str, subprocess.CompletedProcess]]:
    root = tmp_path_factory.mktemp("bad_train")
    arts = _make_artifacts(root)
    logs = root / "logs"  # where an internal error's traceback would go: must stay empty
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLIPMG_LOG_DIR": str(logs)}

    def one(case: Case) -> subprocess.CompletedProcess:
        return subprocess.run(
            _command(case, arts),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
        )

    # the data-dependent cases first, so the two lanes end together
    order = sorted(CASES, key=lambda c: not c.logs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return arts, dict(zip((c.id for c in order), pool.map(one, order)))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_training_input_is_refused_in_one_line(case: Case, results) -> None:
    arts, all_results = results
    r = all_results[case.id]
    where = f"{case.id}: exit {r.returncode}\n--- stderr\n{r.stderr[-3000:]}\n--- stdout\n{r.stdout[-1000:]}"
    assert r.returncode == 2, where
    assert "Traceback" not in r.stderr + r.stdout, where
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    if case.logs:  # timestamped progress lines of the clipmg.* loggers are not the command speaking
        lines = [line for line in lines if not NOISE.match(line)]
    assert len(lines) == 1, where
    assert lines[0].startswith(f"{case.argv[0]}: ") and case.words in lines[0], where
    # refused means nothing was made: no checkpoint, no log, no data set, no traceback file
    out = Path(arts["tmp"]) / f"out-{case.id}"
    assert not list(out.glob("*.safetensors")) and not (out / "log.csv").exists(), where
    assert not (Path(arts["tmp"]) / "logs").exists(), where
    assert not (Path(arts["tmp"]) / "s1" / "classes.txt").exists()  # clipmg-synth --seed -1 wrote nothing


# ------------------------------------------------------------------------ the settings in process
def test_every_numeric_setting_refuses_nan_and_values_below_its_range() -> None:
    from clipmg.model.config import ConfigError
    from clipmg.train.config import Range, TrainConfig

    checked = 0
    for f in dataclasses.fields(TrainConfig):
        allowed = f.metadata["allowed"]
        if f.type in ("int", "float"):
            assert isinstance(allowed, Range) or f.name == "person_scale", f"{f.name} has no range"
            bad = [float("nan"), float("inf")] if f.type == "float" else []
            if isinstance(allowed, Range):
                low = allowed.lo if "lo" in allowed.open or allowed.open == "both" else allowed.lo - 1
                bad.append(low if f.type == "float" else int(math.floor(low)))
            for v in bad:
                with pytest.raises(ConfigError, match=f"--{f.name.replace('_', '-')} must"):
                    TrainConfig(**{f.name: v})
                checked += 1
            TrainConfig(**{f.name: f.default})  # the default is allowed
        elif isinstance(allowed, tuple):
            with pytest.raises(ConfigError, match="must be one of"):
                TrainConfig(**{f.name: "no-such-choice"})
    assert checked >= 30
    with pytest.raises(ConfigError, match="--batch-size must be an integer, got 2.5"):
        TrainConfig(batch_size=2.5)  # a config file's float for an int setting
    with pytest.raises(ConfigError, match="--augment must be true or false"):
        TrainConfig(augment="yes")


def test_every_training_flag_has_help() -> None:
    from clipmg.train.config import add_arguments

    ap = argparse.ArgumentParser()
    add_arguments(ap)
    missing = [a.option_strings for a in ap._actions if a.option_strings and not (a.help or "").strip()]
    assert missing == []
    text = ap.format_help()
    assert "peak learning rate of the new modules (default: 0.0001)" in " ".join(text.split())
    assert "(default: true)" in text  # booleans say their default too
