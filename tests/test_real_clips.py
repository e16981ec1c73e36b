"""Acceptance on real people: the shared real iMiGUE GIFs through ``run_live.py`` and ``clipmg-predict``.

From a fresh start, as a user runs them: ``run_live.py --pose mediapipe --source <gif>`` with the
built-in demo model publishes windows that a real subscriber process (``clipmg-listen
--until-stopped``, which exits by itself on the publisher's final status) receives; the file plays
from its first frame (nothing lost while the model and MediaPipe load) and a clip shorter than one
window still gets its whole-clip window. ``clipmg-predict`` answers once per labelled segment.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import pytest
from live_harness import RUN_LIVE, endpoint

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SCHEMA = json.loads((REPO / "docs" / "zmq-schema.json").read_text())
NOISE = ("W0000", "I0000", "INFO: Created TensorFlow Lite", "absl::InitializeLog")

pytestmark = pytest.mark.slow


def _clips(shared_data: Path) -> Path:
    d = shared_data / "imigue-clips"
    if not (d / "labels.csv").is_file():
        pytest.skip(f"the real clips are not at {d}")
    return d


def _run_live(gif: Path, ep: str, *extra: str) -> tuple:
    """run_live.py on ``gif`` with a subscriber process started first; returns (messages, run_live stderr, rc's)."""
    listener = subprocess.Popen(
        [PY, "-m", "clipmg.stream.listen", "--endpoint", ep, "--raw", "--until-stopped", "--timeout", "240"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        live = subprocess.run(
            [
                PY,
                str(RUN_LIVE),
                "--source",
                str(gif),
                "--pose",
                "mediapipe",
                "--endpoint",
                ep,
                *([] if "--record" in extra else ["--no-record"]),
                "--no-listen",
                "--duration",
                "0",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        out, err = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
    msgs: List[tuple] = []
    for line in out.splitlines():
        top, _, payload = line.partition(" ")
        msgs.append((top, json.loads(payload)))
    return msgs, live, listener.returncode, err


@pytest.mark.parametrize("name,first_window", [("folding-arms.gif", "stream"), ("covering-face.gif", "whole_clip")])
def test_run_live_on_a_real_gif_publishes_windows_with_a_person(
    shared_data: Path, name: str, first_window: str
) -> None:
    gif = _clips(shared_data) / name
    msgs, live, listener_rc, listener_err = _run_live(gif, endpoint())
    assert live.returncode == 0, live.stderr[-2000:]
    assert listener_rc == 0, f"clipmg-listen --until-stopped did not exit 0: {listener_err[-500:]}"
    for _, m in msgs:
        jsonschema.validate(m, SCHEMA)
    windows = [m for t, m in msgs if t.startswith("mg.window.")]
    assert windows, f"no window received; run_live said:\n{live.stderr[-2000:]}"
    assert any(w["person"] for w in windows)
    final = [m for t, m in msgs if t.startswith("mg.status.")][-1]
    assert final["state"] == "stopped" and final["dropped_frames"] == 0 and final["skipped"] == 0
    if first_window == "stream":  # 43 frames at Δp = 1, S = 8: windows 0-31 and 8-39, nothing lost before them
        assert [(w["frames"]["first_seq"], w["frames"]["last_seq"]) for w in windows] == [(0, 31), (8, 39)]
        # the demo's ONNX export runs the pose-branch cache in the worker run_live.py starts: 2 + 4 + 6 new steps
        assert [w["computed"].get("pose_stage_inputs") for w in windows] == [24, 12]
    else:  # 23 frames: shorter than one window, one window over the whole clip
        assert len(windows) == 1 and windows[0]["frames"]["sampling"] == "whole_clip"
        assert (windows[0]["frames"]["first_seq"], windows[0]["frames"]["last_seq"]) == (0, 22)
    # quiet by default: none of MediaPipe's / TFLite's / absl's start-up chatter
    assert not [ln for ln in live.stderr.splitlines() if any(n in ln for n in NOISE)], live.stderr


def test_two_pose_workers_on_a_real_gif_publish_the_same_windows_and_record_in_order(
    shared_data: Path, tmp_path: Path
) -> None:
    """--pose-workers 2: two MediaPipe instances estimate samples side by side; the same windows come
    out (with a person), every sample is posed once, and the recording's frames are in source order
    although the two threads finish out of order (each recorded frame is matched to its source frame)."""
    import cv2
    import numpy as np

    from clipmg.stream.predict import count_frames, read_frames

    gif = _clips(shared_data) / "folding-arms.gif"
    video = tmp_path / "two.mp4"
    msgs, live, listener_rc, _ = _run_live(gif, endpoint(), "--pose-workers", "2", "--record", str(video))
    assert live.returncode == 0 and listener_rc == 0, live.stderr[-2000:]
    windows = [m for t, m in msgs if t.startswith("mg.window.")]
    assert [(w["frames"]["first_seq"], w["frames"]["last_seq"]) for w in windows] == [(0, 31), (8, 39)]
    assert all(w["person"] for w in windows)
    final = [m for t, m in msgs if t.startswith("mg.status.")][-1]
    assert final["dropped_frames"] == 0 and final["skipped"] == 0
    n = count_frames(gif)
    src = read_frames(gif, range(n))
    small = np.stack([cv2.resize(src[i].image, (150, 84)).astype(np.float32) for i in range(n)])
    cap = cv2.VideoCapture(str(video))
    order = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        f = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (150, 84)).astype(np.float32)
        order.append(int(((small - f) ** 2).mean(axis=(1, 2, 3)).argmin()))
    cap.release()
    # the first 8 frames measure the frame rate; a busy annotator drops frames rather than slow the
    # worker (on a loaded machine it does), and the status counts them
    dropped = final["worker"]["annotation_dropped"]
    assert len(order) >= 8 and len(order) + dropped >= n - 12, f"{len(order)} recorded + {dropped} dropped of {n}"
    assert order == sorted(order) and len(set(order)) == len(order), order


def test_clipmg_predict_answers_each_labelled_segment(shared_data: Path, tmp_path: Path) -> None:
    d = _clips(shared_data)
    rows = list(csv.DictReader(open(d / "labels.csv", newline="")))
    for name in ("covering-face.gif", "folding-arms.gif"):
        out = tmp_path / f"{name}.jsonl"
        r = subprocess.run(
            [PY, "-m", "clipmg.stream.predict", str(d / name), "--segments", str(d / "labels.csv"), "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        got = [json.loads(line) for line in out.read_text().splitlines()]
        want = [row for row in rows if row["clip"] == name]
        assert [(g["start_frame"], g["end_frame"], g["true_label"]) for g in got] == [
            (int(w["start_frame"]), int(w["end_frame"]), w["class_name"]) for w in want
        ]
        for g in got:
            ps = [t["p"] for t in g["topk"]]
            assert len(ps) == 3 and ps == sorted(ps, reverse=True) and 0 < ps[-1] and sum(ps) <= 1 + 1e-5
            assert g["person_fraction"] > 0.5 and g["label"] == g["topk"][0]["label"]
        assert len(r.stdout.splitlines()) == len(want)  # one text line per segment too
        assert not [ln for ln in r.stderr.splitlines() if any(n in ln for n in NOISE)], r.stderr


@pytest.mark.parametrize(
    "args,words",
    [
        (["missing.mp4"], "no such video file"),
        (["{gif}", "--segments", "{csv}", "--stride", "8"], "not allowed with"),
        (["{gif}", "--stride", "6"], "multiple of 4"),
        (["{gif}", "--segments", "{bad}"], "has no rows for clip"),
    ],
)
def test_clipmg_predict_refuses_bad_input_in_one_line(
    shared_data: Path, tmp_path: Path, args: List[str], words: str
) -> None:
    d = _clips(shared_data)
    bad = tmp_path / "other.csv"
    bad.write_text("clip,start_frame,end_frame\nelse.gif,0,3\n")
    fill: Dict[str, Any] = {"gif": d / "folding-arms.gif", "csv": d / "labels.csv", "bad": bad}
    r = subprocess.run(
        [PY, "-m", "clipmg.stream.predict", *[a.format(**fill) for a in args]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr
