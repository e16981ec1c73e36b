"""``clipmg-predict``: what micro-gestures are in this recorded video?

    clipmg-predict clip.mp4                                   # one answer for the whole clip
    clipmg-predict clip.gif --segments labels.csv --json -    # one answer per labelled segment
    clipmg-predict talk.mp4 --stride 8 --video-out talk-annotated.mp4   # sliding windows, as live

Each clip, segment or window becomes one window of the model with the evaluation sampling
(``clip_samples``: any number of frames -> 32 pose samples and 8 RGB samples, the crop boxes as
evaluation computes them), run through ``stream.window.clip_window`` on the same engines and pose
backends as the live recognizer (the one it also uses for a file shorter than one window).

- ``--whole-clip`` (default): the whole video is one window.
- ``--segments FILE``: a CSV with columns ``clip,start_frame,end_frame`` (0-based, inclusive) and
  optionally ``class_name`` or ``label``; the rows whose ``clip`` is this video's file name are used
  (one file may describe several clips), and each answer carries the row's label as ``true_label``.
- ``--stride S``: windows of ``32 x Δp`` frames every ``S x Δp`` frames, the live schedule; a video
  shorter than one window gives one whole-clip window, as live.

Output: one line per window on stdout; ``--json OUT`` writes JSON lines (``-``: stdout instead of the
lines) with ``clip``, ``start_frame``, ``end_frame``, ``topk`` (``[{"index", "label", "p"}]`` as in
window messages), ``label`` (the decided label, as in window messages), ``p``, ``person_fraction``,
``true_label`` (with ``--segments``, when the row has one) and ``model``. ``--video-out`` writes the
video with the skeleton and the covering window's top-3 drawn on it. Exit status 2 for anything the
user can fix (a missing file, a CSV without rows for this clip, a segment beyond the video's end).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

import cv2
import msgspec
import numpy as np
from tqdm import tqdm

from clipmg.model import settings
from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.layouts import extract_layout
from clipmg.model.logs import LogStyle, set_verbose
from clipmg.model.sampling import clip_samples
from clipmg.model.settings import allowed_of, setting

from .config import POSE_BACKENDS, PRECISIONS, StreamConfig, _kv
from .display import Overlay, annotate
from .messages import topk_entries
from .pose import create_pose_backend
from .quiet import native_stderr_off
from .ringbuffer import Frame
from .sources import IMAGE_EXTENSIONS, open_source
from .supervisor import demo_engine
from .window import Decision, clip_window
from .worker import load_worker_engine

log = logging.getLogger(__name__)  # its INFO lines: "[clipmg-predict] ..." (model/logs.py)
STYLE = LogStyle("%(name)s %(levelname)s %(message)s")  # warnings as before: no time stamp

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class PredictError(ClipmgError, ValueError):
    """Something the user can fix; the message is one sentence."""


@dataclass(frozen=True)
class Segment:
    start: int  # first frame, 0-based
    end: int  # last frame, inclusive
    true_label: Optional[str] = None


# ------------------------------------------------------------------------------------ planning
def read_segments(path: Path, clip: str, frames: int) -> List[Segment]:
    """The rows of CSV ``path`` whose ``clip`` is ``clip``, checked against the video's ``frames``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or ())
            missing = {"clip", "start_frame", "end_frame"} - cols
            if missing:
                raise PredictError(
                    f"--segments {path}: needs the columns clip, start_frame, end_frame "
                    f"(missing {', '.join(sorted(missing))})"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PredictError(f"--segments {path}: cannot read it ({type(e).__name__}: {e})") from None
    label_col = "class_name" if "class_name" in cols else "label" if "label" in cols else None
    out: List[Segment] = []
    for line, row in enumerate(rows, start=2):
        if (row.get("clip") or "").strip() != clip:
            continue
        try:
            start, end = int(row["start_frame"]), int(row["end_frame"])
        except (TypeError, ValueError):
            raise PredictError(
                f"--segments {path} line {line}: start_frame and end_frame must be integers, got "
                f"{row.get('start_frame')!r}, {row.get('end_frame')!r}"
            ) from None
        if not 0 <= start <= end:
            raise PredictError(
                f"--segments {path} line {line}: frames {start}-{end} are not a range (0 <= start <= end)"
            )
        if end >= frames:
            raise PredictError(
                f"--segments {path} line {line}: frame {end} is past the end of {clip} "
                f"({frames} frames, numbered 0-{frames - 1})"
            )
        out.append(Segment(start, end, (row.get(label_col) or "").strip() or None if label_col else None))
    if not out:
        clips = sorted({(r.get("clip") or "").strip() for r in rows} - {""})
        raise PredictError(f"--segments {path} has no rows for clip {clip!r} (its clips: {', '.join(clips) or 'none'})")
    return out


def sliding_segments(frames: int, stride: int, pose_every: int, pose_frames: int = 32) -> List[Segment]:
    """The live schedule's windows over a video of ``frames`` frames (one whole-clip window when shorter)."""
    span, step = pose_frames * pose_every, stride * pose_every
    if frames < span:
        return [Segment(0, frames - 1)]
    return [Segment(s, s + span - 1) for s in range(0, frames - span + 1, step)]


def count_frames(path: Path) -> int:
    """Frames in a video file or image folder (decoded count, not the container's guess)."""
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise PredictError(f"{path}: not a video file OpenCV/FFmpeg can open")
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise PredictError(f"{path}: no frame could be decoded")
    return n


def read_frames(path: Path, wanted: Sequence[int]) -> Dict[int, Any]:
    """The frames numbered ``wanted`` (RGB, as the live capture delivers them), read in one pass."""
    want = set(int(i) for i in wanted)
    out: Dict[int, Any] = {}
    src = open_source(str(path), loop=False)
    fps = src.fps or 30.0
    try:
        i = 0
        while len(out) < len(want):
            image, _ = src.read()
            if image is None:
                break
            if i in want:
                out[i] = Frame(image=image, seq=i, t_mono=i / fps, t_wall=i / fps, keypoints=None)
            i += 1
    finally:
        src.close()
    return out


# ------------------------------------------------------------------------------------ running
def predict(
    video: Path,
    engine: Any,
    pose: Any,
    segments: Sequence[Segment],
    *,
    top_k: int = 3,
    threshold: float = 0.0,
    background: Sequence[str] = (),
    progress: bool = False,
) -> Tuple[List[Dict[str, Any]], Dict[int, np.ndarray]]:
    """One answer per segment of ``video``: the JSON-line records (see the module docstring), and the
    keypoints ``(137, 3)`` of every frame the pose backend ran on, by frame number."""
    cfg = engine.config
    c = cfg.clip
    decision = Decision(tuple(engine.class_names), top_k, threshold, tuple(background), "answer")
    plans = [clip_samples(s.start, s.end, c.pose_frames, c.rgb_frames, c.rgb_offset)[0] for s in segments]
    needed = sorted({int(i) for p in plans for i in p})
    frames = read_frames(video, needed)
    if len(frames) < len(needed):
        raise PredictError(
            f"{video}: frame {needed[len(frames)]} could not be read (the file is shorter than it looked)"
        )
    poses: Dict[int, Any] = {}
    it: Any = needed
    if progress:
        it = tqdm(needed, desc="pose", unit="frame", file=sys.stderr, leave=False)
    for i in it:  # in frame order: video-mode pose trackers expect time to move forward
        res = pose(frames[i])
        poses[i] = (extract_layout(res.keypoints, cfg.pose.layout), bool(res.person), res.keypoints)
    out: List[Dict[str, Any]] = []
    for n, seg in enumerate(segments):
        res = clip_window(
            engine,
            cfg,
            range(seg.start, seg.end + 1),
            lambda f: poses[f.seq][:2],
            frames.__getitem__,
            decision,
            window=n,
        )
        a = res.answer
        rec: Dict[str, Any] = {
            "clip": video.name,
            "start_frame": seg.start,
            "end_frame": seg.end,
            "topk": msgspec.to_builtins(topk_entries(a.top)),  # as in window messages
            "label": a.label,
            "p": None if a.p is None else round(a.p, 6),
            "person_fraction": round(res.person_fraction, 4),
            "model": dict(engine.identity),
        }
        if seg.true_label is not None:
            rec["true_label"] = seg.true_label
        out.append(rec)
    return out, {i: p[2] for i, p in poses.items()}


def write_video(
    video: Path, out_path: Path, records: Sequence[Dict[str, Any]], poses: Dict[int, np.ndarray], banner: str = ""
) -> int:
    """``video`` with the skeleton (of the nearest posed frame) and the covering window's top-3 drawn."""
    posed = np.array(sorted(poses), np.int64)
    src = open_source(str(video), loop=False)
    writer = None
    n = 0
    try:
        while True:
            image, _ = src.read()
            if image is None:
                break
            cover = [r for r in records if r["start_frame"] <= n <= r["end_frame"]]
            span = [
                f"frame {n}" + (f", window frames {cover[0]['start_frame']}-{cover[0]['end_frame']}" if cover else "")
            ]
            ov = Overlay(
                top=[(t["label"], t["p"]) for t in cover[0]["topk"]] if cover else (),
                label=cover[0]["label"] if cover else None,
                banner=banner,
                window=records.index(cover[0]) if cover else -1,
                extra=span,
                live=False,
            )
            kp = None
            if posed.size:
                near = int(posed[np.argmin(np.abs(posed - n))])
                kp = poses[near] if abs(near - n) <= 2 else None
            frame = annotate(image, kp, ov)
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter.fourcc(*"mp4v"), float(src.fps or 25.0), (w, h))
                if not writer.isOpened():
                    raise PredictError(f"--video-out {out_path}: cannot write a video there")
            writer.write(frame)
            n += 1
    finally:
        src.close()
        if writer is not None:
            writer.release()
    return n


