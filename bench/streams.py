"""How many cameras does this machine sustain? (``python -m clipmg.bench.streams``)

N synthetic cameras (``synthetic:I``, 640x480 at 30 fps by default), Δp = 4, S = 8 (a window every
32 frames: 0.94 windows a second a stream), through the real supervisor (``run_live.py``) in two modes:

- **batched**: one ``run_live.py`` serving all N streams (``--source`` repeated, stream ids cam0,
  cam1, ... in order; ``--batch-budget-ms`` from ``--budget-ms``);
- **processes**: N independent ``run_live.py``, one source, one endpoint and one ``--stream-id camI`` each.

Each preset is exported to ONNX Runtime with random weights (``bench/e2e.py`` ``make_engine``: the
timings do not depend on the weights). The synthetic camera renders its frames and hands the exact
keypoints along with them, and the ``synthetic`` pose backend reads them from the ring, so pose costs
nothing: what is measured is the capture (rendering a 640x480 frame costs about 1.8 ms of CPU, less
than decoding the same frame from an H.264 file, about 3.2 ms, and about what a real camera's
decoding costs), the worker and the engine. One subscriber here connects to every endpoint.

For each preset and mode, N goes up the ``--streams`` list until the first N that is not sustained.
Each N runs until every stream has published a window, then ``--warmup`` seconds are discarded and
``--seconds`` measured. Sustained: p99 capture-to-publish latency <= 250 ms, 0 windows skipped and,
on every stream, at least 90 % of the windows due. Reported: the largest sustained N per mode and
preset, and batched / processes; ``--json`` keeps every figure, ``--markdown`` the tables (headed by
the CPU and its vector extensions).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import zmq

from clipmg.bench.e2e import make_engine
from clipmg.bench.procs import RUN_LIVE, Processes, free_ports
from clipmg.model.config import ConfigError, list_presets
from clipmg.model.errors import run_command
from clipmg.model.machine import cpu_line
from clipmg.model.settings import (
    Range,
    add_arguments,
    check_fields,
    check_number,
    check_output_files,
    setting,
    values_from_args,
)
from clipmg.stream.messages import MessageError, StatusMessage, WindowMessage, decode

log = logging.getLogger(__name__)

PROG = "clipmg.bench.streams"
FPS = 30.0  # the cameras' frame rate
POSE_EVERY = 4  # Δp: a pose sample every 4th frame
STRIDE = 8  # S: a window every 8 pose samples
P99_LIMIT_MS = 250.0  # sustained: p99 capture-to-publish latency at most this
MIN_SHARE = 0.9  # sustained: every stream delivers at least this share of the windows due
MODES = ("batched", "processes")
BATCHED_FORMS = ("flags", "file")


# ------------------------------------------------------------------------------------ pure logic
@dataclass(frozen=True)
class Got:
    """One window message as received: when (this process's monotonic clock), from which stream."""

    t: float
    stream: str
    window: int
    skipped: int  # the worker's count of windows skipped so far
    latency_ms: float  # capture of the window's last frame -> publication


def expected_windows(seconds: float, fps: float = FPS, pose_every: int = POSE_EVERY, stride: int = STRIDE) -> float:
    """Windows one stream closes in ``seconds``: one every ``pose_every * stride`` frames."""
    return seconds * fps / (pose_every * stride)


def percentile(xs: Sequence[float], q: float) -> Optional[float]:
    """The ``q``-th percentile of the finite values of ``xs`` (None when there are none)."""
    a = np.asarray([x for x in xs if math.isfinite(x)], float)
    return float(np.percentile(a, q)) if a.size else None


def skipped_between(got: Sequence[Got], t0: float, t1: float) -> int:
    """Windows one stream skipped in [t0, t1): the sum of the increments of ``skipped`` over the window
    messages received then, counted from the last one received before ``t0`` (0 when none). A count
    that goes down is a restarted worker counting from 0 again: its new value is the increment."""
    before = [g for g in got if g.t < t0]
    last = before[-1].skipped if before else 0
    total = 0
    for g in (g for g in got if t0 <= g.t < t1):
        total += g.skipped - last if g.skipped >= last else g.skipped
        last = g.skipped
    return total


def summarize(got: Sequence[Got], streams: Sequence[str], t0: float, t1: float) -> Dict[str, Any]:
    """The figures of one run from the window messages ``got`` (in order of arrival) of ``streams``,
    counting those received in [t0, t1)."""
    due = expected_windows(t1 - t0)
    per: Dict[str, Dict[str, Any]] = {}
    latencies: List[float] = []
    for s in streams:
        mine = [g for g in got if g.stream == s]
        inside = [g for g in mine if t0 <= g.t < t1]
        lat = [g.latency_ms for g in inside]
        latencies += lat
        per[s] = {
            "windows": len(inside),
            "share": len(inside) / due if due > 0 else 0.0,
            "skipped": skipped_between(mine, t0, t1),
            "latency_p99_ms": percentile(lat, 99),
        }
    shares = [p["share"] for p in per.values()]
    p99s = [p["latency_p99_ms"] for p in per.values() if p["latency_p99_ms"] is not None]
    return {
        "measured_s": t1 - t0,
        "windows_due_per_stream": due,
        "windows": sum(p["windows"] for p in per.values()),
        "windows_per_s_per_stream": (sum(p["windows"] for p in per.values()) / len(per) / (t1 - t0)) if per else 0.0,
        "lowest_share": min(shares) if shares else 0.0,
        "skipped": sum(p["skipped"] for p in per.values()),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "worst_stream_p99_ms": max(p99s) if p99s else None,
        "per_stream": per,
    }


def verdict(summary: Dict[str, Any]) -> List[str]:
    """Why a run is not sustained (an empty list: it is)."""
    why = []
    if summary.get("error"):
        why.append(str(summary["error"]))
        return why
    p99 = summary.get("latency_p99_ms")
    if p99 is None:
        why.append("no window measured")
    elif p99 > P99_LIMIT_MS:
        why.append(f"p99 {p99:.0f} ms > {P99_LIMIT_MS:g} ms")
    if summary.get("skipped", 0) > 0:
        why.append(f"{summary['skipped']} windows skipped")
    if summary.get("lowest_share", 0.0) < MIN_SHARE:
        low = min(summary.get("per_stream", {}).items(), key=lambda kv: kv[1]["share"], default=None)
        where = f" ({low[0]}: {low[1]['windows']} of {summary['windows_due_per_stream']:.1f})" if low else ""
        why.append(f"{summary.get('lowest_share', 0.0):.0%} of the windows due < {MIN_SHARE:.0%}{where}")
    return why


def largest_sustained(rows: Sequence[Dict[str, Any]], preset: str, mode: str) -> int:
    """The largest N of ``preset`` and ``mode`` sustained with every smaller N tried sustained too (0: none)."""
    best = 0
    for r in sorted((r for r in rows if r["preset"] == preset and r["mode"] == mode), key=lambda r: r["streams"]):
        if not r["sustained"]:
            break
        best = r["streams"]
    return best


def ratio(batched: int, processes: int) -> Optional[float]:
    """batched / processes, None when processes sustained no stream at all."""
    return batched / processes if processes else None


def preset_summary(rows: Sequence[Dict[str, Any]], preset: str, modes: Sequence[str]) -> Dict[str, Any]:
    """The largest sustained N of each mode; ``at_least``: the modes whose every N tried was sustained
    (their figure is a lower bound: give --streams larger N); ``ratio``: batched / processes."""
    out: Dict[str, Any] = {m: largest_sustained(rows, preset, m) for m in modes}
    out["at_least"] = [
        m for m in modes if all(r["sustained"] for r in rows if r["preset"] == preset and r["mode"] == m)
    ]
    if set(MODES) <= set(modes):
        out["ratio"] = ratio(out["batched"], out["processes"])
    return out


def summary_cells(summary: Dict[str, Any]) -> List[str]:
    """The markdown cells of :func:`preset_summary`: each mode's N (``≥ N`` for a lower bound), the ratio
    (``≥``/``≤`` where one side is a lower bound, ``?`` where both are)."""
    bound = summary.get("at_least", [])
    cells = [("≥ " if m in bound else "") + str(summary[m]) if m in summary else "—" for m in MODES]
    r = summary.get("ratio")
    if r is None:
        return cells + ["—"]
    if set(MODES) <= set(bound):
        return cells + ["?"]
    return cells + [("≥ " if "batched" in bound else "≤ " if "processes" in bound else "") + f"{r:.2f}"]


def cpu_times() -> Tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat ((0, 0) where it cannot be read)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: Tuple[int, int], after: Tuple[int, int]) -> Optional[float]:
    """Share of the machine's CPU time that was busy between two :func:`cpu_times` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


# ------------------------------------------------------------------------------------ command lines
def stream_ids(n: int) -> List[str]:
    return [f"cam{i}" for i in range(n)]


def _common(
    engine: Path,
    size: Tuple[int, int],
    duration: float,
    threads: Optional[int],
    device: str = "cpu",
    pose: str = "synthetic",
) -> List[str]:
    w, h = size
    args = ["--engine", str(engine), "--pose", pose, "--pose-every", str(POSE_EVERY), "--stride", str(STRIDE)]
    args += ["--max-size", f"{w}x{h}", "--no-record", "--no-listen", "--duration", f"{duration:g}", "-q"]
    args += [] if device == "cpu" else ["--device", device]  # a checkpoint on the CUDA engine
    return args + (["--threads", str(threads)] if threads else [])


def _source_options(size: Tuple[int, int]) -> List[str]:
    w, h = size
    return ["--source-option", f"fps={FPS:g}", "--source-option", f"width={w}", "--source-option", f"height={h}"]


def streams_toml(n: int, size: Tuple[int, int]) -> str:
    """The ``--streams FILE.toml`` of batched mode: one ``[[stream]]`` table per camera."""
    w, h = size
    out = []
    for i, sid in enumerate(stream_ids(n)):
        out += [
            "[[stream]]",
            f'id = "{sid}"',
            f'source = "synthetic:{i}"',
            'pose = "synthetic"',
            f"pose_every = {POSE_EVERY}",
            f"stride = {STRIDE}",
            f"source_options = {{ fps = {FPS:g}, width = {w}, height = {h} }}",
            "",
        ]
    return "\n".join(out)


def batched_command(
    n: int,
    engine: Path,
    port: int,
    size: Tuple[int, int],
    duration: float,
    threads: Optional[int] = None,
    budget_ms: Optional[float] = None,
    streams_file: Optional[Path] = None,
    device: str = "cpu",
    pose: str = "synthetic",
) -> List[str]:
    """One ``run_live.py`` for ``n`` cameras: ``--source synthetic:I`` repeated (ids cam0, cam1, ...),
    the source options given once for all, or ``--streams streams_file`` (written by the caller from
    :func:`streams_toml`)."""
    cmd = [sys.executable, str(RUN_LIVE)]
    if streams_file is not None:
        cmd += ["--streams", str(streams_file)]
    else:
        for i in range(n):
            cmd += ["--source", f"synthetic:{i}"]
        cmd += _source_options(size)
    cmd += ["--endpoint", f"tcp://127.0.0.1:{port}", *_common(engine, size, duration, threads, device, pose)]
    return cmd + (["--batch-budget-ms", f"{budget_ms:g}"] if budget_ms is not None else [])


def process_commands(
    n: int,
    engine: Path,
    ports: Sequence[int],
    size: Tuple[int, int],
    duration: float,
    threads: Optional[int] = None,
    device: str = "cpu",
    pose: str = "synthetic",
) -> List[List[str]]:
    """``n`` independent ``run_live.py``, camera I on ``ports[I]`` as stream camI."""
    return [
        [sys.executable, str(RUN_LIVE), "--source", f"synthetic:{i}", *_source_options(size), "--stream-id", sid]
        + ["--endpoint", f"tcp://127.0.0.1:{ports[i]}", *_common(engine, size, duration, threads, device, pose)]
        for i, sid in enumerate(stream_ids(n))
    ]


# ------------------------------------------------------------------------------------ one run
class Recorder:
    """A SUB socket connected to every endpoint, keeping the window messages (with their arrival
    time), the first arrival per stream and each stream's last status message."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        self.ctx: Any = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        for prefix in (b"mg.window.", b"mg.status."):
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        for ep in endpoints:
            self.sock.connect(ep)
        self.got: List[Got] = []
        self.first: Dict[str, float] = {}
        self.status: Dict[str, StatusMessage] = {}
        self.bad: List[str] = []

    def receive(self, timeout_s: float) -> None:
        """Everything that arrives within ``timeout_s`` (and whatever is queued)."""
        if not self.sock.poll(int(timeout_s * 1000)):
            return
        while True:
            try:
                _, payload = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            now = time.monotonic()
            try:
                msg = decode(payload)
            except MessageError as e:
                self.bad.append(str(e))
                continue
            if isinstance(msg, WindowMessage):
                lat = msg.latency_ms.capture_to_publish
                self.got.append(Got(now, msg.stream, msg.window, msg.skipped, float(lat)))
                self.first.setdefault(msg.stream, now)
            elif isinstance(msg, StatusMessage):
                self.status[msg.stream] = msg

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@dataclass(frozen=True)
class Timing:
    """How long one run waits and measures."""

    startup_s: float  # for every stream's first window
    warmup_s: float  # then discarded
    seconds: float  # then measured

    @property
    def duration_s(self) -> float:
        """The recognizers' own ``--duration``: they stop by themselves even if this process dies."""
        return self.startup_s + self.warmup_s + self.seconds + 30.0


