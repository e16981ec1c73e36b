"""``clipmg-record`` and ``clipmg-train --init/--freeze``: teaching the model one's own gestures.

End to end (slow, real subprocesses): a real iMiGUE GIF stands in for the camera with a scripted
schedule; the recording is read back by ``clipmg-data``; ``clipmg-train --init demo`` fine-tunes on
it; ``clipmg-predict`` answers with a label of the recorded class list. Faster: the recorder on the
synthetic source (its exact keypoints, no MediaPipe), Ctrl-C keeping the finished takes, bad input
(one line, exit 2, nothing written), and the weight matching of ``--init`` on tiny models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from clipmg.stream.record import parse_classes, parse_schedule
from clipmg.stream.record_layout import RecordError

PY = sys.executable
GIF = "imigue-clips/folding-arms.gif"  # play things 0-17, fold arm 18-42 (../shared/data/README.md)
SCHEDULE = "play things=0-17,fold arm=18-42"


def run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )


def record(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run("clipmg.stream.record", *args, timeout=timeout)


def one_line_refusal(p: subprocess.CompletedProcess, words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("clipmg-record: "), p.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------ parsing
def test_classes_from_a_list_or_a_file(tmp_path: Path) -> None:
    assert parse_classes(" wave , thumbs up ") == ["wave", "thumbs up"]
    f = tmp_path / "mine.txt"
    f.write_text("wave\n\nthumbs up\n")
    assert parse_classes(str(f)) == ["wave", "thumbs up"]
    with pytest.raises(RecordError, match="no such class file"):
        parse_classes(str(tmp_path / "missing.txt"))
    with pytest.raises(RecordError, match="named twice"):
        parse_classes("wave,wave")


def test_schedule_names_every_gesture_once() -> None:
    assert parse_schedule("a=0-9, b=10-12", ["a", "b"]) == {"a": (0, 9), "b": (10, 12)}
    with pytest.raises(RecordError, match="no frames for b"):
        parse_schedule("a=0-9", ["a", "b"])
    with pytest.raises(RecordError, match="not one of the gestures"):
        parse_schedule("a=0-9,c=1-2", ["a", "b"])
    with pytest.raises(RecordError, match="START <= END"):
        parse_schedule("a=9-0,b=1-2", ["a", "b"])


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "case,words",
    [
        ("class-file", "no such class file"),
        ("not-empty", "is not empty"),
        ("under-a-file", "is a file"),
        ("unwritable", "cannot write there"),
        ("bad-source", "no such video file"),
        ("schedule-on-camera", "--schedule needs a file --source"),
        ("one-class", "two classes at least"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(tmp_path: Path, case: str, words: str) -> None:
    out = tmp_path / "rec"
    base = ["--source", "synthetic", "--pose", "synthetic", "--no-prompt", "--countdown", "0", "--rest", "0"]
    args = {
        "class-file": ["--classes", str(tmp_path / "nope.txt"), "--out", str(out)],
        "not-empty": ["--classes", "a,b", "--out", str(tmp_path)],
        "under-a-file": ["--classes", "a,b", "--out", str(tmp_path / "f" / "rec")],
        "unwritable": ["--classes", "a,b", "--out", "/proc/clipmg-record-test"],
        "bad-source": ["--classes", "a,b", "--out", str(out), "--source", str(tmp_path / "none.mp4")],
        "schedule-on-camera": ["--classes", "a,b", "--out", str(out), "--source", "0", "--schedule", "a=0-1,b=2-3"],
        "one-class": ["--classes", "a", "--no-idle", "--out", str(out)],
    }[case]
    (tmp_path / "f").write_text("a file")
    if case == "not-empty":
        (tmp_path / "x").write_text("something")
    p = record(*base, *args, timeout=60)
    one_line_refusal(p, words)
    assert not out.exists()  # nothing written


# ------------------------------------------------------------------------------------ recording
def test_synthetic_recording_is_read_back_and_appended(tmp_path: Path) -> None:
    """Two rounds of two gestures plus 'no gesture' from the synthetic source, read by the training index;
    --append adds a third round; another gesture list is refused."""
    from clipmg.train.index import build_index

    out = tmp_path / "rec"
    common = ["--source", "synthetic", "--pose", "synthetic", "--no-prompt", "--seconds", "0.6", "--out", str(out)]
    p = record("--classes", "wave,nod", "--takes", "2", "--countdown", "0.2", "--rest", "0.2", *common, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "clipmg-train holds out round r00" in p.stdout
    assert (out / "classes.txt").read_text().split("\n")[:3] == ["wave", "nod", "no gesture"]
    index = build_index(out, "openpose_json")
    assert index.class_names == ("wave", "nod", "no gesture")
    assert index.videos == ["r001", "r002"] and index.class_counts() == [2, 2, 2]
    assert not index.issues.counts
    fps = index.sources["r001"].rgb.fps  # type: ignore[union-attr]
    take = round(0.6 * fps)
    assert {c.length for c in index.clips} == {take}
    # the countdown and rest frames are unlabelled spans: a --background index mines them
    assert index.sources["r001"].num_frames == 3 * (take + 2 * round(0.2 * fps))
    meta = json.loads((out / "recording.json").read_text())
    assert all(t["person"] == t["end"] - t["start"] + 1 for r in meta["rounds"] for t in r["takes"])
    p = record("--classes", "wave,nod", "--takes", "1", "--countdown", "0", "--rest", "0", "--append", *common)
    assert p.returncode == 0, p.stderr
    assert build_index(out, "openpose_json").videos == ["r001", "r002", "r003"]
    p = record("--classes", "wave,clap", "--append", *common)
    one_line_refusal(p, "records the gestures wave, nod, no gesture")


def test_ctrl_c_keeps_the_finished_takes(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    proc = subprocess.Popen(
        [PY, "-m", "clipmg.stream.record", "--classes", "wave,nod", "--takes", "500", "--seconds", "0.4"]
        + ["--countdown", "0", "--rest", "0", "--source", "synthetic", "--pose", "synthetic", "--no-prompt"]
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 60
        while not (out / "r002" / "r002_label.csv").exists() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.05)
        assert (out / "r002" / "r002_label.csv").exists(), "two rounds were never written"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "clipmg-record: interrupted" in stderr and "Traceback" not in stderr
    assert "recorded " in stdout  # the summary still comes
    meta = json.loads((out / "recording.json").read_text())
    for r in meta["rounds"]:  # every round in the summary is a complete, readable round
        rows = (out / r["round"] / f"{r['round']}_label.csv").read_text().splitlines()
        assert len(rows) == len(r["takes"]) >= 1
    from clipmg.train.index import build_index

    assert len(build_index(out, "openpose_json").videos) == len(meta["rounds"]) >= 2


# ------------------------------------------------------------------------------------ --init, --freeze
def _model(classes: List[str], seed: int, **over: object):  # type: ignore[no-untyped-def]
    import torch

    from clipmg.model import create_model

    torch.manual_seed(seed)
    return create_model("clipmg-tiny", num_classes=len(classes), **over)


def test_init_keeps_matching_weights_and_known_class_rows(tmp_path: Path) -> None:
    import torch

    from clipmg.model.checkpoint import save_checkpoint
    from clipmg.train.finetune import apply_freeze, init_from_checkpoint, output_layer

    old = ["touch chin", "fold arm", "no gesture"]
    src = _model(old, seed=1)
    path = save_checkpoint(tmp_path / "src.safetensors", src, old)
    new = ["wave", "no gesture"]
    dst = _model(new, seed=2)
    fresh = output_layer(dst).weight.detach().clone()
    line = init_from_checkpoint(dst, str(path), new)
    assert "re-initialised" in line and "1 of 2 classes kept their row" in line and "new: wave" in line
    s, d = src.state_dict(), dst.state_dict()
    head = {"classifier.3.weight", "classifier.3.bias"}
    assert all(torch.equal(s[k], d[k]) for k in d if k not in head)
    w = output_layer(dst).weight
    assert torch.equal(w[1], output_layer(src).weight[2])  # no gesture: its old row
    assert torch.equal(w[0], fresh[0])  # wave: new, as initialised
    same = _model(old, seed=3)
    assert "all" in init_from_checkpoint(same, str(path), old)
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in s.items())
    # what trains under each --freeze
    total = {k: apply_freeze(_model(new, seed=0), k) for k in ("preset", "tower", "all-but-head")}
    head_params = sum(p.numel() for p in dst.classifier.parameters())
    assert total["preset"] > total["tower"] > total["all-but-head"] == head_params


def test_init_refuses_another_preprocessing_in_one_sentence(tmp_path: Path) -> None:
    from clipmg.model.checkpoint import CheckpointError, save_checkpoint
    from clipmg.model.config import PreprocessConfig
    from clipmg.train.finetune import init_from_checkpoint

    src = _model(["a", "b"], seed=0, preprocess=PreprocessConfig(crop="person", person_scale=1.1))
    path = save_checkpoint(tmp_path / "src.safetensors", src, ["a", "b"])
    with pytest.raises(CheckpointError, match="train with --crop person --person-scale 1.1"):
        init_from_checkpoint(_model(["a", "b"], seed=0), str(path), ["a", "b"])


def test_train_init_bad_input_is_refused_before_any_data(tmp_path: Path) -> None:
    for args, words in [
        (["--init", "demo", "--pretrained", "openai"], "give --init or --pretrained, not both"),
        (["--init", str(tmp_path / "none.safetensors")], "no such checkpoint file"),
        (["--init", "demo"], "train with --crop person --person-scale 1.1"),
        (["--freeze", "everything"], "--freeze must be one of preset, tower, all-but-head"),
    ]:
        p = run("clipmg.train.trainer", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "o"), *args)
        assert p.returncode == 2, (args, p.stderr[-2000:])
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("clipmg-train: ") and words in last, (args, p.stderr)
        assert "Traceback" not in p.stderr and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_record_finetune_predict_end_to_end(tmp_path: Path, shared_data: Path) -> None:
    """A real GIF as the camera -> clipmg-record -> clipmg-data -> clipmg-train --init demo -> clipmg-predict."""
    out, run_dir = tmp_path / "rec", tmp_path / "run"
    p = record(
        "--classes", "play things,fold arm", "--no-idle", "--takes", "2", "--source", str(shared_data / GIF),
        "--schedule", SCHEDULE, "--no-prompt", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "play things      2      36    100%" in p.stdout  # MediaPipe finds the person in every frame
    p = run("clipmg.train.summary", "summary", str(out), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert [(c["name"], c["clips"]) for c in s["classes"]] == [("play things", 2), ("fold arm", 2)]
    assert s["videos"] == 2 and s["sources_with_rgb"] == 2 and s["skipped"] == {}
    p = run(
        "clipmg.train.trainer", "--data", str(out), "--out", str(run_dir), "--init", "demo", "--crop", "person",
        "--person-scale", "1.1", "--freeze", "tower", "--epochs", "2", "--batch-size", "4", "--lr-new", "2e-3",
        "--device", "cpu", "--threads", "2",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 of 2 classes kept their row" in p.stderr and "--freeze tower" in p.stderr
    ckpt = run_dir / "best.safetensors"
    assert ckpt.is_file()
    p = run("clipmg.stream.predict", str(out / "r002" / "r002.mp4"), "--engine", str(ckpt), "--json", "-")
    assert p.returncode == 0, p.stderr[-2000:]
    answers = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
    assert answers and all(a["topk"][0]["label"] in ("play things", "fold arm") for a in answers)
