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
from live_harness import CLASSES, PY, RUN_LIVE, EvilPickle, endpoint, tiny_checkpoint

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


# The error line of each tool starts with its name. run_live.py: "clipmg-live: " for a bad configuration
# (exit 2, model/errors.py), "[clipmg-live] " for what the running supervisor says (a failed run, exit 1).
PREFIX = {
    "live": "clipmg-live: ",
    "clipmg-train": "clipmg-train: ",
    "clipmg-eval": "clipmg-eval: ",
    "clipmg-export": "clipmg-export: ",
    "clipmg-data": "clipmg-data: ",
    "clipmg-synth": "clipmg-synth: ",
    "clipmg-listen": "clipmg-listen: ",
    "clipmg-proxy": "clipmg-proxy: ",
    "clipmg-predict": "clipmg-predict: ",
    "clipmg-build": "clipmg-build: ",
    "clipmg-bench": "clipmg-bench: ",
}

# Lines on stderr that are not the tool speaking: progress logs, and diagnostics printed by
# libraries (FFmpeg's "[mov,mp4 @ 0x..] moov atom not found", MediaPipe's absl lines). Only the slow
# cases (models loaded, files decoded) may have them; a fast case's stderr is its one line and nothing else.
NOISE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ INFO |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ clipmg\.\w+: |"
    r"\[[\w,]+ @ 0x[0-9a-f]+\] |W0000 |I0000 |WARNING: All log messages before absl|"
    r"INFO: Created TensorFlow)"
)
MODULES = {"clipmg-proxy": "clipmg.stream.proxy"}  # console scripts by module, where the install lacks one
ONNX_ONLY = "an export directory made by clipmg-export"
SYNTH_FPS = "give frames per second in [1, 120] for the synthetic source"
FPS = "give frames per second in (0, 1000]"

