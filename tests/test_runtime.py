"""The live runtime without PyTorch: ``pip install 'clipmg[runtime]'`` runs the recognizer, the
listener and ``clipmg-predict`` on an exported engine, the built-in demo included.

``.ci/run`` runs this module (and the real-clip acceptance tests) in a second environment made with
``pip install -e '.[runtime]'`` plus the test runner: there these tests also prove that PyTorch and
open_clip are not installed. In the full environment they check the same behaviour and that the
processes involved never import PyTorch (``-X importtime`` lists every module a process imports).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from live_harness import RUN_LIVE, endpoint

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
HEAVY = ("torch", "open_clip", "torchvision")


def _imported(stderr: str) -> set:
    """Top-level packages a ``python -X importtime`` process imported (from its stderr)."""
    mods = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return mods


def test_the_demo_model_ships_as_an_onnx_export_of_its_checkpoint() -> None:
    from clipmg.model.files import file_sha256
    from clipmg.stream.demo import DEMO_CHECKPOINT, DEMO_EXPORT, demo_model

    manifest = json.loads((DEMO_EXPORT / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == file_sha256(DEMO_CHECKPOINT)  # the export is of the shipped checkpoint
    assert max(manifest["check"]["errors"].values()) < 1e-4
    if importlib.util.find_spec("onnxruntime") is not None:
        assert demo_model() == DEMO_EXPORT


def test_runtime_environment_has_no_pytorch_when_it_is_the_runtime_one() -> None:
    if os.environ.get("CLIPMG_RUNTIME_ENV") != "1":
        pytest.skip("not the runtime-only environment (.ci/run sets CLIPMG_RUNTIME_ENV=1 there)")
    assert [m for m in HEAVY if importlib.util.find_spec(m) is not None] == []


def test_live_demo_runs_and_imports_no_pytorch(tmp_path: Path) -> None:
    """The README's demo command (built-in synthetic camera and demo model) with every process's imports
    listed: the supervisor, the capture, the worker and the listener import no PyTorch."""
    ep = endpoint()
    # -v keeps file descriptor 2 open in the worker: -X importtime writes there (children inherit the flag)
    r = subprocess.run(
        # --web 0: the web view (aiohttp, its frame channel in the worker) is part of the runtime too
        [
            PY,
            "-X",
            "importtime",
            str(RUN_LIVE),
            "--endpoint",
            ep,
            "--max-windows",
            "5",
            "--no-record",
            "-v",
            "--web",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "windows 5" in r.stderr, r.stderr[-2000:]
    assert "model ready: clipmg-tiny (onnxruntime" in r.stderr
    heavy = _imported(r.stderr) & set(HEAVY)
    assert not heavy, f"the live runtime imported {heavy}"
    assert "onnxruntime" in _imported(r.stderr)  # the worker's imports are in the list too
    assert "aiohttp" in _imported(r.stderr) and "web view: http://127.0.0.1:" in r.stderr


def test_clipmg_predict_imports_no_pytorch(shared_data: Path) -> None:
    gif = shared_data / "imigue-clips" / "covering-face.gif"
    if not gif.is_file():
        pytest.skip(f"{gif} is not there")
    r = subprocess.run(
        [PY, "-X", "importtime", "-m", "clipmg.stream.predict", str(gif), "--json", "-", "-v"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(r.stdout.splitlines()[0])
    assert (rec["start_frame"], rec["end_frame"]) == (0, 22) and rec["model"]["backend"] == "onnxruntime"
    assert not _imported(r.stderr) & set(HEAVY)