def format_line(rec: Dict[str, Any]) -> str:
    top = ", ".join(f"{t['label']} {t['p']:.2f}" for t in rec["topk"])
    truth = f"  (labelled: {rec['true_label']})" if "true_label" in rec else ""
    return (
        f"{rec['clip']}  frames {rec['start_frame']}-{rec['end_frame']}  label={rec['label']}  "
        f"top: {top}  person {rec['person_fraction']:.0%}{truth}"
    )


# ------------------------------------------------------------------------------------ command line
@dataclass(frozen=True)
class PredictOptions:
    """``clipmg-predict``'s flags, each declared once (``model/settings.py``); the ones it shares with
    ``clipmg-live`` (``--pose-every``, ``--top-k``, ``--threshold``, ``--threads``) allow what the live
    flags allow (``allowed_of(StreamConfig, ...)``). The parser and the checks are generated from them."""

    engine: Optional[str] = setting(
        None, "checkpoint (.safetensors) or exported engine directory (default: the synthetic demo model)"
    )
    pose: str = setting("mediapipe", "pose backend (default %(default)s)", POSE_BACKENDS)
    pose_option: Tuple[Tuple[str, Any], ...] = setting(
        (), "pose backend option (repeatable), e.g. model_complexity=2", type=_kv, action="append", metavar="KEY=VALUE"
    )
    segments: Optional[Path] = setting(
        None,
        "labelled segments: CSV with clip,start_frame,end_frame[,class_name|label]",
        type=Path,
        metavar="CSV",
        exclusive=True,  # one of --segments, --whole-clip, --stride
        also=(
            (("--whole-clip",), dict(action="store_true", help="the whole video as one window (default)")),
            (("--stride",), dict(type=int, default=None, help="sliding windows every S pose samples, as live")),
        ),
    )
    stride: Optional[int] = None  # --stride, listed with --segments (one of the three)
    pose_every: int = setting(1, "Δp for --stride (default %(default)s)", allowed_of(StreamConfig, "pose_every"))
    top_k: int = setting(3, "labels per answer (default %(default)s)", allowed_of(StreamConfig, "top_k"))
    threshold: float = setting(0.0, "decide a label only at this probability", allowed_of(StreamConfig, "threshold"))
    json_out: Optional[str] = setting(
        None,
        "write JSON lines to OUT ('-': stdout, instead of the text lines)",
        flag="--json",
        dest="json_out",
        metavar="OUT",
    )
    video_out: Optional[Path] = setting(None, "write the annotated video", type=Path, metavar="OUT.mp4")
    threads: Optional[int] = setting(None, "CPU threads for the engine", allowed_of(StreamConfig, "threads"))
    precision: str = setting("auto", "exported ONNX engines: auto, fp32, int8", PRECISIONS)
    verbose: bool = setting(False, "show the pose library's own messages", flag=("-v", "--verbose"))

    def __post_init__(self) -> None:
        if self.stride is not None and (self.stride < 4 or self.stride % 4):
            raise PredictError(
                f"--stride {self.stride} must be a positive multiple of 4 (the pose samples per RGB frame)"
            )
        settings.check_fields(self, terse=True)
        if self.pose == "synthetic":
            raise PredictError(
                "--pose synthetic needs the synthetic camera's keypoints, which a video file has not; "
                "use mediapipe, openpose or replay"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PredictOptions":
        values = settings.values_from_args(cls, args)
        return cls(**{**values, "pose_option": tuple(values["pose_option"]), "stride": args.stride})


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="clipmg-predict", description=__doc__.split("\n\n")[0], epilog="See docs/streaming.md (clipmg-predict)."
    )
    ap.add_argument("video", type=Path, help="video file, GIF or image folder")
    settings.add_arguments(ap, PredictOptions)
    return ap