def measure(procs: Processes, rec: Recorder, ids: Sequence[str], timing: Timing) -> Dict[str, Any]:
    """Wait for every stream's first window, skip the warm-up, measure; the run's figures (with
    ``error`` set when a process ended or a stream never published)."""
    start = time.monotonic()
    t0 = t1 = math.inf
    cpu0: Optional[Tuple[int, int]] = None
    error = ""
    while True:
        rec.receive(0.2)
        now = time.monotonic()
        ended = procs.exited()
        if ended:
            i = ended[0]
            error = f"run_live.py #{i} exited with status {procs.procs[i].returncode}: {procs.tail(i)}"
            break
        if math.isinf(t0):
            if all(s in rec.first for s in ids):
                t0 = max(rec.first[s] for s in ids) + timing.warmup_s
                t1 = t0 + timing.seconds
                log.info(f"all {len(ids)} streams up after {now - start:.1f} s")
            elif now - start > timing.startup_s:
                missing = [s for s in ids if s not in rec.first]
                error = f"{', '.join(missing)} published no window within {timing.startup_s:g} s"
                break
        elif cpu0 is None and now >= t0:
            cpu0 = cpu_times()
        elif now >= t1:
            break
    cpu1 = cpu_times()
    if error:
        out: Dict[str, Any] = {"error": error}
        if not math.isinf(t0) and now > t0:  # what it managed before it failed
            out.update(summarize(rec.got, ids, t0, now))
            out["error"] = error
        return out
    out = summarize(rec.got, ids, t0, t1)
    out["cpu_busy"] = busy_share(cpu0, cpu1) if cpu0 else None
    status = [rec.status[s] for s in ids if s in rec.status]
    out["fps_in_lowest"] = min((s.fps_in for s in status), default=None)
    out["dropped_frames"] = sum(s.dropped_frames for s in status)
    out["restarts"] = sum(s.restarts for s in status)
    if rec.bad:
        out["error"] = f"{len(rec.bad)} messages did not decode (first: {rec.bad[0]})"
    return out


