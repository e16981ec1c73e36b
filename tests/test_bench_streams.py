"""The multi-stream benchmark (``bench/streams.py``): its pure logic (the windows due, percentiles,
skipped windows, the verdict, the largest sustained N, the report), its command lines, the process
group it always stops, and one short real run of one camera through ``run_live.py``."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import tomllib

from clipmg.bench.procs import Processes, free_ports
from clipmg.bench.streams import (
    MODES,
    Got,
    batched_command,
    busy_share,
    expected_windows,
    largest_sustained,
    main,
    markdown,
    percentile,
    preset_summary,
    process_commands,
    skipped_between,
    streams_toml,
    summarize,
    summary_cells,
    verdict,
)

PERIOD = 32 / 30  # seconds between one stream's windows at 30 fps, Δp = 4, S = 8


def windows(stream: str, until: float, latency: float = 50.0, skipped_at: Dict[int, int] | None = None) -> List[Got]:
    """One stream's window messages every PERIOD s up to ``until``; ``skipped_at``: window -> the
    worker's skipped count from that window on."""
    out, sk = [], 0
    for w in range(int(until / PERIOD)):
        sk = (skipped_at or {}).get(w, sk)
        out.append(Got(t=(w + 1) * PERIOD, stream=stream, window=w, skipped=sk, latency_ms=latency))
    return out


def test_windows_due_are_one_every_pose_every_times_stride_frames() -> None:
    assert expected_windows(1.0) == pytest.approx(30 / 32)
    assert expected_windows(64.0) == pytest.approx(60.0)
    assert expected_windows(10.0, fps=25, pose_every=2, stride=4) == pytest.approx(31.25)


def test_percentile_ignores_what_is_not_finite() -> None:
    assert percentile([], 99) is None and percentile([math.nan], 50) is None
    assert percentile([1.0, 2.0, 3.0, math.inf], 50) == 2.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)


def test_skipped_counts_increments_inside_the_interval_only() -> None:
    got = windows("cam0", 40.0, skipped_at={3: 2, 20: 5, 30: 1})  # 2 in warm-up, +3 at 20, restart at 30: 1
    t0 = 10 * PERIOD  # window 9 onwards; skipped was already 2 before it
    assert skipped_between(got, t0, 40.0) == 3 + 1
    assert skipped_between(got, 0.0, 40.0) == 2 + 3 + 1
    assert skipped_between(got, t0, 20 * PERIOD) == 0  # window 20 arrives at 21 * PERIOD
    assert skipped_between([], 0.0, 1.0) == 0


def test_summary_counts_the_measured_interval_of_every_stream() -> None:
    got = sorted(windows("cam0", 50.0, 40.0) + windows("cam1", 50.0, 120.0), key=lambda g: g.t)
    got.append(Got(t=20.0, stream="other", window=0, skipped=9, latency_ms=9999.0))  # not one of ours
    s = summarize(got, ["cam0", "cam1"], 10.0, 42.0)
    assert s["windows_due_per_stream"] == pytest.approx(30.0)
    assert s["per_stream"]["cam0"]["windows"] == s["per_stream"]["cam1"]["windows"] == 30
    assert s["windows"] == 60 and s["skipped"] == 0
    assert s["latency_p50_ms"] == pytest.approx(80.0) and s["latency_p99_ms"] == pytest.approx(120.0)
    assert s["worst_stream_p99_ms"] == pytest.approx(120.0)
    assert s["lowest_share"] == pytest.approx(1.0)
    assert verdict(s) == []


def test_verdict_names_each_way_a_run_is_not_sustained() -> None:
    ok = windows("cam0", 50.0)
    assert verdict(summarize(ok, ["cam0"], 10.0, 42.0)) == []
    slow = summarize(windows("cam0", 50.0, 251.0), ["cam0"], 10.0, 42.0)
    assert verdict(slow) == ["p99 251 ms > 250 ms"]
    late = summarize(windows("cam0", 50.0, skipped_at={20: 1}), ["cam0"], 10.0, 42.0)
    assert verdict(late) == ["1 windows skipped"]
    missing = summarize(ok, ["cam0", "cam1"], 10.0, 42.0)  # cam1 published nothing
    assert verdict(missing) == ["0% of the windows due < 90% (cam1: 0 of 30.0)"]
    few = summarize(ok[::2], ["cam0"], 10.0, 42.0)  # half the windows
    assert len(verdict(few)) == 1 and verdict(few)[0].startswith("50% of the windows due")
    assert verdict({"error": "run_live.py #0 exited with status 2: boom"}) == [
        "run_live.py #0 exited with status 2: boom"
    ]
    assert verdict({}) == ["no window measured", "0% of the windows due < 90%"]