# ------------------------------------------------------------------------------------ the cases
# Refused at argument or configuration validation, before any model loads or process starts (< 1 s each).
FAST = [
    # run_live.py / clipmg-live: bad configuration, refused before any process starts
    Case("live-stride", live("--stride", "6"), 2, "--stride 6 must be a positive multiple of 4"),
    Case(
        "live-hwm",
        live("--hwm", "0", "--engine", "{ckpt5}"),
        2,
        "--hwm 0 is not allowed: give an integer of at least 1",
    ),
    Case("live-max-size", live("--max-size", "10x10", "--engine", "{ckpt5}"), 2, "at least 16x16"),
    Case("live-max-size-text", live("--max-size", "big"), 2, "expected WIDTHxHEIGHT", usage=True),
    Case(
        "live-threads",
        live("--threads", "0", "--engine", "{ckpt5}"),
        2,
        "--threads 0 is not allowed: give an integer in [1, 1024]",
    ),
    Case(
        "live-duration",
        live("--duration", "-5", "--engine", "{ckpt5}"),
        2,
        "--duration -5.0 is not allowed: give a number above 0",
    ),
    Case("live-format", live("--format", "xml"), 2, "invalid choice: 'xml'", usage=True),
    Case("live-pose-name", live("--pose", "alphapose", "--engine", "{ckpt5}"), 2, "unknown pose backend 'alphapose'"),
    Case("live-source-option", live("--source-option", "read_timeout_s"), 2, "expected KEY=VALUE", usage=True),
    Case(
        "live-source-timeout",
        live("--source-option", "read_timeout_s=-1", "--engine", "{ckpt5}"),
        2,
        "read_timeout_s=-1: expected a positive number of seconds",
    ),
    Case("live-stride-text", live("--stride", "eight"), 2, "invalid int value: 'eight'", usage=True),
    Case("live-remote", live("--endpoint", "tcp://0.0.0.0:5599", "--engine", "{ckpt5}"), 2, "--allow-remote"),
    Case("live-endpoint", live("--endpoint", "udp://127.0.0.1:5", "--engine", "{ckpt5}"), 2, "tcp://HOST:PORT"),
    Case(
        "live-endpoint-port",
        live("--endpoint", "tcp://127.0.0.1:99999"),
        2,
        "port '99999' is not a number between 1 and 65535",
    ),
    Case(
        "live-endpoint-port-zero",
        live("--endpoint", "tcp://127.0.0.1:0"),
        2,
        "port '0' is not a number between 1 and 65535",
    ),
    Case("live-endpoint-no-port", live("--endpoint", "tcp://127.0.0.1"), 2, "is not of the form tcp://HOST:PORT"),
    Case("live-endpoint-ipc", live("--endpoint", "ipc://"), 2, "names no path"),
    Case("live-engine-missing", live("--engine", "{tmp}/none.safetensors"), 2, "no such file or directory"),
    Case("live-engine-onnx-file", live("--engine", "{onnx_file}"), 2, ONNX_ONLY),
    Case("live-source-missing", live("--source", "{tmp}/none.mp4", "--engine", "{ckpt5}"), 2, "no such file or folder"),
    Case(
        "live-url-port",
        live("--source", f"rtsp://admin:{SECRET}@cam.invalid:99999/live?token={SECRET}x", "--engine", "{ckpt5}"),
        2,
        "is not a number between 1 and 65535",
        forbid=(SECRET,),
    ),
    Case(
        "live-url-host",
        live("--source", f"rtsp://admin:{SECRET}@/live", "--engine", "{ckpt5}"),
        2,
        "names no host",
        forbid=(SECRET,),
    ),
    Case("live-url-scheme", live("--source", "://cam/live", "--engine", "{ckpt5}"), 2, "not a URL"),
    Case(
        "live-curve-missing",
        live("--curve-secret", "{tmp}/none.key_secret", "--engine", "{ckpt5}"),
        2,
        "CURVE secret key file",
    ),
    Case(
        "live-curve-allow",
        live("--curve-allow", "{tmp}", "--engine", "{ckpt5}"),
        2,
        "--curve-allow needs --curve-secret",
    ),
    Case("live-port-in-use", live("--endpoint", "{busy}", "--engine", "{ckpt5}"), 2, "the address is already in use"),
    # --web: the browser view's address, token and rate (stream/config.py check_web)
    Case("live-web-port", live("--web", "70000"), 2, "--web '70000': the port must be a number between 0 and 65535"),
    Case("live-web-text", live("--web", "localhost:http"), 2, "the port must be a number between 0 and 65535"),
    Case("live-web-host", live("--web", "user@host:80"), 2, "is not [HOST:]PORT"),
    Case("live-web-remote", live("--web", "0.0.0.0:8080"), 2, "is not a loopback address; other machines could watch"),
    Case(
        "live-web-no-token",
        live("--web", "0.0.0.0:8080", "--allow-remote"),
        2,
        "reachable from other machines: give a token with --web-token-env VAR",
    ),
    Case(
        "live-web-token-env",
        live("--web", "0", "--web-token-env", "CLIPMG_NO_SUCH_TOKEN_VAR"),
        2,
        "--web-token-env CLIPMG_NO_SUCH_TOKEN_VAR: that environment variable is unset or empty",
    ),
    Case("live-web-token-file", live("--web", "0", "--web-token-file", "{tmp}/no-token"), 2, "cannot read it"),
    Case(
        "live-web-token-short",
        live("--web", "0", "--web-token-file", "{short_token}"),
        2,
        "the web token must be at least 16 printable characters",
        forbid=("tiny-tok",),
    ),
    Case(
        "live-web-token-twice",
        live("--web", "0", "--web-token-file", "{short_token}", "--web-token-env", "HOME"),
        2,
        "give the token once: --web-token-env or --web-token-file, not both",
    ),
    Case(
        "live-web-fps",
        live("--web", "0", "--web-fps", "0"),
        2,
        "--web-fps 0.0 is not allowed: give a number in [0.5, 30]",
    ),
    Case("live-web-inproc", live("--web", "0", "--endpoint", "inproc://x"), 2, "--web needs a tcp:// or ipc://"),
    Case(
        "live-web-in-use",
        live("--web", "{busy_port}", "--engine", "{ckpt5}"),
        2,
        "the address is already in use; choose another --web port",
    ),
    # --source-option values that were accepted silently (or failed only inside the capture process)
    Case("live-fps-zero", live("--source-option", "fps=0"), 2, f"fps=0 is not allowed: {SYNTH_FPS}"),
    Case("live-fps-negative", live("--source-option", "fps=-5"), 2, f"fps=-5 is not allowed: {SYNTH_FPS}"),
    Case("live-fps-huge", live("--source-option", "fps=1e9"), 2, SYNTH_FPS),
    Case(
        "live-folder-fps-zero",
        live("--source", "{imgs}", "--source-option", "fps=0"),
        2,
        f"fps=0 is not allowed: {FPS}",
    ),
    Case("live-folder-fps-negative", live("--source", "{imgs}", "--source-option", "fps=-5"), 2, FPS),
    Case("live-folder-fps-huge", live("--source", "{imgs}", "--source-option", "fps=1e9"), 2, FPS),
    Case("live-folder-fps-nan", live("--source", "{imgs}", "--source-option", "fps=NaN"), 2, FPS),
    Case(
        "live-folder-loop-maybe",
        live("--source", "{imgs}", "--source-option", "loop=maybe"),
        2,
        "loop='maybe' is not a boolean: give one of true, 1, yes, false, 0, no",
    ),
    Case(
        "live-unknown-option",
        live("--source-option", "colour=red"),
        2,
        "colour: not an option of a synthetic source; its options are open_timeout_s",
    ),
    Case(
        "live-webcam-loop",
        live("--source", "0", "--source-option", "loop=true", "--engine", "{ckpt5}"),
        2,
        "loop: not an option of a webcam source; its options are",
    ),
    Case("live-synthetic-width", live("--source-option", "width=161"), 2, "frame size must be even"),
    Case("live-max-frames", live("--source-option", "max_frames=0"), 2, "max_frames 0 is not allowed"),
    # every numeric flag that cannot work
    Case(
        "live-heartbeat-nan",
        live("--heartbeat", "nan"),
        2,
        "--heartbeat nan is not allowed: give a number in (0, 3600]",
    ),
    Case("live-heartbeat-zero", live("--heartbeat", "0"), 2, "--heartbeat 0.0 is not allowed"),
    Case("live-threshold", live("--threshold", "2"), 2, "--threshold 2.0 is not allowed: give a number in [0, 1]"),
    Case("live-threshold-nan", live("--threshold", "nan"), 2, "--threshold nan is not allowed"),
    Case(
        "live-event-threshold",
        live("--event-threshold", "0"),
        2,
        "--event-threshold 0.0 is not allowed: give a number in (0, 1]",
    ),
    Case(
        "live-event-hysteresis",
        live("--event-hysteresis", "0.7"),
        2,
        "--event-hysteresis 0.7 must be below --event-threshold",
    ),
    Case("live-event-min-duration", live("--event-min-duration", "-1"), 2, "--event-min-duration -1.0 is not allowed"),
    Case("live-top-k", live("--top-k", "0"), 2, "--top-k 0 is not allowed: give an integer of at least 1"),
    Case("live-pose-every", live("--pose-every", "0"), 2, "--pose-every 0 is not allowed"),
    Case(
        "live-ring-slots", live("--ring-slots", "2"), 2, "--ring-slots 2 is not allowed: give an integer in [4, 100000]"
    ),
    Case("live-max-windows", live("--max-windows", "0"), 2, "--max-windows 0 is not allowed"),
    # clipmg-listen
    Case(
        "listen-endpoint",
        ("clipmg-listen", "--endpoint", "tcp://nowhere", "-n", "1"),
        2,
        "is not of the form tcp://HOST:PORT",
    ),
    Case(
        "listen-endpoint-port",
        ("clipmg-listen", "--endpoint", "tcp://127.0.0.1:99999", "-n", "1"),
        2,
        "port '99999' is not a number between 1 and 65535",
    ),
    Case(
        "listen-server-key",
        ("clipmg-listen", "--server-key", "short", "-n", "1"),
        2,
        "neither a certificate file nor a 40-character Z85 key",
    ),
    Case(
        "listen-client-cert",
        ("clipmg-listen", "--server-key", "x" * 40, "--client-cert", "{tmp}/none.key_secret", "-n", "1"),
        2,
        "no such file",
    ),
    Case("listen-count", ("clipmg-listen", "-n", "many"), 2, "invalid int value: 'many'", usage=True),
    Case(
        "listen-count-zero", ("clipmg-listen", "-n", "0"), 2, "--count 0 is not allowed: give an integer of at least 1"
    ),
    Case("listen-timeout-negative", ("clipmg-listen", "--timeout", "-1"), 2, "--timeout -1.0 is not allowed"),
    Case("listen-timeout-nan", ("clipmg-listen", "--timeout", "nan"), 2, "--timeout nan is not allowed"),
    Case("listen-timeout", ("clipmg-listen", "--endpoint", "{quiet}", "--timeout", "0.5"), 1, "nothing received"),
    Case(
        "listen-endpoint-twice",
        ("clipmg-listen", "--endpoint", "tcp://127.0.0.1:5556,tcp://127.0.0.1:5556", "-n", "1"),
        2,
        "--endpoint tcp://127.0.0.1:5556 is given twice",
    ),
    Case(
        "listen-endpoint-in-list",
        ("clipmg-listen", "--endpoint", "tcp://127.0.0.1:5556,tcp://nowhere", "-n", "1"),
        2,
        "'tcp://nowhere' is not of the form tcp://HOST:PORT",
    ),
    Case(
        "listen-server-key-count",
        ("clipmg-listen", "--endpoint", "{quiet},{busy},tcp://127.0.0.1:1", "--server-key", "x" * 40 + ",none"),
        2,
        "--server-key is given 2 times for 3 --endpoint endpoints",
    ),
    Case(
        "listen-server-key-in-list",
        ("clipmg-listen", "--endpoint", "{quiet},{busy}", "--server-key", "none,short", "-n", "1"),
        2,
        "--server-key 'short' is neither a certificate file nor a 40-character Z85 key",
    ),
    # clipmg-proxy
    Case("proxy-no-upstream", ("clipmg-proxy",), 2, "give at least one --upstream"),
    Case("proxy-upstream", ("clipmg-proxy", "--upstream", "tcp://nowhere"), 2, "is not of the form tcp://HOST:PORT"),
    Case(
        "proxy-remote",
        ("clipmg-proxy", "--upstream", "{quiet}", "--endpoint", "tcp://0.0.0.0:5599"),
        2,
        "is not a loopback address; other machines could subscribe. Pass --allow-remote",
    ),
    Case(
        "proxy-busy",
        ("clipmg-proxy", "--upstream", "{quiet}", "--endpoint", "{busy}"),
        2,
        "the address is already in use",
    ),
    Case(
        "proxy-server-key-count",
        ("clipmg-proxy", "--upstream", "{quiet},tcp://127.0.0.1:1", "--server-key", "x" * 40, "--server-key", "none")
        + ("--server-key", "none"),
        2,
        "--server-key is given 3 times for 2 --upstream endpoints",
    ),
    Case(
        "proxy-server-key",
        ("clipmg-proxy", "--upstream", "{quiet}", "--server-key", "short"),
        2,
        "neither a certificate file nor a 40-character Z85 key",
    ),
    Case(
        "proxy-client-cert",
        ("clipmg-proxy", "--upstream", "{quiet}", "--server-key", "x" * 40, "--client-cert", "{tmp}/none.key_secret"),
        2,
        "none.key_secret: no such file",
    ),
    Case(
        "proxy-curve-secret",
        ("clipmg-proxy", "--upstream", "{quiet}", "--curve-secret", "{tmp}/none.key_secret"),
        2,
        "does not exist",
    ),
    Case(
        "proxy-curve-allow",
        ("clipmg-proxy", "--upstream", "{quiet}", "--curve-allow", "{tmp}"),
        2,
        "--curve-allow needs --curve-secret",
    ),
    Case("proxy-hwm", ("clipmg-proxy", "--upstream", "{quiet}", "--hwm", "0"), 2, "--hwm 0 is not allowed"),
    Case("proxy-stats", ("clipmg-proxy", "--upstream", "{quiet}", "--stats", "nan"), 2, "--stats nan is not allowed"),
    # clipmg-predict
    Case("predict-missing", ("clipmg-predict", "{tmp}/none.mp4"), 2, "no such video file or folder"),
    Case("predict-top-k", ("clipmg-predict", "{imgs}", "--top-k", "0"), 2, "--top-k 0 is not allowed"),
    Case(
        "predict-threshold-nan", ("clipmg-predict", "{imgs}", "--threshold", "nan"), 2, "--threshold nan is not allowed"
    ),
    Case(
        "predict-pose-every",
        ("clipmg-predict", "{imgs}", "--stride", "8", "--pose-every", "0"),
        2,
        "--pose-every 0 is not allowed",
    ),
    Case("predict-threads", ("clipmg-predict", "{imgs}", "--threads", "0"), 2, "--threads 0 is not allowed"),
    Case(
        "predict-stride",
        ("clipmg-predict", "{imgs}", "--stride", "6"),
        2,
        "--stride 6 must be a positive multiple of 4",
    ),
    Case("predict-engine-onnx-file", ("clipmg-predict", "{imgs}", "--engine", "{onnx_file}"), 2, ONNX_ONLY),
    Case("predict-json-folder", ("clipmg-predict", "{imgs}", "--json", "{tmp}/none/out.jsonl"), 2, "does not exist"),
    # clipmg-export (checked before the checkpoint is loaded)
    Case(
        "export-opset",
        ("clipmg-export", "{ckpt5}", "{tmp}/e1", "--opset", "3"),
        2,
        "--opset 3 is not supported: give an ONNX opset from 14 to 23",
    ),
    Case(
        "export-opset-high", ("clipmg-export", "{ckpt5}", "{tmp}/e2", "--opset", "99"), 2, "--opset 99 is not supported"
    ),
    Case(
        "export-tolerance",
        ("clipmg-export", "{ckpt5}", "{tmp}/e3", "--tolerance", "-1"),
        2,
        "--tolerance -1.0 is not allowed: give a number of at least 0",
    ),
    Case("export-tolerance-nan", ("clipmg-export", "{ckpt5}", "{tmp}/e4", "--tolerance", "nan"), 2, "--tolerance nan"),
    Case("export-threads", ("clipmg-export", "{ckpt5}", "{tmp}/e5", "--threads", "0"), 2, "--threads 0 is not allowed"),
    Case(
        "export-int8-samples",
        ("clipmg-export", "{ckpt5}", "{tmp}/e6", "--int8-samples", "0"),
        2,
        "--int8-samples 0 is not allowed",
    ),
    Case(
        "export-num-classes",
        ("clipmg-export", "{ckpt5}", "{tmp}/e7", "--num-classes", "-3"),
        2,
        "--num-classes -3 is not allowed",
    ),
    Case("export-missing", ("clipmg-export", "{tmp}/none.safetensors", "{tmp}/e8"), 2, "does not exist"),
    # clipmg-build (checked before a GPU is looked for)
    Case(
        "build-max-batch",
        ("clipmg-build", "{ckpt5}", "{tmp}/b1", "--max-batch", "0"),
        2,
        "--max-batch 0 is not allowed",
    ),
    Case("build-opt-batch", ("clipmg-build", "{ckpt5}", "{tmp}/b2", "--opt-batch", "9"), 2, "opt_batch <= max_batch"),
    Case("build-max-windows", ("clipmg-build", "{ckpt5}", "{tmp}/b3", "--max-windows", "0"), 2, "--max-windows 0"),
    Case(
        "build-workspace", ("clipmg-build", "{ckpt5}", "{tmp}/b4", "--workspace-gib", "-1"), 2, "--workspace-gib -1.0"
    ),
    Case("build-tolerance", ("clipmg-build", "{ckpt5}", "{tmp}/b5", "--tolerance", "nan"), 2, "--tolerance nan"),
    Case("build-device", ("clipmg-build", "{ckpt5}", "{tmp}/b6", "--device", "-1"), 2, "--device -1 is not allowed"),
    Case("build-num-classes", ("clipmg-build", "{ckpt5}", "{tmp}/b7", "--num-classes", "0"), 2, "--num-classes 0"),
    Case("build-onnx-file", ("clipmg-build", "{onnx_file}", "{tmp}/b8"), 2, ONNX_ONLY),
    Case("build-missing", ("clipmg-build", "{tmp}/none", "{tmp}/b9"), 2, "does not exist"),
    # clipmg-bench (checked before torch is imported)
    Case("bench-repeats", ("clipmg-bench", "--repeats", "0"), 2, "--repeats 0 is not allowed"),
    Case("bench-threads", ("clipmg-bench", "--threads", "0"), 2, "--threads 0 is not allowed"),
    Case("bench-batches", ("clipmg-bench", "--batches", "1", "-3"), 2, "--batches -3 is not allowed"),
    Case("bench-preset", ("clipmg-bench", "--presets", "clipmg-nope"), 2, "unknown preset(s) clipmg-nope"),
    Case("bench-device", ("clipmg-bench", "--torch-device", "tpu"), 2, "--torch-device 'tpu' is not allowed"),
    Case("bench-json-folder", ("clipmg-bench", "--json", "{tmp}/none/b.json"), 2, "does not exist"),
]

