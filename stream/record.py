"""``clipmg-record``: record your own gestures as a training set, one prompted take at a time.

    clipmg-record --classes "thumbs up,wave,no gesture" --takes 3 --out my-gestures
    clipmg-record --classes classes.txt --source clip.gif --schedule "fold arm=18-42,play things=0-17" \
        --countdown 0 --rest 0 --no-idle --no-prompt --out test-rec            # a file as the camera

Each *round* records every gesture once: the gesture's name and a countdown are shown (on the
terminal, and in an OpenCV window where a display exists), then the take is recorded for
``--seconds``; its frames go through the pose backend (MediaPipe by default, offline) and the take's
detection rates are printed at once, so a take without hands can be redone. With ``--idle`` (the
default) each round also records a "no gesture" take, which the live recognizer needs to stay
quiet between gestures. The layout written is the one the training readers accept
(``stream/record_layout.py``), with a summary and the train/validation split at the end.

A webcam is recorded in real time. A file (video, GIF, image folder) stands in for a camera: each
take reads the next ``seconds x fps`` frames of it (wrapping at its end), or, with ``--schedule``,
the frames the schedule gives for that gesture: that is how the tests record from real clips.
Ctrl-C (or ``q`` in the window) stops and keeps every finished take. Anything the user can fix (a
class file that does not exist, an out folder that is not empty or not writable, a source that
cannot be opened) is one sentence and exit status 2. No PyTorch here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from clipmg.model import settings
from clipmg.model.config import ConfigError
from clipmg.model.errors import run_command
from clipmg.model.settings import Range, setting

from .capture import fit_frame
from .config import MAX_SIZE, _kv, normalize_source_options
from .display import can_display
from .pose import create_pose_backend
from .pose_base import PoseBackendError
from .quiet import native_stderr_off
from .record_layout import (
    RecordError,
    RoundBuffer,
    check_root,
    format_summary,
    is_background,
    next_round_id,
    prepare_root,
    summarize,
    write_round,
)
from .ringbuffer import Frame
from .sources import SourceOpenError, open_source, spec_is_live

log = logging.getLogger("clipmg.record")

NO_GESTURE = "no gesture"
RECORD_POSE_BACKENDS: Tuple[str, ...] = ("mediapipe", "openpose", "synthetic")  # replay needs its own files


@dataclass(frozen=True)
class RecordConfig:
    """The settings of one recording session; each field with a flag is declared once (``setting``)."""

    classes: str = setting("", "the gestures: comma-separated names, or a file with one name a line (required)")
    out: str = setting("", "new folder for the recording (the MiGA layout clipmg-train reads; required)")
    takes: int = setting(3, "takes of each gesture (a round records every gesture once)", Range(1, 1000))
    seconds: float = setting(3.0, "length of one take in seconds", Range(0.1, 600.0))
    countdown: float = setting(
        3.0, "seconds of countdown before each take (recorded, unlabelled: 'no gesture' for --background)", Range(0, 60)
    )
    rest: float = setting(1.0, "seconds recorded after each take, unlabelled", Range(0, 60))
    idle: bool = setting(
        True,
        "do not record a 'no gesture' take in each round (by default one is, so the live model can say "
        "that nothing is happening)",
        flag="--no-idle",
        action="store_true",
        flag_default=False,
    )
    source: str = setting("0", "webcam index, video file, GIF or image folder (a file stands in for the camera)")
    source_options: Tuple[Tuple[str, Any], ...] = setting(
        (),
        "extra source option (repeatable), as for clipmg-live: width=1280 height=720 for a webcam, fps=25 for a folder",
        flag="--source-option",
        type=_kv,
        action="append",
        metavar="KEY=VALUE",
    )
    schedule: str = setting(
        "",
        "file sources: the frames of each gesture as 'NAME=START-END,...' (0-based, inclusive); every "
        "take of that gesture reads them (for tests and demos)",
    )
    pose: str = setting("mediapipe", "pose backend", RECORD_POSE_BACKENDS)
    pose_options: Tuple[Tuple[str, Any], ...] = setting(
        (),
        "extra pose backend option (repeatable)",
        flag="--pose-option",
        type=_kv,
        action="append",
        metavar="KEY=VALUE",
    )
    append: bool = setting(False, "add rounds to an existing recording of the same gestures")
    prompt: bool = setting(
        True,
        "terminal only: no OpenCV window (the default shows one where a display exists)",
        flag="--no-prompt",
        action="store_true",
        flag_default=False,
    )

    def __post_init__(self) -> None:
        settings.check_fields(self, terse=True)


# ------------------------------------------------------------------------------------ parsing
def parse_classes(text: str) -> List[str]:
    """``a,b,c`` or the path of a file with one name a line; refused: a missing file, fewer than one
    gesture, a name twice, a name with a comma."""
    text = text.strip()
    if not text:
        raise RecordError("--classes is required: the gestures, comma-separated, or a file with one a line")
    path = Path(text).expanduser()
    looks_like_file = path.suffix.lower() in (".txt", ".csv", ".list") or "/" in text
    if path.is_file():
        try:
            names = [n.strip() for n in path.read_text(encoding="utf-8").splitlines() if n.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise RecordError(f"--classes {path}: cannot read the file ({e.__class__.__name__})") from None
    elif looks_like_file and "," not in text:
        raise RecordError(f"--classes {text}: no such class file (give a file with one name a line, or a,b,c)")
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
    bad = next((n for n in names if "," in n), None)
    if bad is not None:
        raise RecordError(f"--classes: the name {bad!r} holds a comma; name each gesture without one")
    if not names:
        raise RecordError(f"--classes {text}: no gesture names in it")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise RecordError(f"--classes: {dup!r} is named twice; name each gesture once")
    return names


def parse_schedule(text: str, classes: List[str]) -> Dict[str, Tuple[int, int]]:
    """``NAME=START-END,...`` -> ``{name: (start, end)}``; every name must be a gesture being recorded."""
    out: Dict[str, Tuple[int, int]] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, eq, rng = part.rpartition("=")
        a, dash, b = rng.partition("-")
        if not eq or not dash or not a.strip().isdigit() or not b.strip().isdigit() or int(a) > int(b):
            raise RecordError(f"--schedule {part!r}: expected NAME=START-END with 0 <= START <= END, e.g. 'wave=0-40'")
        if name.strip() not in classes:
            raise RecordError(
                f"--schedule names {name.strip()!r}, which is not one of the gestures: {', '.join(classes)}"
            )
        out[name.strip()] = (int(a), int(b))
    missing = [c for c in classes if c not in out]
    if missing:
        idle = " (or --no-idle)" if any(is_background(m) for m in missing) else ""
        raise RecordError(f"--schedule gives no frames for {', '.join(missing)}; give every gesture a range{idle}")
    return out


def parse_args(argv: Optional[List[str]]) -> RecordConfig:
    ap = argparse.ArgumentParser(
        prog="clipmg-record",
        description="Record your own gestures (prompted takes, MediaPipe keypoints) as a clipmg-train data set.",
    )
    settings.add_arguments(ap, RecordConfig)
    ap.add_argument("-v", "--verbose", action="store_true", help="show the pose library's own messages")
    args = ap.parse_args(argv)
    if not args.verbose:
        native_stderr_off()
    values = settings.values_from_args(RecordConfig, args)
    values.update(
        idle=not args.no_idle,
        prompt=not args.no_prompt,
        source_options=normalize_source_options(args.source, args.source_option),
        pose_options=tuple(args.pose_option),
    )
    return RecordConfig(**values)


# ------------------------------------------------------------------------------------ the camera
class Camera:
    """Frames for the takes: a live source in real time, or a file read on from where the last take
    stopped (wrapping at its end, so a short GIF serves every take) or at a scheduled frame."""

    def __init__(self, spec: str, options: Dict[str, Any]) -> None:
        self.spec, self.options = spec, options
        self.live = spec_is_live(spec)
        self.pos = 0  # file sources: the frame number of the next read
        self.src = self._open()
        self.fps = float(self.src.fps) if self.src.fps and self.src.fps > 0 else 30.0

    def _open(self) -> Any:
        try:
            return open_source(self.spec, **self.options)
        except SourceOpenError as e:
            raise RecordError(f"--source: {e}") from None

    def read(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The next frame (RGB, cropped to even sides for the H.264 writer) and the source's keypoints."""
        for attempt in range(2):
            frame, kp = self.src.read()
            if frame is not None:
                self.pos += 1
                frame, kp, _ = fit_frame(frame, kp, MAX_SIZE[1], MAX_SIZE[0])
                h, w = frame.shape[:2]
                return np.ascontiguousarray(frame[: h - h % 2, : w - w % 2]), kp
            if self.live or self.src.state != "ended" or attempt:
                break
            self.src.close()  # a file ended: play it again from its first frame
            self.src, self.pos = self._open(), 0
        raise RecordError(
            f"--source {self.src.name}: no more frames ({self.src.state}: {self.src.detail or 'no detail'})"
        )

    def seek(self, frame: int) -> None:
        """File sources: make ``frame`` the next one read (reopening to go back)."""
        if frame < self.pos:
            self.src.close()
            self.src, self.pos = self._open(), 0
        while self.pos < frame:
            self.read()
            if self.pos == 0:
                raise RecordError(f"--schedule: frame {frame} is beyond the end of {self.src.name}")

    def close(self) -> None:
        self.src.close()