def row(mode: str, n: int, sustained: bool, preset: str = "p") -> Dict[str, Any]:
    return {"preset": preset, "mode": mode, "streams": n, "sustained": sustained}


def test_largest_sustained_n_and_the_ratio() -> None:
    rows = [row("batched", n, n <= 6) for n in (1, 2, 3, 4, 6, 8)] + [row("processes", n, n <= 3) for n in (1, 2, 3, 4)]
    rows.append(row("batched", 12, True))  # a larger N after a failure does not count
    rows.append(row("processes", 16, True, preset="q"))
    assert largest_sustained(rows, "p", "batched") == 6 and largest_sustained(rows, "p", "processes") == 3
    assert largest_sustained([row("batched", 1, False)], "p", "batched") == 0
    s = preset_summary(rows, "p", MODES)
    assert s == {"batched": 6, "processes": 3, "at_least": [], "ratio": 2.0}
    assert summary_cells(s) == ["6", "3", "2.00"]
    open_ended = preset_summary(
        [row("batched", 4, True), row("processes", 2, True), row("processes", 3, False)], "p", MODES
    )
    assert summary_cells(open_ended) == ["≥ 4", "2", "≥ 2.00"]
    none = preset_summary([row("batched", 1, True), row("processes", 1, False)], "p", MODES)
    assert none["ratio"] is None and summary_cells(none) == ["≥ 1", "0", "—"]
    assert summary_cells(preset_summary([row("processes", 1, True)], "p", ["processes"])) == ["—", "≥ 1", "—"]


def test_busy_share_of_two_readings() -> None:
    assert busy_share((100, 400), (250, 600)) == pytest.approx(0.75)
    assert busy_share((0, 0), (0, 0)) is None


def test_markdown_names_the_cpu_and_every_run() -> None:
    runs = [
        {**row("batched", 1, True), **summarize(windows("cam0", 50.0), ["cam0"], 10.0, 42.0), "why_not": []},
        {**row("batched", 2, False), "error": "cam1 published no window within 180 s", "why_not": ["cam1 ..."]},
    ]
    cpu = "Some CPU (2 CPUs; avx2 fma)"
    result = {
        "cpu": cpu,
        "date": "2026-12-02",
        "loadavg_before": 0.5,
        "settings": {
            "presets": ["p"],
            "size": "640x480",
            "threads": None,
            "budget_ms": 5.0,
            "seconds": 32,
            "warmup": 10,
        },
        "runs": runs,
        "summary": {"p": preset_summary(runs, "p", ["batched"])},
    }
    text = markdown(result)
    assert text.splitlines()[0] == f"## Streams sustained on {cpu}"
    assert "| p | 1 | — | — |" in text and "budget 5.0 ms" in text
    assert "| batched | 1 | 0.94 | 100% | 0 | 50 / 50 | — | **yes** |" in text
    assert "| batched | 2 | — | — | — | — | — | no: cam1 ... |" in text