def run(
    preset: str, mode: str, n: int, engine: Path, opts: "StreamsOptions", timing: Timing, logs: Path
) -> Dict[str, Any]:
    """One measurement of ``n`` cameras in ``mode``; a row of the report."""
    ids = stream_ids(n)
    size = opts.frame_size
    row: Dict[str, Any] = {"preset": preset, "mode": mode, "streams": n, "loadavg_before": os.getloadavg()[0]}
    tag = f"{preset}-{mode}-n{n}"
    if mode == "batched":
        port = free_ports(1)[0]
        file = None
        if opts.batched_form == "file":
            file = logs / f"{tag}.toml"
            file.write_text(streams_toml(n, size))
        cmds = [
            batched_command(
                n, engine, port, size, timing.duration_s, opts.threads, opts.budget_ms, file, opts.device, opts.pose
            )
        ]
        endpoints = [f"tcp://127.0.0.1:{port}"]
    else:
        ports = free_ports(n)
        cmds = process_commands(n, engine, ports, size, timing.duration_s, opts.threads, opts.device, opts.pose)
        endpoints = [f"tcp://127.0.0.1:{p}" for p in ports]
    row["command"] = " ".join(cmds[0][1:])
    rec = Recorder(endpoints)
    try:
        with Processes() as procs:
            for i, cmd in enumerate(cmds):
                procs.start(cmd, logs / f"{tag}-{i}.log")
            row.update(measure(procs, rec, ids, timing))
    finally:
        rec.close()
    row["why_not"] = verdict(row)
    row["sustained"] = not row["why_not"]
    return row


