"""Bad input to every command-line tool: one clear sentence on stderr, a non-zero exit, no traceback.

Each case runs the real console script (or ``run_live.py``) as a subprocess on a real broken file:
truncated and corrupt videos, checkpoints, ONNX exports and TensorRT engine files; checkpoints and
engines for another class list, preset or variant; malformed keypoint files and label CSVs;
malicious pickles (never run); unreachable and malformed URLs; a port already in use; invalid
option values. The cases of a group run concurrently (three at a time) the first time one of
them is asked for; each is then checked on its own. Cases that import torch or start the worker
are ``slow``. Every case is a row of docs/reliability.md.
"""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from live_harness import CLASSES, PY, RUN_LIVE, endpoint, tiny_checkpoint

SECRET = "Pw-5ecret-77"
TRAIN_CLASSES = ("touch chin", "fold arm", "rub eyes", "no gesture")
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Case:
    id: str
    argv: Tuple[str, ...]  # "{name}" placeholders are artifacts; the first item is a console script or "live"
    rc: int
    words: str  # must appear in the one error line
    forbid: Tuple[str, ...] = ()  # must appear nowhere in stdout/stderr (secrets, a marker)
    usage: bool = False  # argparse: a usage line comes before the error line


def live(*args: str) -> Tuple[str, ...]:
    return ("live", *args)


# The error line of each tool starts with its name (run_live.py: "[clipmg-live] ").
PREFIX = {"live": "[clipmg-live] ", "clipmg-train": "clipmg-train: ", "clipmg-eval": "clipmg-eval: ",
          "clipmg-export": "clipmg-export: ", "clipmg-data": "clipmg-data: ", "clipmg-synth": "clipmg-synth: ",
          "clipmg-listen": "clipmg-listen: "}

# Lines on stderr that are not the tool speaking: progress logs, and diagnostics printed by
# libraries (FFmpeg's "[mov,mp4 @ 0x..] moov atom not found", MediaPipe's absl lines).
NOISE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ INFO |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ clipmg\.\w+: |"
                   r"\[[\w,]+ @ 0x[0-9a-f]+\] |W0000 |I0000 |WARNING: All log messages before absl|"
                   r"INFO: Created TensorFlow)")

# ------------------------------------------------------------------------------------ the cases
FAST = [
    # run_live.py: bad configuration, refused before any process starts
    Case("live-stride", live("--stride", "6"), 2, "--stride 6 must be a positive multiple of 4"),
    Case("live-hwm", live("--hwm", "0", "--engine", "{ckpt5}"), 2, "--hwm at least 1"),
    Case("live-max-size", live("--max-size", "10x10", "--engine", "{ckpt5}"), 2, "--max-size must be at least 16x16"),
    Case("live-max-size-text", live("--max-size", "big"), 2, "expected WIDTHxHEIGHT", usage=True),
    Case("live-threads", live("--threads", "0", "--engine", "{ckpt5}"), 2, "--threads must be at least 1"),
    Case("live-duration", live("--duration", "-5", "--engine", "{ckpt5}"), 2, "--duration must be positive"),
    Case("live-format", live("--format", "xml"), 2, "invalid choice: 'xml'", usage=True),
    Case("live-pose-name", live("--pose", "alphapose", "--engine", "{ckpt5}"), 2, "unknown pose backend 'alphapose'"),
    Case("live-source-option", live("--source-option", "read_timeout_s"), 2, "expected KEY=VALUE", usage=True),
    Case("live-source-timeout", live("--source-option", "read_timeout_s=-1", "--engine", "{ckpt5}"), 2,
         "read_timeout_s=-1: expected a positive number of seconds"),
    Case("live-stride-text", live("--stride", "eight"), 2, "invalid int value: 'eight'", usage=True),
    Case("live-remote", live("--endpoint", "tcp://0.0.0.0:5599", "--engine", "{ckpt5}"), 2, "--allow-remote"),
    Case("live-endpoint", live("--endpoint", "udp://127.0.0.1:5", "--engine", "{ckpt5}"), 2, "tcp://HOST:PORT"),
    Case("live-engine-missing", live("--engine", "{tmp}/none.safetensors"), 2, "no such file or directory"),
    Case("live-source-missing", live("--source", "{tmp}/none.mp4", "--engine", "{ckpt5}"), 2, "no such file or folder"),
    Case("live-url-port", live("--source", f"rtsp://admin:{SECRET}@cam.invalid:99999/live?token={SECRET}x",
                               "--engine", "{ckpt5}"), 2, "is not a number between 1 and 65535", forbid=(SECRET,)),
    Case("live-url-host", live("--source", f"rtsp://admin:{SECRET}@/live", "--engine", "{ckpt5}"), 2,
         "names no host", forbid=(SECRET,)),
    Case("live-url-scheme", live("--source", "://cam/live", "--engine", "{ckpt5}"), 2, "not a URL"),
    Case("live-curve-missing", live("--curve-secret", "{tmp}/none.key_secret", "--engine", "{ckpt5}"), 2,
         "CURVE secret key file"),
    Case("live-curve-allow", live("--curve-allow", "{tmp}", "--engine", "{ckpt5}"), 2, "--curve-allow needs --curve-secret"),
    Case("live-port-in-use", live("--endpoint", "{busy}", "--engine", "{ckpt5}"), 2, "the address is already in use"),
    # clipmg-listen
    Case("listen-endpoint", ("clipmg-listen", "--endpoint", "tcp://nowhere", "-n", "1"), 2, "Invalid argument"),
    Case("listen-server-key", ("clipmg-listen", "--server-key", "short", "-n", "1"), 2,
         "neither a certificate file nor a 40-character Z85 key"),
    Case("listen-count", ("clipmg-listen", "-n", "many"), 2, "invalid int value: 'many'", usage=True),
    Case("listen-timeout", ("clipmg-listen", "--endpoint", "{quiet}", "--timeout", "0.5"), 1, "nothing received"),
]