def test_command_lines_of_the_two_modes(tmp_path: Path) -> None:
    engine = tmp_path / "engine"
    cmd = batched_command(3, engine, 5000, (640, 480), 99.0, threads=2, budget_ms=4.0)
    assert cmd[1].endswith("run_live.py")
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--source"] == ["synthetic:0", "synthetic:1", "synthetic:2"]
    text = " ".join(cmd)
    for part in (
        "--engine " + str(engine),
        "--pose synthetic --pose-every 4 --stride 8",
        "--source-option fps=30 --source-option width=640 --source-option height=480",
        "--endpoint tcp://127.0.0.1:5000",
        "--max-size 640x480 --no-record --no-listen --duration 99 -q --threads 2",
        "--batch-budget-ms 4",
    ):
        assert part in text
    assert "--stream-id" not in text and text.count("--endpoint") == 1
    assert "--batch-budget-ms" not in batched_command(1, engine, 5000, (640, 480), 9.0)
    file = tmp_path / "s.toml"
    file.write_text(streams_toml(2, (320, 240)))
    tables = tomllib.loads(file.read_text())["stream"]
    assert [t["id"] for t in tables] == ["cam0", "cam1"] and tables[1]["source"] == "synthetic:1"
    assert tables[0]["source_options"] == {"fps": 30, "width": 320, "height": 240}
    assert (tables[0]["pose"], tables[0]["pose_every"], tables[0]["stride"]) == ("synthetic", 4, 8)
    by_file = batched_command(2, engine, 5000, (320, 240), 9.0, streams_file=file)
    assert "--streams" in by_file and "--source" not in by_file
    procs = process_commands(2, engine, [5001, 5002], (640, 480), 9.0)
    assert len(procs) == 2
    for i, c in enumerate(procs):
        assert c[c.index("--stream-id") + 1] == f"cam{i}" and c[c.index("--source") + 1] == f"synthetic:{i}"
        assert c[c.index("--endpoint") + 1] == f"tcp://127.0.0.1:{5001 + i}"
        assert "--batch-budget-ms" not in c


def test_free_ports_are_distinct() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20


def test_processes_are_stopped_even_when_they_ignore_sigint(tmp_path: Path) -> None:
    """An exception inside the block: SIGINT first, then SIGKILL to the process and its group's child."""
    child_pid = tmp_path / "child.pid"
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"open({str(child_pid)!r}, 'w').write(str(c.pid)); time.sleep(120)"
    )
    polite = "import time\ntry:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n    print('stopped by SIGINT')"
    t = time.monotonic()
    with pytest.raises(RuntimeError), Processes(grace_s=2.0) as procs:
        a = procs.start([sys.executable, "-c", stubborn], tmp_path / "a.log")
        b = procs.start([sys.executable, "-c", polite], tmp_path / "b.log")
        for _ in range(200):
            if child_pid.exists() and child_pid.read_text():
                break
            time.sleep(0.05)
        time.sleep(0.5)
        raise RuntimeError("the benchmark failed")
    assert time.monotonic() - t < 30
    assert a.returncode == -signal.SIGKILL and b.returncode == 0
    assert "stopped by SIGINT" in (tmp_path / "b.log").read_text()
    pid = int(child_pid.read_text())
    for _ in range(100):  # killed with its group; reaped by init
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the child {pid} of the stubborn process is still running")


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--streams", "0"], "--streams 0 is not allowed"),
        (["--size", "641x480"], "--size '641x480' is not allowed"),
        (["--size", "480x640"], "--size '480x640' is not allowed"),
        (["--presets", "clipmg-nope"], "unknown preset(s) clipmg-nope"),
        (["--seconds", "0"], "--seconds 0.0 is not allowed"),
        (["--json", "/nonexistent-folder/r.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: List[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err, err


@pytest.mark.slow
def test_one_camera_through_run_live_for_a_few_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mode processes, N = 1, the tiny preset, 3 s measured: the benchmark really runs the recognizer,
    receives its windows and stops it (not a verdict on this shared machine's speed)."""
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    argv = ["--presets", "clipmg-tiny", "--modes", "processes", "--streams", "1", "--seconds", "3", "--warmup", "0"]
    assert main([*argv, "--workdir", str(tmp_path), "--json", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    (r,) = result["runs"]
    assert (r["preset"], r["mode"], r["streams"]) == ("clipmg-tiny", "processes", 1)
    assert "error" not in r, r
    assert r["per_stream"]["cam0"]["windows"] >= 1 and r["skipped"] >= 0
    assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"] < 60_000
    assert r["sustained"] == (r["why_not"] == [])
    assert set(result["summary"]["clipmg-tiny"]) == {"processes", "at_least"}
    assert md.read_text().startswith(f"## Streams sustained on {result['cpu']}")
    log = (tmp_path / "logs" / "clipmg-tiny-processes-n1-0.log").read_text()
    assert "stopped:" in log and "received SIGINT" in log, log  # stopped by the benchmark, cleanly