def sweep(
    preset: str, mode: str, engine: Path, opts: "StreamsOptions", timing: Timing, logs: Path
) -> Iterator[Dict[str, Any]]:
    """Rows for N up ``opts.streams``, ending with the first N not sustained."""
    for n in sorted(set(opts.streams)):
        log.info(f"{preset}, {mode}: {n} stream(s) ...")
        row = run(preset, mode, n, engine, opts, timing, logs)
        log.info(f"{preset}, {mode}, {n}: {_row_line(row)}")
        yield row
        if not row["sustained"]:
            return


def _row_line(row: Dict[str, Any]) -> str:
    if "latency_p99_ms" not in row:
        return "not sustained: " + "; ".join(row["why_not"])
    text = (
        f"{row['windows_per_s_per_stream']:.2f} windows/s a stream, {row['skipped']} skipped, "
        f"p50 / p99 {_ms(row['latency_p50_ms'])} / {_ms(row['latency_p99_ms'])} ms"
    )
    return text + (": sustained" if row["sustained"] else ": not sustained: " + "; ".join(row["why_not"]))


# ------------------------------------------------------------------------------------ report
def engine_words(device: str) -> str:
    return "ONNX Runtime float32 on the CPU" if device == "cpu" else f"the CUDA engine on {device}"