SLOW = [
    # clipmg-synth
    Case("synth-not-empty", ("clipmg-synth", "{ds}", "--videos", "1"), 2, "is not empty"),
    Case("synth-odd-width", ("clipmg-synth", "{tmp}/s1", "--width", "161"), 2, "frame size must be even"),
    Case("synth-classes", ("clipmg-synth", "{tmp}/s2", "--classes", "juggle,fold arm"), 2, "unknown: ['juggle']"),
    Case("synth-videos", ("clipmg-synth", "{tmp}/s3", "--videos", "0"), 2, "at least one video"),
    # clipmg-data
    Case("data-missing", ("clipmg-data", "summary", "{tmp}/nowhere"), 2, "does not exist"),
    Case(
        "data-bad-label-strict", ("clipmg-data", "summary", "{ds_badlabels}", "--strict"), 2, "values must be integers"
    ),
    Case(
        "data-bad-json-strict", ("clipmg-data", "summary", "{ds_badjson}", "--strict"), 2, "cannot read OpenPose JSON"
    ),
    Case(
        "data-classes-file",
        ("clipmg-data", "summary", "{ds}", "--classes", "{one_class}"),
        2,
        "expected at least two class names",
    ),
    Case("data-evil-pickle", ("clipmg-data", "summary", "{evil_pkl}"), 2, "refusing to unpickle", forbid=("PWNED",)),
    # clipmg-train
    Case("train-no-data", ("clipmg-train", "--data", "{tmp}/nowhere", "--out", "{tmp}/r0"), 2, "does not exist"),
    Case(
        "train-epochs",
        ("clipmg-train", "--data", "{ds}", "--epochs", "0"),
        2,
        "--epochs must be an integer of at least 1",
    ),
    Case(
        "train-batch-text",
        ("clipmg-train", "--data", "{ds}", "--batch-size", "two"),
        2,
        "invalid int value",
        usage=True,
    ),
    Case(
        "train-preset",
        ("clipmg-train", "--data", "{ds}", "--out", "{tmp}/r1", "--preset", "clipmg-huge"),
        2,
        "unknown preset 'clipmg-huge'",
    ),
    Case("train-config", ("clipmg-train", "--config", "{bad_toml}"), 2, "is not valid TOML"),
    Case(
        "train-bad-json-strict",
        ("clipmg-train", "--data", "{ds_badjson}", "--out", "{tmp}/r3", "--strict"),
        2,
        "cannot read OpenPose JSON",
    ),
    Case(
        "train-evil-clip-weights",
        ("clipmg-train", "--data", "{ds}", "--out", "{tmp}/r4", "--pretrained", "{evil_pt}"),
        2,
        "refused",
        forbid=("PWNED",),
    ),
    Case("train-out-is-a-file", ("clipmg-train", "--data", "{ds}", "--out", "{one_class}"), 2, "exists"),
    Case(
        "train-resume-cut-checkpoint",
        ("clipmg-train", "--data", "{ds}", "--out", "{run_cut}", "--resume"),
        2,
        "truncated",
    ),
    Case(
        "train-resume-cut-state",
        ("clipmg-train", "--data", "{ds}", "--out", "{run_cut_state}", "--resume"),
        2,
        "cannot resume",
    ),
    Case(
        "train-resume-evil-state",
        ("clipmg-train", "--data", "{ds}", "--out", "{run_evil_state}", "--resume"),
        2,
        "cannot resume",
        forbid=("PWNED",),
    ),
    Case(
        "train-resume-other-variant",
        ("clipmg-train", "--data", "{ds}", "--out", "{run_ok}", "--resume", "--variant", "no_pose"),
        2,
        "does not match the requested configuration",
    ),
    # clipmg-eval
    Case("eval-cut-checkpoint", ("clipmg-eval", "{cut_ckpt}", "--data", "{ds}"), 2, "truncated"),
    Case("eval-other-classes", ("clipmg-eval", "{ckpt5}", "--data", "{ds}"), 2, "was trained on classes"),
    Case(
        "eval-split", ("clipmg-eval", "{ckpt4}", "--data", "{ds}", "--split", "test"), 2, "invalid choice", usage=True
    ),
    # clipmg-export
    Case("export-cut-checkpoint", ("clipmg-export", "{cut_ckpt}", "{tmp}/x1"), 2, "truncated or corrupt"),
    Case(
        "export-other-preset",
        ("clipmg-export", "{ckpt5}", "{tmp}/x2", "--preset", "clipmg-vitb32"),
        2,
        "'clipmg-vitb32' was requested",
    ),
    # run_live.py: problems found once the worker or the capture opens them
    Case("live-cut-checkpoint", live("--engine", "{cut_ckpt}", "--no-listen"), 2, "truncated or corrupt"),
    Case("live-cut-onnx", live("--engine", "{onnx_cut}", "--no-listen"), 2, "truncated or corrupt"),
    Case("live-trt-no-header", live("--engine", "{trt_junk}", "--no-listen"), 2, "not a clipmg TensorRT engine"),
    Case(
        "live-cut-video",
        live("--source", "{cut_mp4}", "--engine", "{ckpt5}", "--no-listen"),
        1,
        "cannot read the source: could not open video file",
    ),
    Case(
        "live-replay-missing",
        live("--pose", "replay", "--pose-option", "path={tmp}/none.npy", "--engine", "{ckpt5}", "--no-listen"),
        2,
        "replay needs a folder of OpenPose JSON files",
    ),
    Case(
        "live-replay-evil-npy",
        live("--pose", "replay", "--pose-option", "path={evil_npy}", "--engine", "{ckpt5}", "--no-listen"),
        2,
        "cannot read",
        forbid=("PWNED",),
    ),
    Case(
        "live-replay-bad-csv",
        live("--pose", "replay", "--pose-option", "path={bad_csv}", "--engine", "{ckpt5}", "--no-listen"),
        2,
        "replay:",
    ),
    Case(
        "live-pose-option",
        live("--pose", "synthetic", "--pose-option", "colour=red", "--engine", "{ckpt5}", "--no-listen"),
        2,
        "bad options for pose backend 'synthetic'",
    ),
]