SLOW = [
    # clipmg-synth
    Case("synth-not-empty", ("clipmg-synth", "{ds}", "--videos", "1"), 2, "is not empty"),
    Case("synth-odd-width", ("clipmg-synth", "{tmp}/s1", "--width", "161"), 2, "frame size must be even"),
    Case("synth-classes", ("clipmg-synth", "{tmp}/s2", "--classes", "juggle,fold arm"), 2, "unknown: ['juggle']"),
    Case("synth-videos", ("clipmg-synth", "{tmp}/s3", "--videos", "0"), 2, "at least one video"),
    # clipmg-data
    Case("data-missing", ("clipmg-data", "summary", "{tmp}/nowhere"), 1, "error:"),
    Case("data-bad-label-strict", ("clipmg-data", "summary", "{ds_badlabels}", "--strict"), 1, "values must be integers"),
    Case("data-bad-json-strict", ("clipmg-data", "summary", "{ds_badjson}", "--strict"), 1, "cannot read OpenPose JSON"),
    Case("data-classes-file", ("clipmg-data", "summary", "{ds}", "--classes", "{one_class}"), 1,
         "expected at least two class names"),
    Case("data-evil-pickle", ("clipmg-data", "summary", "{evil_pkl}"), 1, "refusing to unpickle", forbid=("PWNED",)),
    # clipmg-train
    Case("train-no-data", ("clipmg-train", "--data", "{tmp}/nowhere", "--out", "{tmp}/r0"), 2, "does not exist"),
    Case("train-epochs", ("clipmg-train", "--data", "{ds}", "--epochs", "0"), 2, "--epochs and --batch-size"),
    Case("train-batch-text", ("clipmg-train", "--data", "{ds}", "--batch-size", "two"), 2, "invalid int value",
         usage=True),
    Case("train-preset", ("clipmg-train", "--data", "{ds}", "--out", "{tmp}/r1", "--preset", "clipmg-huge"), 2,
         "unknown preset 'clipmg-huge'"),
    Case("train-config", ("clipmg-train", "--config", "{bad_toml}"), 2, "is not valid TOML"),
    Case("train-bad-json-strict", ("clipmg-train", "--data", "{ds_badjson}", "--out", "{tmp}/r3", "--strict"), 2,
         "cannot read OpenPose JSON"),
    Case("train-evil-clip-weights", ("clipmg-train", "--data", "{ds}", "--out", "{tmp}/r4", "--pretrained",
                                     "{evil_pt}"), 2, "refused", forbid=("PWNED",)),
    Case("train-out-is-a-file", ("clipmg-train", "--data", "{ds}", "--out", "{one_class}"), 2, "exists"),
    Case("train-resume-cut-checkpoint", ("clipmg-train", "--data", "{ds}", "--out", "{run_cut}", "--resume"), 2,
         "truncated"),
    Case("train-resume-cut-state", ("clipmg-train", "--data", "{ds}", "--out", "{run_cut_state}", "--resume"), 2,
         "cannot resume"),
    Case("train-resume-evil-state", ("clipmg-train", "--data", "{ds}", "--out", "{run_evil_state}", "--resume"), 2,
         "cannot resume", forbid=("PWNED",)),
    Case("train-resume-other-variant", ("clipmg-train", "--data", "{ds}", "--out", "{run_ok}", "--resume",
                                        "--variant", "no_pose"), 2, "does not match the requested configuration"),
    # clipmg-eval
    Case("eval-cut-checkpoint", ("clipmg-eval", "{cut_ckpt}", "--data", "{ds}"), 2, "truncated"),
    Case("eval-other-classes", ("clipmg-eval", "{ckpt5}", "--data", "{ds}"), 2, "was trained on classes"),
    Case("eval-split", ("clipmg-eval", "{ckpt4}", "--data", "{ds}", "--split", "test"), 2, "invalid choice", usage=True),
    # clipmg-export
    Case("export-cut-checkpoint", ("clipmg-export", "{cut_ckpt}", "{tmp}/x1"), 2, "truncated or corrupt"),
    Case("export-other-preset", ("clipmg-export", "{ckpt5}", "{tmp}/x2", "--preset", "clipmg-vitb32"), 2,
         "'clipmg-vitb32' was requested"),
    # run_live.py: problems found once the worker or the capture opens them
    Case("live-cut-checkpoint", live("--engine", "{cut_ckpt}", "--no-listen"), 2, "truncated or corrupt"),
    Case("live-cut-onnx", live("--engine", "{onnx_cut}", "--no-listen"), 2, "truncated or corrupt"),
    Case("live-trt-no-header", live("--engine", "{trt_junk}", "--no-listen"), 2, "not a clipmg TensorRT engine"),
    Case("live-cut-video", live("--source", "{cut_mp4}", "--engine", "{ckpt5}", "--no-listen"), 1,
         "cannot read the source: could not open video file"),
    Case("live-replay-missing", live("--pose", "replay", "--pose-option", "path={tmp}/none.npy", "--engine",
                                     "{ckpt5}", "--no-listen"), 2, "replay needs a folder of OpenPose JSON files"),
    Case("live-replay-evil-npy", live("--pose", "replay", "--pose-option", "path={evil_npy}", "--engine", "{ckpt5}",
                                      "--no-listen"), 2, "cannot read", forbid=("PWNED",)),
    Case("live-replay-bad-csv", live("--pose", "replay", "--pose-option", "path={bad_csv}", "--engine", "{ckpt5}",
                                     "--no-listen"), 2, "replay:"),
    Case("live-pose-option", live("--pose", "synthetic", "--pose-option", "colour=red", "--engine", "{ckpt5}",
                                  "--no-listen"), 2, "bad options for pose backend 'synthetic'"),
]