# ------------------------------------------------------------------------------------ prompts
class Prompter:
    """Says what to do: always on the terminal; in an OpenCV window too where one can open."""

    def __init__(self, window: bool) -> None:
        self.window = window and can_display()
        self.name = "clipmg-record"

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def show(self, frame: np.ndarray, text: str, colour: Tuple[int, int, int]) -> None:
        """Draw ``text`` over the frame; ``q`` or Esc stops the recording (as Ctrl-C does)."""
        if not self.window:
            return
        img = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        scale = max(0.6, img.shape[1] / 800)
        cv2.putText(img, text, (16, int(48 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 6, cv2.LINE_AA)
        cv2.putText(img, text, (16, int(48 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2, cv2.LINE_AA)
        cv2.imshow(self.name, img)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise KeyboardInterrupt

    def close(self) -> None:
        if self.window:
            cv2.destroyAllWindows()


# ------------------------------------------------------------------------------------ the session
class Session:
    """One recording: rounds of prompted takes, each take's frames run through the pose backend."""

    def __init__(self, cfg: RecordConfig, classes: List[str], pose: Any, camera: Camera, prompter: Prompter) -> None:
        self.cfg, self.classes, self.pose, self.cam, self.ui = cfg, classes, pose, camera, prompter
        self.schedule = parse_schedule(cfg.schedule, classes) if cfg.schedule else None
        self.seq = 0
        self.live_frames, self.live_s = 0, 0.0  # a camera's frames and seconds in this round: its real rate

    def _collect(self, seconds: float, text: str, colour: Tuple[int, int, int]) -> List[Tuple[np.ndarray, Any]]:
        """Frames for ``seconds``: real time from a camera, ``seconds x fps`` frames of a file."""
        out: List[Tuple[np.ndarray, Any]] = []
        if self.cam.live:
            t0 = time.monotonic()
            while (left := seconds - (time.monotonic() - t0)) > 0:
                frame, kp = self.cam.read()
                self.ui.show(frame, text.format(left=left), colour)
                out.append((frame, kp))
            self.live_frames += len(out)
            self.live_s += time.monotonic() - t0
        else:
            for k in range(int(round(seconds * self.cam.fps))):
                frame, kp = self.cam.read()
                self.ui.show(frame, text.format(left=seconds - k / self.cam.fps), colour)
                out.append((frame, kp))
        return out

    def _scheduled(self, cls: str) -> List[Tuple[np.ndarray, Any]]:
        assert self.schedule is not None
        start, end = self.schedule[cls]
        self.cam.seek(start)
        out = []
        for _ in range(start, end + 1):
            frame, kp = self.cam.read()
            if self.cam.pos == 0:  # wrapped: the range runs past the file's end
                raise RecordError(f"--schedule {cls}={start}-{end}: the source {self.cam.src.name} ends before {end}")
            self.ui.show(frame, cls, (0, 255, 0))
            out.append((frame, kp))
        return out

    def _poses(self, frames: List[Tuple[np.ndarray, Any]], size: Tuple[int, int]) -> Tuple[List[np.ndarray], List[Any]]:
        """Every frame resized to the round's size, and its keypoints (None: nobody found)."""
        images, kps = [], []
        for img, src_kp in frames:
            if (img.shape[1], img.shape[0]) != size:  # an image folder may change size: the video cannot
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                src_kp = None
            now = time.monotonic()
            res = self.pose(Frame(img, self.seq, now, time.time(), src_kp))
            self.seq += 1
            images.append(img)
            kps.append(res.keypoints if res.person else None)
        return images, kps

    def take(self, rnd: RoundBuffer, cls: str, n: int, total: int) -> None:
        """Countdown, take, rest of one gesture, appended to ``rnd``; the take is labelled once its
        keypoints are in."""
        cfg = self.cfg
        what = "sit as you would, no gesture" if is_background(cls) else cls
        self.ui.say(f"[{rnd.rid}] take {n}/{total}: {what}")
        if self.schedule is not None:
            before, during, after = [], self._scheduled(cls), []
        else:
            before = self._collect(cfg.countdown, f"{what} in {{left:.0f}}", (255, 200, 0)) if cfg.countdown else []
            during = self._collect(cfg.seconds, f"{what}  ({{left:.1f}} s)", (0, 0, 255))
            after = self._collect(cfg.rest, "rest", (200, 200, 200)) if cfg.rest else []
        if not during:
            raise RecordError("--seconds gives no frame at this frame rate; record longer takes")
        size = (
            (rnd.frames[0].shape[1], rnd.frames[0].shape[0])
            if rnd.frames
            else (during[0][0].shape[1], during[0][0].shape[0])
        )
        images, kps = self._poses(before + during + after, size)
        first = rnd.add(images, kps)
        t = rnd.add_take(cls, first + len(before), first + len(before) + len(during) - 1)
        self.ui.say(
            f"  {t.frames} frames, person in {t.person / t.frames:.0%}, hands in {t.hands / t.frames:.0%}"
            + ("  <- nobody found: check that you are in view" if t.person < t.frames / 2 else "")
        )

    def run(self, root: Path, existing: List[str]) -> None:
        plan = list(self.classes)
        for r in range(self.cfg.takes):
            rid = next_round_id(existing)
            existing.append(rid)
            rnd = RoundBuffer(rid, self.cam.fps)
            self.live_frames, self.live_s = 0, 0.0
            try:
                for i, cls in enumerate(plan):
                    self.take(rnd, cls, r * len(plan) + i + 1, self.cfg.takes * len(plan))
            finally:  # Ctrl-C or a failing camera mid-round: the finished takes are kept
                if rnd.takes:
                    if self.cam.live and self.live_s > 0:  # the real rate: a camera's announced one is often not
                        rnd.fps = float(np.clip(self.live_frames / self.live_s, 1.0, 120.0))
                    write_round(root, rnd, self.classes, self.cam.src.name)
                    log.info("wrote %s", root / rid)


def resolve_classes(cfg: RecordConfig) -> List[str]:
    """The gestures to record, plus "no gesture" with ``--idle`` (unless it is named already)."""
    classes = parse_classes(cfg.classes)
    if cfg.idle and not any(is_background(c) for c in classes):
        classes.append(NO_GESTURE)
    if len(classes) < 2:
        raise RecordError(
            f"--classes {cfg.classes}: a model needs two classes at least; name another gesture or drop --no-idle"
        )
    return classes


def main(argv: Optional[List[str]] = None) -> int:
    """``clipmg-record``: exit 0, 2 with one sentence for what the user can fix, 130 on Ctrl-C (the
    finished takes are kept)."""
    return run_command("clipmg-record", lambda: _main(argv))


def _main(argv: Optional[List[str]]) -> int:
    cfg = parse_args(argv)  # before logging is set up: it may point descriptor 2 elsewhere (quiet.py)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    if not cfg.out:
        raise ConfigError("--out is required: a new folder for the recording")
    classes = resolve_classes(cfg)
    if cfg.schedule:
        if spec_is_live(cfg.source):
            raise RecordError("--schedule needs a file --source (a video, GIF or folder), not a camera")
        parse_schedule(cfg.schedule, classes)  # refused before the camera opens
    root = Path(cfg.out).expanduser()
    check_root(root, cfg.append)  # the cheap refusals first, before a camera opens
    camera = Camera(cfg.source, dict(cfg.source_options))
    try:
        try:
            pose = create_pose_backend(cfg.pose, **dict(cfg.pose_options))
        except PoseBackendError as e:
            raise RecordError(f"--pose {cfg.pose}: {e}") from None
        try:
            existing = prepare_root(root, classes, cfg.append)  # written only once source and pose work
            prompter = Prompter(cfg.prompt)
            print(f"recording {', '.join(classes)}: {cfg.takes} rounds into {root}", file=sys.stderr)
            try:
                Session(cfg, classes, pose, camera, prompter).run(root, list(existing))
            finally:  # also after Ctrl-C: what was kept
                prompter.close()
                print(format_summary(summarize(root)))
        finally:
            pose.close()
    finally:
        camera.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