def _check(video: Path, opts: PredictOptions) -> None:
    """The files named on the command line: each must exist (an output's folder must)."""
    if not video.exists():
        raise PredictError(f"{video}: no such video file or folder")
    if opts.segments is not None and not opts.segments.is_file():
        raise PredictError(f"--segments {opts.segments}: no such file")
    if opts.engine is not None and not Path(opts.engine).exists():
        raise PredictError(f"--engine {opts.engine}: no such file or directory")
    for flag, path in (
        ("--json", None if opts.json_out in (None, "-") else Path(opts.json_out)),
        ("--video-out", opts.video_out),
    ):
        if path is not None and not path.expanduser().resolve().parent.is_dir():
            raise PredictError(
                f"{flag} {path}: the folder {path.parent} does not exist; create it or choose another file"
            )


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    """``clipmg-predict``: 0 answered, 2 bad input (one line), 1 an internal error (one line naming the log
    file that holds its traceback). What it says besides the answers: ``[clipmg-predict] ...`` on stderr."""
    return run_command("clipmg-predict", lambda: _main(argv, out), style=STYLE)  # its line: sys.stderr as it is then


def _main(argv: Optional[Sequence[str]], out: TextIO) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    opts = PredictOptions.from_args(args)
    if not opts.verbose:
        native_stderr_off()
    set_verbose(opts.verbose)
    _check(args.video, opts)
    return _run(args.video, opts, out)


