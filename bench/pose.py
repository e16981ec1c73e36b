"""Benchmark: the shipped MediaPipe pose backend against stock MediaPipe Holistic, frame by frame.

    python -m clipmg.bench.pose                       # the shared real clips, if beside the repo
    python -m clipmg.bench.pose --video clip.mp4 --rounds 3 --json

The shipped backend (``stream/pose_mediapipe.py``) runs Holistic's graph without its face-mesh
branch (clipmg never uses the face). The honest alternative is ``mp.solutions.holistic.Holistic``
with the same options, which is what the backend ran before. Both see the same frames, resized to
640×480 like the live benchmark's file, in turns (one round of the shipped backend, one of
Holistic, ...), so a change in the machine's speed hits both alike. Reported per frame: wall time
and process CPU time (MediaPipe runs some calculators on threads of its own), medians over rounds,
and whether the two produced the same body and hand landmarks on every frame. The output names the
CPU and its vector extensions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import cv2
import numpy as np

from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.machine import cpu_line
from clipmg.stream.pose_mediapipe import MediaPipeBackend
from clipmg.stream.quiet import native_stderr_off

_SHARED_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imigue-clips"


def read_frames(paths: List[Path], size: tuple = (640, 480)) -> List[np.ndarray]:
    """Every frame of the videos/GIFs at ``paths`` as RGB ``uint8`` at ``size`` (width, height)."""
    frames: List[np.ndarray] = []
    for path in paths:
        cap = cv2.VideoCapture(str(path))
        n = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
            n += 1
        cap.release()
        if n == 0:
            raise ClipmgError(f"{path} has no frames that OpenCV can read")
    return frames


def _landmark_arrays(res: Any) -> List[Any]:
    out = []
    for name in ("pose_landmarks", "left_hand_landmarks", "right_hand_landmarks"):
        lms = getattr(res, name)
        out.append(None if lms is None else np.array([(p.x, p.y, p.z) for p in lms.landmark]))
    return out


def _same(a: List[Any], b: List[Any]) -> bool:
    return all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y)) for x, y in zip(a, b)
    )


def _round(process: Callable[[np.ndarray], Any], frames: List[np.ndarray]) -> tuple:
    t, c = time.perf_counter(), time.process_time()
    results = [_landmark_arrays(process(f)) for f in frames]
    n = len(frames)
    return (time.perf_counter() - t) * 1e3 / n, (time.process_time() - c) * 1e3 / n, results


def run(frames: List[np.ndarray], rounds: int) -> Dict[str, Any]:
    import mediapipe as mp

    shipped = MediaPipeBackend()
    stock = mp.solutions.holistic.Holistic(model_complexity=1, refine_face_landmarks=False)
    timings: Dict[str, Dict[str, List[float]]] = {k: {"wall": [], "cpu": []} for k in ("shipped", "holistic")}
    same = True
    try:
        for proc in (shipped._holistic.process, stock.process):
            _round(proc, frames[:5])  # warm-up: the first frames load the models
        for _ in range(rounds):
            got = {}
            for name, proc in (("shipped", shipped._holistic.process), ("holistic", stock.process)):
                wall, cpu, got[name] = _round(proc, frames)
                timings[name]["wall"].append(wall)
                timings[name]["cpu"].append(cpu)
            same = same and all(_same(a, b) for a, b in zip(got["shipped"], got["holistic"]))
    finally:
        shipped.close()
        stock.close()
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in timings.items()}
    return {
        "cpu": cpu_line(),
        "frames": len(frames),
        "rounds": rounds,
        "ms_per_frame": med,
        "cpu_ratio": med["holistic"]["cpu"] / med["shipped"]["cpu"],
        "wall_ratio": med["holistic"]["wall"] / med["shipped"]["wall"],
        "same_landmarks": same,
    }


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m clipmg.bench.pose",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--video",
        action="append",
        type=Path,
        help="a video or GIF to pose (repeatable; default: the shared real clips)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all frames, per backend (default 3)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("-v", "--verbose", action="store_true", help="keep MediaPipe's native start-up messages")
    args = ap.parse_args(argv)
    if not args.verbose:
        native_stderr_off()

    def body() -> int:
        if args.rounds < 1:
            raise ClipmgError(f"--rounds must be at least 1, got {args.rounds}")
        paths = args.video or sorted(_SHARED_CLIPS.glob("*.gif"))
        if not paths:
            raise ClipmgError(f"no --video given and no shared clips at {_SHARED_CLIPS}")
        for p in paths:
            if not p.is_file():
                raise ClipmgError(f"{p} is not a file")
        r = run(read_frames(paths), args.rounds)
        if args.json:
            print(json.dumps(r))
            return 0
        m = r["ms_per_frame"]
        print(f"CPU: {r['cpu']}\n{r['frames']} frames × {r['rounds']} rounds, ms a frame (median of rounds)")
        for k, label in (("shipped", "shipped (Holistic without the face)"), ("holistic", "stock Holistic")):
            print(f"  {label:38s} wall {m[k]['wall']:6.1f}  cpu {m[k]['cpu']:6.1f}")
        print(
            f"  CPU ratio {r['cpu_ratio']:.2f}×, wall ratio {r['wall_ratio']:.2f}×, "
            f"same body and hand landmarks on every frame: {r['same_landmarks']}"
        )
        return 0

    return run_command("clipmg.bench.pose", body)


if __name__ == "__main__":
    sys.exit(main())