def _ms(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.0f}"


def markdown(result: Dict[str, Any]) -> str:
    """The report's tables; the heading names the CPU and its vector extensions."""
    s = result["settings"]
    due = expected_windows(1.0)
    lines = [
        f"## Streams sustained on {result['cpu']}",
        "",
        f"{result['date']}; load average {result['loadavg_before']:.1f} before. Synthetic cameras "
        f"{s['size']} at {FPS:g} fps, Δp = {POSE_EVERY}, S = {STRIDE} ({due:.2f} windows/s a stream), "
        f"{engine_words(s.get('device', 'cpu'))} with random weights, pose {s.get('pose', 'synthetic')}, "
        f"engine threads {s['threads'] or 'default'}, batched mode's budget "
        f"{'default' if s['budget_ms'] is None else str(s['budget_ms']) + ' ms'}; {s['seconds']:g} s measured after "
        f"{s['warmup']:g} s of warm-up. Sustained: p99 capture→publish ≤ {P99_LIMIT_MS:g} ms, 0 skipped, every "
        f"stream ≥ {MIN_SHARE:.0%} of the windows due.",
        "",
        "| preset | batched: streams | processes: streams | batched / processes |",
        "|---|---|---|---|",
    ]
    for p, v in result["summary"].items():
        lines.append(f"| {p} | {' | '.join(summary_cells(v))} |")
    if any(v.get("at_least") for v in result["summary"].values()):
        lines += ["", "≥ N: every N tried was sustained; the machine may take more (give --streams larger N)."]
    lines += ["", "CPU busy: the share of the whole machine's CPU time that was busy while measuring (other jobs too)."]
    for preset in result["settings"]["presets"]:
        lines += [
            "",
            f"### {preset}",
            "",
            f"| mode | N | windows/s a stream (of {due:.2f}) | lowest stream | skipped "
            "| capture→publish p50 / p99 (ms) | CPU busy | sustained |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in result["runs"] if r["preset"] == preset):
            if "latency_p99_ms" not in r:
                lines.append(f"| {r['mode']} | {r['streams']} | — | — | — | — | — | no: {'; '.join(r['why_not'])} |")
                continue
            busy = "—" if r.get("cpu_busy") is None else f"{r['cpu_busy']:.0%}"
            ok = "**yes**" if r["sustained"] else "no: " + "; ".join(r["why_not"])
            lines.append(
                f"| {r['mode']} | {r['streams']} | {r['windows_per_s_per_stream']:.2f} | {r['lowest_share']:.0%} "
                f"| {r['skipped']} | {_ms(r['latency_p50_ms'])} / {_ms(r['latency_p99_ms'])} | {busy} | {ok} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ command
@dataclass(frozen=True)
class StreamsOptions:
    """``python -m clipmg.bench.streams``'s settings: each declared once; its flags and checks are generated."""

    presets: Tuple[str, ...] = setting(("clipmg-tiny", "clipmg-vitb32"), "model presets to measure", nargs="+")
    modes: Tuple[str, ...] = setting(MODES, "modes to compare", nargs="+", choices=MODES)
    streams: Tuple[int, ...] = setting(
        (1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
        "numbers of cameras to try, in increasing order; a mode stops at its first N not sustained",
        nargs="+",
        type=int,
    )
    seconds: float = setting(40.0, "seconds measured for each N", Range(1, 3600))
    warmup: float = setting(10.0, "seconds discarded once every stream has published a window", Range(0, 3600))
    startup: float = setting(180.0, "seconds allowed for every stream's first window", Range(1, 3600))
    budget_ms: Optional[float] = setting(
        None, "batched mode's --batch-budget-ms (default: the recognizer's own)", Range(0, 10_000)
    )
    threads: Optional[int] = setting(None, "--threads of every recognizer (default: its own)", Range(1, 1024))
    size: str = setting("640x480", "the cameras' frame size, WxH", metavar="WxH")
    batched_form: str = setting(
        "flags",
        "how batched mode names its cameras: flags (--source synthetic:I repeated, one set of "
        "--source-option) or file (--streams FILE.toml with one [[stream]] table each)",
        BATCHED_FORMS,
    )
    workdir: Optional[Path] = setting(
        None, "where the engines and the recognizers' logs go (default: a temporary folder, removed)", type=Path
    )
    device: str = setting(
        "cpu",
        "cpu: the preset exported to ONNX Runtime on the CPU; cuda (or cuda:N): its checkpoint on the CUDA engine",
    )
    pose: str = setting(
        "synthetic",
        "pose backend of every camera: synthetic (keypoints come with the frame: free) or mediapipe (on the CPU)",
        ("synthetic", "mediapipe"),
    )
    markdown: Optional[Path] = setting(None, "also write the tables to this file", type=Path)
    json: Optional[Path] = setting(None, "also write every figure to this file", type=Path)

    def __post_init__(self) -> None:
        check_fields(self, terse=True)
        for n in self.streams:
            check_number("--streams", n, Range(1, 256), integer=True)
        for m in self.modes:
            if m not in MODES:
                raise ConfigError(f"--modes {m!r} is not allowed: give {' or '.join(MODES)}")
        unknown = [p for p in self.presets if p not in list_presets()]
        if unknown:
            raise ConfigError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(list_presets())}")
        _ = self.frame_size
        if self.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", self.device):
            raise ConfigError(f"--device {self.device!r} is not allowed: give cpu, cuda or cuda:N")
        check_output_files(("--markdown", self.markdown), ("--json", self.json))

    @property
    def frame_size(self) -> Tuple[int, int]:
        """``--size`` as (width, height): even, landscape, 64x64 to 1920x1080 (the synthetic camera's limits)."""
        m = re.fullmatch(r"(\d+)x(\d+)", self.size.strip())
        w, h = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        if not (m and w % 2 == 0 and h % 2 == 0 and 64 <= h <= w and w <= 1920 and h <= 1080):
            raise ConfigError(
                f"--size {self.size!r} is not allowed: give WxH, even, landscape, from 64x64 to 1920x1080"
            )
        return w, h


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(ap, StreamsOptions)
    return ap


def main(argv: List[str] | None = None) -> int:
    """0 measured (whatever the verdicts), 2 bad input (one line), 130 interrupted."""
    return run_command(PROG, lambda: _main(argv))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM too stops every recognizer started (Processes' exit)


def _main(argv: List[str] | None) -> int:
    values = values_from_args(StreamsOptions, build_parser().parse_args(argv))
    kw: Dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    opts = StreamsOptions(**kw)
    timing = Timing(opts.startup, opts.warmup, opts.seconds)
    result: Dict[str, Any] = {
        "cpu": cpu_line(),
        "cpus": os.cpu_count(),
        "date": dt.date.today().isoformat(),
        "loadavg_before": os.getloadavg()[0],
        "command": f"python -m {PROG} " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "presets": list(opts.presets),
            "modes": list(opts.modes),
            "streams": sorted(set(opts.streams)),
            "seconds": opts.seconds,
            "warmup": opts.warmup,
            "budget_ms": opts.budget_ms,
            "threads": opts.threads,
            "size": "{}x{}".format(*opts.frame_size),
            "fps": FPS,
            "pose_every": POSE_EVERY,
            "stride": STRIDE,
            "batched_form": opts.batched_form,
            "device": opts.device,
            "pose": opts.pose,
            "p99_limit_ms": P99_LIMIT_MS,
            "min_share": MIN_SHARE,
        },
        "runs": [],
        "summary": {},
    }
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="clipmg-streams-") as tmp:
            work = (opts.workdir or Path(tmp)).expanduser()
            logs = work / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            for preset in opts.presets:
                log.info(f"making {preset} (random weights) for {engine_words(opts.device)} ...")
                engine = make_engine(preset, work, "onnxruntime" if opts.device == "cpu" else "torch")
                for mode in opts.modes:
                    result["runs"] += list(sweep(preset, mode, engine, opts, timing, logs))
                result["summary"][preset] = preset_summary(result["runs"], preset, opts.modes)
    finally:
        signal.signal(signal.SIGTERM, previous)
    result["loadavg_after"] = os.getloadavg()[0]
    text = markdown(result)
    print(text)
    if opts.markdown:
        opts.markdown.write_text(text + "\n")
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