def _run(video: Path, opts: PredictOptions, out: TextIO) -> int:
    engine_path, banner = opts.engine, ""
    if engine_path is None:
        engine_path, banner = demo_engine(), "synthetic demo model"
    frames = count_frames(video)
    if opts.segments is not None:
        segments = read_segments(opts.segments, video.name, frames)
    elif opts.stride is not None:
        segments = sliding_segments(frames, opts.stride, opts.pose_every)
    else:
        segments = [Segment(0, frames - 1)]
    cfg = StreamConfig(engine=str(engine_path), threads=opts.threads, precision=opts.precision)
    engine = load_worker_engine(cfg)  # FatalWorkerError, PoseBackendError: ClipmgErrors, one line, exit 2
    pose = create_pose_backend(opts.pose, **dict(opts.pose_option))
    with pose:  # type: ignore[attr-defined]  # every backend create_pose_backend returns is a context manager
        records, keypoints = predict(
            video,
            engine,
            pose,
            segments,
            top_k=opts.top_k,
            threshold=opts.threshold,
            background=StreamConfig().background,
            progress=sys.stderr.isatty(),
        )
    if opts.json_out == "-":
        for r in records:
            print(json.dumps(r), file=out, flush=True)
    else:
        for r in records:
            print(format_line(r), file=out, flush=True)
        if opts.json_out:
            Path(opts.json_out).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            log.info(f"JSON lines: {opts.json_out}")
    labelled = [r for r in records if "true_label" in r]
    if labelled:
        hits = sum(r["topk"][0]["label"] == r["true_label"] for r in labelled)
        log.info(f"top-1 equals the labelled class in {hits} of {len(labelled)} segments")
    if opts.video_out:
        n = write_video(video, opts.video_out, records, keypoints, banner)
        log.info(f"annotated video: {opts.video_out} ({n} frames)")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