# ------------------------------------------------------------------------------------ artifacts
class _Evil:
    """What a malicious pickle does: call a function while it is being loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _make_artifacts(root: Path, with_engines: bool) -> Dict[str, str]:
    import torch

    from clipmg.train.synth import SynthConfig, write_dataset

    a: Dict[str, Path] = {"tmp": root}
    a["ckpt5"] = tiny_checkpoint(root / "tiny5.safetensors", CLASSES)
    a["ckpt4"] = tiny_checkpoint(root / "tiny4.safetensors", TRAIN_CLASSES)
    data = a["ckpt5"].read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) // 2])
    a["cut_ckpt"] = root / "cut.safetensors"
    (root / "junk.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    a["junk_ckpt"] = root / "junk.safetensors"
    marker = root / "PWNED"
    a["marker"] = marker
    if not with_engines:
        return {k: str(v) for k, v in a.items()}

    ds = root / "ds"
    write_dataset(ds, seed=3, videos=3, clips_per_video=3,
                  config=SynthConfig(classes=TRAIN_CLASSES, clip_frames=(24, 32), gap_frames=(8, 12)))
    a["ds"] = ds
    a["ds_badlabels"] = shutil.copytree(ds, root / "ds_badlabels")
    label = sorted(a["ds_badlabels"].glob("*/*_label.csv"))[0]
    label.write_text(label.read_text() + "2,abc,40\n")
    a["ds_badjson"] = shutil.copytree(ds, root / "ds_badjson")
    js = sorted(a["ds_badjson"].glob("*/openpose/*.json"))[5]
    js.write_text(js.read_text()[:40])
    (root / "one_class.txt").write_text("only one\n")
    a["one_class"] = root / "one_class.txt"
    (root / "bad.toml").write_text("[train\nepochs = 3\n")
    a["bad_toml"] = root / "bad.toml"
    (root / "evil.pkl").write_bytes(pickle.dumps({"split": {}, "annotations": [_Evil(marker)]}))
    a["evil_pkl"] = root / "evil.pkl"
    good = pickle.dumps({"split": {}, "annotations": []})
    (root / "cut.pkl").write_bytes(good[: len(good) // 2])
    a["cut_pkl"] = root / "cut.pkl"
    torch.save({"visual.conv1.weight": _Evil(marker)}, root / "evil.pt")
    a["evil_pt"] = root / "evil.pt"
    np.save(root / "evil.npy", np.array([_Evil(marker), 1], dtype=object), allow_pickle=True)
    a["evil_npy"] = root / "evil.npy"
    (root / "bad_light_hand.csv").write_text("frame,x\n0,abc\n1,2\n")
    a["bad_csv"] = root / "bad_light_hand.csv"
    # training run directories as a kill or a bad disk would leave them
    for name in ("run_ok", "run_cut", "run_cut_state", "run_evil_state"):
        d = root / name
        d.mkdir()
        shutil.copy(a["ckpt4"], d / "last.safetensors")
        torch.save({"step": 1, "optimizer": {}}, d / "last.state.pt")
        a[name] = d
    data = (a["run_cut"] / "last.safetensors").read_bytes()
    (a["run_cut"] / "last.safetensors").write_bytes(data[: len(data) // 3])
    data = (a["run_cut_state"] / "last.state.pt").read_bytes()
    (a["run_cut_state"] / "last.state.pt").write_bytes(data[: len(data) // 2])
    torch.save({"optimizer": _Evil(marker)}, a["run_evil_state"] / "last.state.pt")
    # videos
    import cv2

    w = cv2.VideoWriter(str(root / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(30):
        w.write(np.full((120, 160, 3), i * 8, np.uint8))
    w.release()
    data = (root / "v.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    a["cut_mp4"] = root / "cut.mp4"
    (root / "junk.mp4").write_bytes(np.random.default_rng(1).bytes(6000))
    a["junk_mp4"] = root / "junk.mp4"
    # engines: a truncated ONNX export, and a TensorRT directory whose engine files have no header
    from clipmg.engines.artifacts import MANIFEST, TRT_EXPORT, file_entry, write_manifest
    from clipmg.engines.export import export_onnx

    onnx = export_onnx(a["ckpt5"], root / "onnx", log=lambda m: None).out_dir
    a["onnx_cut"] = shutil.copytree(onnx, root / "onnx_cut")
    enc = a["onnx_cut"] / "frame_encoder.onnx"
    enc.write_bytes(enc.read_bytes()[: enc.stat().st_size // 2])
    import json

    meta = json.loads((onnx / MANIFEST).read_text())["metadata"]
    trt = root / "trt_junk"
    trt.mkdir()
    files = {}
    for graph in ("frame_encoder", "window_head"):
        (trt / f"{graph}.engine").write_bytes(b"\x00TRT-plan-without-a-clipmg-header" * 64)
        files[graph] = file_entry(trt / f"{graph}.engine")
    write_manifest(trt, {"format": TRT_EXPORT, "files": files, "metadata": meta})
    a["trt_junk"] = trt
    return {k: str(v) for k, v in a.items()}


def _command(case: Case, arts: Dict[str, str]) -> List[str]:
    argv = [x.format(**arts) for x in case.argv]
    if argv[0] == "live":  # its own port: the cases run concurrently, and 5556 may be in use here
        return [PY, str(RUN_LIVE), *argv[1:], *([] if "--endpoint" in argv else ["--endpoint", endpoint()])]
    exe = BIN / argv[0]
    return [str(exe) if exe.exists() else argv[0], *argv[1:]]


def _run_all(cases: List[Case], arts: Dict[str, str]) -> Dict[str, subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def one(case: Case) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        r = subprocess.run(_command(case, arts), capture_output=True, text=True, timeout=300, env=env,
                           cwd=arts["tmp"], stdin=subprocess.DEVNULL)
        r.took = time.monotonic() - t0  # type: ignore[attr-defined]
        return r

    # the longest first (the worker-starting ones, then the trainer's), so the three lanes end together
    def cost(c: Case) -> int:
        if c.argv[0] == "live":
            return 0
        if "--resume" in c.argv or "--pretrained" in c.argv or c.argv[0] in ("clipmg-eval", "clipmg-export"):
            return 1
        return 3 if c.argv[0] == "clipmg-synth" else 2

    order = sorted(cases, key=cost)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip((c.id for c in order), pool.map(one, order)))


@pytest.fixture(scope="module")
def busy_endpoint():
    """A port another publisher holds for the whole module, and one where nothing is published."""
    from clipmg.stream.publisher import Publisher

    ep = endpoint()
    with Publisher(ep) as pub:
        yield ep, endpoint()
        del pub


@pytest.fixture(scope="module")
def fast_results(tmp_path_factory: pytest.TempPathFactory, busy_endpoint) -> Tuple[Dict[str, str], Dict]:
    arts = _make_artifacts(tmp_path_factory.mktemp("bad_fast"), with_engines=False)
    arts["busy"], arts["quiet"] = busy_endpoint
    return arts, _run_all(FAST, arts)


@pytest.fixture(scope="module")
def slow_results(tmp_path_factory: pytest.TempPathFactory, busy_endpoint) -> Tuple[Dict[str, str], Dict]:
    arts = _make_artifacts(tmp_path_factory.mktemp("bad_slow"), with_engines=True)
    arts["busy"], arts["quiet"] = busy_endpoint
    return arts, _run_all(SLOW, arts)


def check_one_line(case: Case, r: subprocess.CompletedProcess, arts: Dict[str, str]) -> None:
    where = f"{case.id}: exit {r.returncode}\n--- stderr\n{r.stderr[-3000:]}\n--- stdout\n{r.stdout[-1000:]}"
    assert r.returncode == case.rc, where
    assert "Traceback" not in r.stderr + r.stdout, where
    lines = [line for line in r.stderr.splitlines() if line.strip() and not NOISE.match(line)]
    if case.usage:  # argparse: "usage: ..." (possibly wrapped over indented lines), then the error line
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    prefix = PREFIX[case.argv[0]]
    if case.usage and case.argv[0] == "live":
        prefix = "clipmg-live: error: "
    assert len(lines) == 1, where
    assert lines[0].startswith(prefix) and case.words in lines[0], where
    for secret in case.forbid:
        assert secret not in r.stderr + r.stdout, where
    assert not Path(arts["marker"]).exists(), "a malicious pickle ran code"


@pytest.mark.parametrize("case", FAST, ids=[c.id for c in FAST])
def test_bad_input_fails_with_one_line(case: Case, fast_results) -> None:
    arts, results = fast_results
    check_one_line(case, results[case.id], arts)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=[c.id for c in SLOW])
def test_bad_input_to_heavy_tools_fails_with_one_line(case: Case, slow_results) -> None:
    arts, results = slow_results
    check_one_line(case, results[case.id], arts)