# ------------------------------------------------------------------------------------ artifacts
def tiny_dataset(ds: Path) -> Path:
    """The small synthetic data set (3 videos, 3 clips each, TRAIN_CLASSES) the bad-input cases train on."""
    from clipmg.train.synth import SynthConfig, write_dataset

    write_dataset(
        ds,
        seed=3,
        videos=3,
        clips_per_video=3,
        config=SynthConfig(classes=TRAIN_CLASSES, clip_frames=(24, 32), gap_frames=(8, 12)),
    )
    return ds


def _make_artifacts(root: Path, with_engines: bool) -> Dict[str, str]:
    import torch

    a: Dict[str, Path] = {"tmp": root}
    (root / "short-token").write_text("tiny-tok\n")
    (root / "short-token").chmod(0o600)
    a["short_token"] = root / "short-token"
    a["ckpt5"] = tiny_checkpoint(root / "tiny5.safetensors", CLASSES)
    a["ckpt4"] = tiny_checkpoint(root / "tiny4.safetensors", TRAIN_CLASSES)
    data = a["ckpt5"].read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) // 2])
    a["cut_ckpt"] = root / "cut.safetensors"
    (root / "junk.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    a["junk_ckpt"] = root / "junk.safetensors"
    marker = root / "PWNED"
    a["marker"] = marker
    (root / "model.onnx").write_bytes(b"\x08\x07not-really-onnx")  # a graph file on its own, no export around it
    a["onnx_file"] = root / "model.onnx"
    import cv2

    (root / "imgs").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "imgs" / f"{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    a["imgs"] = root / "imgs"
    if not with_engines:
        return {k: str(v) for k, v in a.items()}

    a["ds"] = ds = tiny_dataset(root / "ds")
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
    (root / "evil.pkl").write_bytes(pickle.dumps({"split": {}, "annotations": [EvilPickle(marker)]}))
    a["evil_pkl"] = root / "evil.pkl"
    good = pickle.dumps({"split": {}, "annotations": []})
    (root / "cut.pkl").write_bytes(good[: len(good) // 2])
    a["cut_pkl"] = root / "cut.pkl"
    torch.save({"visual.conv1.weight": EvilPickle(marker)}, root / "evil.pt")
    a["evil_pt"] = root / "evil.pt"
    np.save(root / "evil.npy", np.array([EvilPickle(marker), 1], dtype=object), allow_pickle=True)
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
    torch.save({"optimizer": EvilPickle(marker)}, a["run_evil_state"] / "last.state.pt")
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

    onnx = export_onnx(a["ckpt5"], root / "onnx").out_dir
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
    if not exe.exists() and argv[0] in MODULES:  # a new console script, not in this install yet
        return [PY, "-m", MODULES[argv[0]], *argv[1:]]
    return [str(exe) if exe.exists() else argv[0], *argv[1:]]


def _run_all(cases: List[Case], arts: Dict[str, str]) -> Dict[str, subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def one(case: Case) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        r = subprocess.run(
            _command(case, arts),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=arts["tmp"],
            stdin=subprocess.DEVNULL,
        )
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
    arts["busy_port"] = arts["busy"].rsplit(":", 1)[1]
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
    noise = NOISE if case not in FAST else re.compile("(?!)")  # a fast case: nothing but its line
    lines = [line for line in r.stderr.splitlines() if line.strip() and not noise.match(line)]
    if case.usage:  # argparse: "usage: ..." (possibly wrapped over indented lines), then the error line
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    prefix = PREFIX[case.argv[0]]
    if case.argv[0] == "live" and case.rc == 1:  # a failed run, said by the running supervisor
        prefix = "[clipmg-live] "
    if case.usage:
        prefix += "error: "
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


# ------------------------------------------------------------------------------------ internal errors
# (command, module, the name an early step of its main goes through): a RuntimeError planted there
# stands for a bug in clipmg, which no user input triggers on purpose.
BUG_PATHS = [
    ("clipmg-live", "clipmg.stream.supervisor", "config_from_args"),
    ("clipmg-listen", "clipmg.stream.listen", "options_from_args"),
    ("clipmg-proxy", "clipmg.stream.proxy", "options_from_args"),
    ("clipmg-predict", "clipmg.stream.predict", "_check"),
    ("clipmg-export", "clipmg.engines.export", "options_from_args"),
    ("clipmg-build", "clipmg.engines.build", "options_from_args"),
    ("clipmg-bench", "clipmg.bench.engines", "check_number"),
]


def _bug(*_a, **_k):
    raise RuntimeError("planted bug\nsecond line")


@pytest.mark.parametrize("prog,module,name", BUG_PATHS, ids=[b[0] for b in BUG_PATHS])
def test_an_internal_error_exits_1_with_one_line_naming_its_log_file(
    prog: str, module: str, name: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    import importlib
    import io

    mod = importlib.import_module(module)
    monkeypatch.setenv("CLIPMG_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(mod, name, _bug)
    argv = {
        "clipmg-predict": [str(tmp_path), "-v"],  # -v: in-process, descriptor 2 must stay as it is
        "clipmg-export": ["a.safetensors", "o"],
        "clipmg-build": ["a", "o"],
    }.get(prog, [])
    out = io.StringIO()
    rc = mod.main(argv, out=out) if prog == "clipmg-live" else mod.main(argv)
    err = out.getvalue() + capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: internal error (RuntimeError: planted bug second line)"), (
        err
    )
    logs = list((tmp_path / "logs").glob(f"{prog}-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0], (err, logs)
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: planted bug" in text and "_bug" in text


def test_run_command_applies_the_convention(tmp_path: Path, monkeypatch) -> None:
    import io

    from clipmg.model.errors import ClipmgError, run_command
    from clipmg.stream.config import ConfigError

    monkeypatch.setenv("CLIPMG_LOG_DIR", str(tmp_path))
    out = io.StringIO()

    def user() -> int:
        raise ConfigError("--x 3 is not allowed:\ngive 1 or 2")

    assert (
        run_command("clipmg-x", user, out=out) == 2
        and out.getvalue() == "clipmg-x: --x 3 is not allowed: give 1 or 2\n"
    )
    out = io.StringIO()
    assert run_command("clipmg-x", lambda: [][1], out=out) == 1
    (log,) = tmp_path.glob("clipmg-x-*.log")
    assert out.getvalue().count("\n") == 1 and str(log) in out.getvalue() and "IndexError" in log.read_text()
    # every user-fixable error class of the live side and the engines is a ClipmgError (and keeps its old base)
    from clipmg.engines import EngineError
    from clipmg.engines.build import BuildFailed, EnvironmentMissing
    from clipmg.engines.export import ExportCheckError
    from clipmg.stream.pose_base import PoseBackendError
    from clipmg.stream.predict import PredictError
    from clipmg.stream.publisher import PublisherError
    from clipmg.stream.sources import SourceOpenError
    from clipmg.stream.worker import FatalWorkerError

    for cls, base in (
        (EngineError, ValueError),
        (ExportCheckError, ValueError),
        (EnvironmentMissing, ValueError),
        (BuildFailed, ValueError),
        (ConfigError, ValueError),
        (PredictError, ValueError),
        (SourceOpenError, RuntimeError),
        (PublisherError, RuntimeError),
        (PoseBackendError, RuntimeError),
        (FatalWorkerError, RuntimeError),
    ):
        assert issubclass(cls, ClipmgError) and issubclass(cls, base), cls


def test_run_command_sets_up_the_one_logging_and_leaves_nothing_behind() -> None:
    """What a command says (an INFO record of a clipmg logger) is ``[prog] message``; warnings keep the
    diagnostic format; other libraries' INFO and clipmg's DEBUG stay hidden (DEBUG shows with -v); and
    the handler and levels are as they were afterwards (model/logs.py)."""
    import io
    import logging

    from clipmg.model.errors import run_command
    from clipmg.model.logs import set_verbose

    root, own = logging.getLogger(), logging.getLogger("clipmg")
    before = (list(root.handlers), root.level, own.level)
    log = logging.getLogger("clipmg.stream.somewhere")

    def body(verbose: bool) -> None:
        set_verbose(verbose)
        log.info("said %d thing", 1)
        log.debug("a detail")
        logging.getLogger("some.library").info("library chatter")
        log.warning("careful")

    out = io.StringIO()
    assert run_command("clipmg-x", lambda: body(False), out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "[clipmg-x] said 1 thing", lines
    assert re.match(r"^\d{4}-\d\d-\d\d \S+ clipmg\.stream\.somewhere WARNING careful$", lines[1]), lines
    out = io.StringIO()
    assert run_command("clipmg-x", lambda: body(True), out=out) == 0
    assert "clipmg.stream.somewhere DEBUG a detail" in out.getvalue() and "library chatter" not in out.getvalue()
    assert (list(root.handlers), root.level, own.level) == before


def test_tool_flags_are_generated_from_their_options() -> None:
    """Each tool's parser is generated from its options dataclass: defaults equal the dataclass's, the
    flags that feed a field (--no-timing-cache, --no-check, --no-pose-cache, --pretty) land in it, and
    the exclusive groups stay exclusive."""
    from clipmg.engines import build, export
    from clipmg.stream import listen, predict

    opts, expect = build.options_from_args(build.build_parser().parse_args(["s", "o"]))
    assert opts == build.BuildOptions() and expect.as_dict() == {}
    argv = ["s", "o", "--no-timing-cache", "--no-check", "--num-classes", "5", "--precision", "fp32"]
    opts, expect = build.options_from_args(build.build_parser().parse_args(argv))
    assert (opts.timing_cache, opts.check, opts.precision, expect.as_dict()) == ("", False, "fp32", {"num_classes": 5})
    opts, expect = export.options_from_args(export.build_parser().parse_args(["c", "o"]))
    assert opts == export.ExportOptions() and expect.as_dict() == {}
    opts, _ = export.options_from_args(
        export.build_parser().parse_args(["c", "o", "--no-pose-cache", "--variant", "full"])
    )
    assert opts.pose_cache is False and _.as_dict() == {"variant": "full"}
    lo = listen.options_from_args(listen.build_parser().parse_args(["--pretty", "-n", "3", "--topic", "mg.event"]))
    assert (lo.pretty, lo.raw, lo.count, lo.topic) == (True, False, 3, ("mg.event",))
    po = predict.PredictOptions.from_args(predict.build_parser().parse_args(["v.mp4", "--stride", "8", "--json", "-"]))
    assert (po.stride, po.json_out, po.top_k, po.pose) == (8, "-", 3, "mediapipe")
    for parser, argv in (
        (listen.build_parser(), ["--raw", "--pretty"]),
        (predict.build_parser(), ["v.mp4", "--segments", "s.csv", "--stride", "8"]),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


# ------------------------------------------------------------------------------------ properties (in-process)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True))


def _ranged_stream_fields() -> Dict[str, object]:
    """Every ``StreamConfig`` field declared with a numeric range (model/settings.py ``Range``)."""
    import dataclasses

    from clipmg.model.settings import Range
    from clipmg.stream.config import StreamConfig

    return {f.name: f for f in dataclasses.fields(StreamConfig) if isinstance(f.metadata.get("allowed"), Range)}


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(_ranged_stream_fields())), value=numbers)
def test_every_numeric_setting_is_refused_outside_its_range_and_kept_inside(field: str, value) -> None:
    import math

    from clipmg.model.settings import base_type, flag_of
    from clipmg.stream.config import ConfigError, StreamConfig

    f = _ranged_stream_fields()[field]
    (lo, hi, open_), flag, integer = f.metadata["allowed"], flag_of(f), base_type(f) == "int"
    assert open_ in ("", "lo"), "this test knows closed upper ends only"
    inside = (
        math.isfinite(value)
        and (not integer or float(value).is_integer())
        and (value > lo if open_ == "lo" else value >= lo)
        and value <= hi
    )
    base = dict(ring_slots=4000, max_restarts=5) if field == "pose_every" else {}
    try:
        StreamConfig(**{**base, field: value}).validate()
    except ConfigError as e:
        assert "\n" not in str(e)
        if not inside:
            assert str(e).startswith(f"{flag} ") and "is not allowed" in str(e), e
        else:  # inside its own range, refused by a rule that ties it to another setting
            assert field in ("stride", "event_hysteresis", "event_threshold", "ring_slots", "pose_every"), (field, e)
    else:
        assert inside, (field, value)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda s, h, p: f"{s}://{h}:{p}",
            st.sampled_from(["tcp", "ipc", "inproc", "udp", ""]),
            st.sampled_from(["127.0.0.1", "", "[::1]", "*", "h"]),
            st.one_of(st.integers(-5, 70000).map(str), st.text(max_size=4)),
        ),
    )
)
def test_an_endpoint_is_either_accepted_as_valid_or_refused_in_one_sentence(text: str) -> None:
    from clipmg.stream.config import ConfigError, parse_endpoint

    try:
        scheme, host, port = parse_endpoint(text)
    except ConfigError as e:
        assert "\n" not in str(e) and "endpoint" in str(e)
        return
    assert scheme in ("tcp", "ipc", "inproc") and host
    assert scheme != "tcp" or (port is not None and 1 <= port <= 65535)


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from(["synthetic", "0", "rtsp://cam/live", "clip.mp4"]),
    key=st.sampled_from(["fps", "loop", "pace", "width", "max_frames", "colour", "read_timeout_s", "api"]),
    value=st.one_of(numbers, st.booleans(), st.text(max_size=6)),
)
def test_a_source_option_is_either_typed_or_refused_in_one_sentence(source: str, key: str, value) -> None:
    import math

    from clipmg.stream.config import (
        CAPTURE_SOURCE_OPTIONS,
        MAX_FPS,
        SOURCE_OPTIONS,
        ConfigError,
        normalize_source_options,
        source_kind,
    )

    try:
        ((k, v),) = normalize_source_options(source, [(key, value)])
    except ConfigError as e:
        assert "\n" not in str(e) and key in str(e)
        return
    assert k in CAPTURE_SOURCE_OPTIONS + SOURCE_OPTIONS[source_kind(source)]
    if k in ("loop", "pace"):
        assert isinstance(v, bool)
    if k == "fps":
        assert math.isfinite(v) and 0 < v <= MAX_FPS
    if k in ("width", "max_frames"):
        assert isinstance(v, int) and v >= 1


def test_proxy_bad_server_key_is_told_before_a_busy_port():
    """A bad --server-key is one sentence even while the consumers' port is taken: keys are read
    before anything binds (a CI run once got the busy-port sentence instead)."""
    import zmq

    ctx = zmq.Context()
    busy = ctx.socket(zmq.PUB)
    try:
        port = busy.bind_to_random_port("tcp://127.0.0.1")
        argv = ["--upstream", "tcp://127.0.0.1:1", "--server-key", "short", "--endpoint", f"tcp://127.0.0.1:{port}"]
        p = subprocess.run(
            [sys.executable, "-m", "clipmg.stream.proxy", *argv], capture_output=True, text=True, timeout=120
        )
    finally:
        busy.close(0)
        ctx.term()
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "neither a certificate file nor a 40-character Z85 key" in p.stderr
