"""Does the web view hold the worker back? (``python -m clipmg.bench.web``)

One live run of the recognizer (``run_live.py --web 0``: the synthetic camera at 25 fps, the demo
model on ONNX Runtime, the web view serving) and three phases of it, in this order:

1. no browser;
2. a browser watching: Debian's headless Chromium (through Playwright) with the page open, getting
   every message and the annotated frames (an aiohttp client reading both WebSockets when no
   Chromium is installed; the table says which);
3. a browser that stopped reading: WebSocket and MJPEG connections with a 4 KiB receive buffer that
   are never read.

A ZeroMQ subscriber in this process records every window message. Reported per phase: windows/s
(received), the windows the worker skipped, and the latency from the capture of a window's last
frame to its publication (the worker's ``capture_to_publish``) and to its receipt here, p50 and p99.
The output names the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from clipmg.bench.procs import RUN_LIVE, free_port
from clipmg.model.machine import cpu_line
from clipmg.stream.messages import decode


class Windows:
    """Every window message of the run, with when it arrived (a SUB socket on a thread)."""

    def __init__(self, endpoint: str) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"mg.window.")
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.got: List[Tuple[float, Dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import zmq

        while not self._stop.is_set():
            try:
                _, payload = self.sock.recv_multipart()
            except zmq.Again:
                continue
            self.got.append((time.time(), decode(payload)))

    def between(self, t0: float, t1: float) -> List[Tuple[float, Dict[str, Any]]]:
        return [(t, m) for t, m in list(self.got) if t0 <= t < t1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.ctx.term()


def _pct(xs: List[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def phase_row(name: str, wins: List[Tuple[float, Dict[str, Any]]], seconds: float) -> Dict[str, Any]:
    c2p = [m["latency_ms"]["capture_to_publish"] for _, m in wins]
    e2e = [(t - m["frames"]["t_last"]) * 1e3 for t, m in wins]
    skipped = (wins[-1][1]["skipped"] - wins[0][1]["skipped"]) if wins else 0
    return {
        "phase": name,
        "windows": len(wins),
        "windows_per_s": len(wins) / seconds,
        "skipped": skipped,
        "c2p_p50": _pct(c2p, 50),
        "c2p_p99": _pct(c2p, 99),
        "recv_p50": _pct(e2e, 50),
        "recv_p99": _pct(e2e, 99),
    }


class Watcher:
    """A browser with the page open: Chromium through Playwright, or a plain client of both sockets."""

    def __init__(self, url: str, chromium: Optional[str]) -> None:
        self.kind = "Chromium " if chromium else "aiohttp client"
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._chromium if chromium else self._client, args=(url, chromium))
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(120)

    def _chromium(self, url: str, chromium: str) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            self.kind += b.version
            page = b.new_page()
            page.goto(url)
            page.wait_for_selector(".tile .timeline li", timeout=120_000)
            self._ready.set()
            while not self._stop.wait(1.0):
                self.frames = int(page.evaluate("Number(document.querySelector('.tile .frame').dataset.frames||0)"))
            b.close()

    def _client(self, url: str, _: Any) -> None:
        import aiohttp

        async def run() -> None:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(url + "ws") as ws, s.ws_connect(url + "ws/frames") as wf:

                    async def drain(w: Any, count: bool) -> None:
                        async for _ in w:
                            self.frames += count

                    tasks = [asyncio.create_task(drain(ws, False)), asyncio.create_task(drain(wf, True))]
                    self._ready.set()
                    while not self._stop.is_set():
                        await asyncio.sleep(0.2)
                    for t in tasks:
                        t.cancel()

        asyncio.run(run())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


def stalled_readers(port: int) -> List[socket.socket]:
    """Connections that ask for everything and never read a byte."""
    out = []
    for path, upgrade in (("/ws", True), ("/ws/frames", True), ("/api/streams/cam0/mjpeg", False)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        extra = (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            if upgrade
            else ""
        )
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode())
        out.append(s)
    return out


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit(f"bench.web: timed out waiting for {what}")


def run(seconds: float, chromium: Optional[str], web_fps: float) -> Dict[str, Any]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, str(RUN_LIVE), "--endpoint", endpoint, "--web", "0", "--web-fps", f"{web_fps:g}"]
    cmd += ["--no-record", "--no-listen", "--duration", "0", "-q"]
    live = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines: List[str] = []
    threading.Thread(target=lambda: lines.extend(live.stderr), daemon=True).start()  # type: ignore[arg-type]
    wins = Windows(endpoint)
    rows = []
    try:
        line = _wait(lambda: next((ln for ln in lines if "web view:" in ln), None), 180, "the web view")
        url = re.search(r"http://\S+", line).group(0)  # type: ignore[union-attr]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        _wait(lambda: len(wins.got) >= 5, 180, "the first windows")  # warmed up
        t0 = time.time()
        time.sleep(seconds)
        rows.append(phase_row("no browser", wins.between(t0, time.time()), seconds))
        watcher = Watcher(url, chromium)
        t0 = time.time()
        time.sleep(seconds)
        rows.append(phase_row(f"browser watching ({watcher.kind})", wins.between(t0, time.time()), seconds))
        rows[-1]["frames_shown"] = watcher.frames
        watcher.close()
        stuck = stalled_readers(port)
        t0 = time.time()
        time.sleep(seconds)
        rows.append(phase_row("browser stopped reading (3 connections)", wins.between(t0, time.time()), seconds))
        for s in stuck:
            s.close()
    finally:
        wins.close()
        live.terminate()
        live.wait(60)
    return {"cpu": cpu_line(), "seconds": seconds, "web_fps": web_fps, "rows": rows}


def table(result: Dict[str, Any]) -> str:
    out = [
        f"CPU: {result['cpu']}; {result['seconds']:g} s a phase, --web-fps {result['web_fps']:g}",
        "",
        "| phase | windows/s | skipped | capture→publish p50 / p99 (ms) | capture→received p50 / p99 (ms) |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        out.append(
            f"| {r['phase']} | {r['windows_per_s']:.2f} | {r['skipped']} | {r['c2p_p50']:.0f} / {r['c2p_p99']:.0f} "
            f"| {r['recv_p50']:.0f} / {r['recv_p99']:.0f} |"
        )
    shown = next((r.get("frames_shown") for r in result["rows"] if "frames_shown" in r), None)
    if shown is not None:
        out.append(f"\nframes the watching browser showed: {shown}")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipmg.bench.web", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default: %(default)s)")
    ap.add_argument("--web-fps", type=float, default=5.0, help="--web-fps of the run (default: %(default)s)")
    ap.add_argument("--chromium", default=shutil.which("chromium"), help="the Chromium to watch with (default: PATH)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    chromium = args.chromium if args.chromium and os.path.exists(args.chromium) else None
    if chromium:
        try:
            import playwright  # noqa: F401
        except ImportError:
            chromium = None
    result = run(args.seconds, chromium, args.web_fps)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
