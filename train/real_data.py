"""The real-data report: what clipmg does on real people, measured on the shared real iMiGUE samples.

    python -m clipmg.train.real_data                                  # prints the report
    python -m clipmg.train.real_data --markdown docs/real-data.md --json real-data.json
    python -m clipmg.train.real_data --engine runs/x/export           # another model than the demo

Three parts, all on files that are never trained or tuned on (they are the test):

1. **The readers on a whole real video**: iMiGUE video 298's raw OpenPose JSON (7 minutes, 10 534
   frames) and its MiGA label file, read by the same readers ``clipmg-train`` uses: frames, frames
   with a person, frames without a hand, labelled clips by class.
2. **Answers on labelled real segments**: ``clipmg-predict``'s ``predict`` (evaluation sampling, the
   live engines and pose backends) on every labelled segment of the real GIFs, top-1 and top-3
   against the label.
3. **Keypoints, synthetic against real** (``model/keypoint_stats.py``): the synthetic set's observed
   keypoints, real OpenPose (video 298) and MediaPipe (the shipped backend) on the real GIFs, side by
   side: confidences, missing joints and hands, jitter, idle sway, wrist speeds, hand-to-face
   distances, all lengths in shoulder widths.

``--data DIR`` is the shared data folder (default: ``../shared/data`` beside the repository, or
``$CLIPMG_SHARED_DATA``). The output names the date, the machine and the model.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.files import atomic_write_text
from clipmg.model.keypoint_stats import keypoint_statistics, labels_from_segments
from clipmg.model.machine import cpu_line
from clipmg.model.synthetic import SynthConfig, synthetic_stream
from clipmg.stream.config import StreamConfig
from clipmg.stream.demo import demo_model
from clipmg.stream.pose import create_pose_backend
from clipmg.stream.predict import count_frames, predict, read_frames, read_segments
from clipmg.stream.quiet import native_stderr_off
from clipmg.stream.worker import load_worker_engine

from .readers import IMIGUE_CLASSES, Issues, read_label_csv, read_openpose_folder

PROG = "clipmg-real-report"
VIDEO_298 = ("imigue-298-skeleton", "298")
CLIPS = "imigue-clips"
SYNTH_SEEDS = tuple(range(8))
SYNTH_FRAMES = 750  # per seed: 30 s at 25 fps
FITTED_OBSERVER = "openpose"  # the observer profile fitted to video 298 (python -m clipmg.train.fit_observer)
FITTED_POSTURE = "seated"  # the posture profile fitted to the same frames
COLUMNS = (
    "synthetic",
    "synthetic_fitted",
    "synthetic_seated",
    "synthetic_straddle",
    "openpose_298",
    "mediapipe_gifs",
)


def default_data_dir() -> Path:
    env = os.environ.get("CLIPMG_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ------------------------------------------------------------------------------------ part 1
def video_298(data: Path) -> Dict[str, Any]:
    """Video 298 through the training readers: counts, classes, missing frames and hands."""
    folder = data.joinpath(*VIDEO_298)
    issues = Issues()
    kp = read_openpose_folder(folder / "openpose", "298", issues=issues)
    rows = read_label_csv(folder / "298_label.csv", num_classes=len(IMIGUE_CLASSES), issues=issues)
    person = (kp[:, :25, 2] > 0).any(axis=1)
    hand = {side: ((kp[:, off : off + 21, 2] > 0).sum(axis=1) >= 3) for side, off in (("left", 95), ("right", 116))}
    classes: Dict[str, int] = {}
    for r in rows:
        classes[IMIGUE_CLASSES[r.label]] = classes.get(IMIGUE_CLASSES[r.label], 0) + 1
    return {
        "frames": int(len(kp)),
        "frames_with_person": int(person.sum()),
        "frames_without_left_hand": int((person & ~hand["left"]).sum()),
        "frames_without_right_hand": int((person & ~hand["right"]).sum()),
        "clips": len(rows),
        "frames_labelled": int(sum(r.end - r.start + 1 for r in rows)),
        "classes": dict(sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "skipped": issues.summary(),
        "_keypoints": kp,
        "_labels": labels_from_segments(len(kp), [(r.label, r.start, r.end) for r in rows]),
    }


# ------------------------------------------------------------------------------------ part 2
def real_segments(
    data: Path, engine_path: Optional[str], pose_name: str = "mediapipe", threads: Optional[int] = None
) -> Dict[str, Any]:
    """``predict`` on every labelled segment of the real GIFs; one record a segment."""
    labels = data / CLIPS / "labels.csv"
    with open(labels, newline="", encoding="utf-8") as f:
        clips = sorted({row["clip"] for row in csv.DictReader(f) if row.get("clip")})
    path = engine_path or str(demo_model())
    engine = load_worker_engine(StreamConfig(engine=path, threads=threads))
    records: List[Dict[str, Any]] = []
    for clip in clips:
        video = data / CLIPS / clip
        segments = read_segments(labels, clip, count_frames(video))
        with create_pose_backend(pose_name) as pose:
            recs, _ = predict(video, engine, pose, segments, top_k=3, background=StreamConfig().background)
        records.extend(recs)
    for r in records:
        names = [t["label"] for t in r["topk"]]
        r["top1_hit"] = names[0] == r["true_label"]
        r["top3_hit"] = r["true_label"] in names
    known = set(engine.class_names)
    scored = [r for r in records if r["true_label"] in known]
    return {
        "model": dict(engine.identity),
        "demo": engine_path is None,
        "pose": pose_name,
        "segments": records,
        "scored": len(scored),
        "top1": sum(r["top1_hit"] for r in scored),
        "top3": sum(r["top3_hit"] for r in scored),
        "not_in_model": sorted({r["true_label"] for r in records} - known),
    }


# ------------------------------------------------------------------------------------ part 3
def _combine(stats: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Median over sequences of every number (dicts key by key); frame counts are summed."""
    out: Dict[str, Any] = {}
    for key, value in stats[0].items():
        if isinstance(value, dict):
            out[key] = _combine([s[key] for s in stats])
        elif key in ("frames", "gesture_frames", "idle_frames", "sway_windows"):
            out[key] = int(sum(s[key] for s in stats))
        else:
            vals = [float(s[key]) for s in stats if s[key] is not None and not math.isnan(float(s[key]))]
            out[key] = float(np.median(vals)) if vals else float("nan")
    out["sequences"] = len(stats)
    return out


def synthetic_keypoints(
    observer: str = "v1", posture: str = "v1", hands: str = "v1", timing: str = "v1"
) -> Dict[str, Any]:
    """The synthetic set's observed keypoints (what its OpenPose JSON files hold), one subject a seed,
    seen by ``observer`` (``SynthConfig.observer``), people built by ``posture`` with ``hands``, labels
    placed on the movements by ``timing``."""
    cfg = SynthConfig(observer=observer, posture=posture, hands=hands, timing=timing)
    stats = []
    for seed in SYNTH_SEEDS:
        it = synthetic_stream(seed, cfg)
        frames = [next(it) for _ in range(SYNTH_FRAMES)]
        kp = np.stack([f.observed for f in frames])
        stats.append(keypoint_statistics(kp, cfg.fps, np.array([f.label for f in frames])))
    return _combine(stats)


def mediapipe_on_clips(data: Path) -> Dict[str, Any]:
    """The shipped MediaPipe backend on every frame of the real GIFs, labels from labels.csv."""
    labels = data / CLIPS / "labels.csv"
    stats = []
    for gif in sorted((data / CLIPS).glob("*.gif")):
        n = count_frames(gif)
        frames = read_frames(gif, range(n))
        fps = _gif_fps(gif)
        with create_pose_backend("mediapipe") as pose:
            kp = np.stack([pose(frames[i]).keypoints for i in range(n)])
        seg = read_segments(labels, gif.name, n)
        lab = labels_from_segments(n, [(0, s.start, s.end) for s in seg])
        stats.append(keypoint_statistics(kp, fps, lab))
    return _combine(stats)


def _gif_fps(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as im:
        ms = im.info.get("duration") or 40
    return 1000.0 / float(ms)


def keypoint_table(data: Path, video: Dict[str, Any]) -> Dict[str, Any]:
    real = keypoint_statistics(video["_keypoints"], 25.0, video["_labels"])
    real["sequences"] = 1
    return {
        "synthetic": synthetic_keypoints("v1"),
        "synthetic_fitted": synthetic_keypoints(FITTED_OBSERVER),
        "synthetic_seated": synthetic_keypoints(FITTED_OBSERVER, FITTED_POSTURE, "fitted"),
        "synthetic_straddle": synthetic_keypoints(FITTED_OBSERVER, FITTED_POSTURE, "fitted", "straddle"),
        "openpose_298": real,
        "mediapipe_gifs": mediapipe_on_clips(data),
    }


# ------------------------------------------------------------------------------------ output
ROWS = (  # (label, getter)
    ("person found (share of frames)", lambda s: s["person"]),
    ("confidence, median: nose", lambda s: s["conf_median"]["nose"]),
    ("confidence, median: shoulders", lambda s: _mean(s["conf_median"], "r_shoulder", "l_shoulder")),
    ("confidence, median: elbows", lambda s: _mean(s["conf_median"], "r_elbow", "l_elbow")),
    ("confidence, median: wrists", lambda s: _mean(s["conf_median"], "r_wrist", "l_wrist")),
    ("confidence, median: ears", lambda s: _mean(s["conf_median"], "r_ear", "l_ear")),
    ("confidence, median: hand points", lambda s: s["conf_median"]["hand points"]),
    ("confidence, 10th percentile: wrists", lambda s: _mean(s["conf_p10"], "r_wrist", "l_wrist")),
    ("confidence, 10th percentile: hand points", lambda s: s["conf_p10"]["hand points"]),
    ("missing: wrists (share of person frames)", lambda s: _mean(s["missing"], "r_wrist", "l_wrist")),
    ("missing: elbows", lambda s: _mean(s["missing"], "r_elbow", "l_elbow")),
    ("missing: ears", lambda s: _mean(s["missing"], "r_ear", "l_ear")),
    ("missing hand: left / right", lambda s: (s["hand_missing"]["left"], s["hand_missing"]["right"])),
    ("jitter (shoulder widths, 2nd difference a frame)", lambda s: s["jitter"]),
    ("idle sway (shoulder widths, RMS over 1 s)", lambda s: s["sway"]),
    ("wrist speed in gestures, p50 / p90 (shoulder widths/s)", lambda s: (s["wrist_speed_p50"], s["wrist_speed_p90"])),
    (
        "fastest hand movement near a clip's first / last frame: seconds from it (median over clips; "
        "negative: before it)",
        lambda s: (_fmt(s["move_at_start"], "+.2f"), _fmt(s["move_at_end"], "+.2f")),
    ),
    (
        "nearer wrist to nose: gestures / idle (shoulder widths)",
        lambda s: (s["hand_face_gesture"], s["hand_face_idle"]),
    ),
    ("upper arm / forearm, 95th percentile (shoulder widths, idle)", lambda s: (s["upper_arm"], s["forearm"])),
    ("hand, wrist to middle fingertip, 95th percentile (shoulder widths, idle)", lambda s: s["hand"]),
    (
        "resting fingertips seen from the wrist: degrees below the horizontal, toward the midline (median, idle)",
        lambda s: _fmt(s["rest_fingers"], ".1f"),
    ),
    ("resting hand as seen, wrist to middle fingertip, median (shoulder widths, idle)", lambda s: s["rest_hand"]),
    (
        "resting thumb tip off the wrist-to-middle-knuckle line, degrees either way (median, idle)",
        lambda s: _fmt(s["rest_thumb"], ".1f"),
    ),
    (
        "resting palm's signed width, index to little knuckle (shoulder widths; negative: turned over, thumb up)",
        lambda s: s["rest_palm"],
    ),
    (
        "resting person's lowest point below the neck, upper22 (shoulder widths, idle; the crop's bottom)",
        lambda s: s["rest_lowest"],
    ),
    (
        "hands at the face, every frame: share of hands / the hand's centre above the nose, median (shoulder widths)",
        lambda s: (s["near_face"], s["near_face_above"]),
    ),
    ("nose above the neck, median (shoulder widths, idle)", lambda s: s["neck_nose"]),
    (
        "resting wrist from the neck: out / down (shoulder widths)",
        lambda s: (s["rest_wrist"]["out"], s["rest_wrist"]["down"]),
    ),
    (
        "resting elbow from the neck: out / down (shoulder widths)",
        lambda s: (s["rest_elbow"]["out"], s["rest_elbow"]["down"]),
    ),
    (
        "resting wrists' midpoint beside the neck: p10 / p90 (shoulder widths, idle)",
        lambda s: (s["rest_hands"]["p10"], s["rest_hands"]["p90"]),
    ),
    (
        "body off centre between the elbows: the neck beside their midpoint, median size (shoulder widths, idle)",
        lambda s: s["elbows_off_centre"],
    ),
    ("shoulders below the neck, median (shoulder widths, idle)", lambda s: s["shoulder_drop"]),
    ("ears above the eyes, median (shoulder widths, idle)", lambda s: s["ear_rise"]),
    ("head turned aside: nose beside the neck, median (shoulder widths, idle)", lambda s: s["head_turn"]),
    (
        "head motion, RMS over 1 s: p50 / p90 (shoulder widths, idle)",
        lambda s: (s["head_motion"]["p50"], s["head_motion"]["p90"]),
    ),
    (
        "resting wrist motion, RMS over 1 s: p50 / p90 (shoulder widths, idle)",
        lambda s: (s["hand_motion"]["p50"], s["hand_motion"]["p90"]),
    ),
    ("frames (gesture / idle)", lambda s: f"{s['frames']} ({s['gesture_frames']} / {s['idle_frames']})"),
)


def _model_name(identity: Dict[str, Any]) -> str:
    """``preset`` (backend, precision, checkpoint sha256 prefix) from an engine's identity."""
    sha = str(identity.get("checkpoint_sha256", ""))[:12]
    return (
        f"`{identity.get('preset', '?')}` ({identity.get('backend', '?')}, {identity.get('precision', '?')}"
        + (f", checkpoint {sha}" if sha else "")
        + ")"
    )


def _mean(d: Dict[str, float], *keys: str) -> float:
    vals = [d[k] for k in keys if not math.isnan(d[k])]
    return float(np.mean(vals)) if vals else float("nan")


def _fmt(v: Any, spec: str = "") -> str:
    """A table cell: numbers to 3 decimals (1 from 10 on) or as ``spec`` says, "–" for none."""
    if isinstance(v, str):
        return v
    if isinstance(v, tuple):
        return " / ".join(_fmt(x, spec) for x in v)
    if v is None or math.isnan(v):
        return "–"
    return format(v, spec) if spec else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def machine_line() -> str:
    return f"{cpu_line()}, Python {platform.python_version()}"


def markdown(report: Dict[str, Any]) -> str:
    v, p, k = report["video_298"], report["segments"], report["keypoints"]
    lines = [
        "# Real data: what clipmg does on real people",
        "",
        f"Generated by `{report['command']}` on {report['date']} ({report['machine']}). Every figure on this",
        "page comes from that command on the shared real iMiGUE samples (`../shared/data`, see its README);",
        "they are never trained or tuned on. `tests/test_real_data.py` runs the same report in CI.",
        "",
        "## 1. The readers on a whole real video (iMiGUE video 298, raw OpenPose JSON)",
        "",
        "| frames | with a person | without a left hand | without a right hand | labelled clips | labelled frames |",
        "|---|---|---|---|---|---|",
        f"| {v['frames']} | {v['frames_with_person']} | {v['frames_without_left_hand']} | "
        f"{v['frames_without_right_hand']} | {v['clips']} | {v['frames_labelled']} |",
        "",
        "Clips by class: " + ", ".join(f"{c} {n}" for c, n in v["classes"].items()) + f". Reader: {v['skipped']}.",
        "",
        "## 2. Answers on the labelled real segments (`clipmg-predict`, MediaPipe)",
        "",
        f"Model: {_model_name(p['model'])}"
        + (" (the shipped synthetic demo model: it has never seen a real person)" if p["demo"] else "")
        + ".",
        "",
        "| clip | frames | label | top-1 (p) | top-3 | top-1 right | in top-3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in p["segments"]:
        top = r["topk"]
        lines.append(
            f"| {r['clip']} | {r['start_frame']}–{r['end_frame']} | {r['true_label']} | "
            f"{top[0]['label']} ({top[0]['p']:.2f}) | {', '.join(t['label'] for t in top)} | "
            f"{'yes' if r['top1_hit'] else 'no'} | {'yes' if r['top3_hit'] else 'no'} |"
        )
    lines += [
        "",
        f"**Top-1 {p['top1']} of {p['scored']}, top-3 {p['top3']} of {p['scored']}** segments whose class the "
        f"model has" + (f"; not among its classes: {', '.join(p['not_in_model'])}" if p["not_in_model"] else "") + ".",
        "",
        "## 3. Keypoints: synthetic against real",
        "",
        "Lengths in shoulder widths (within a frame: that frame's; across frames: the sequence's median), "
        "medians over sequences. Synthetic: the observed keypoints the synthetic set writes "
        f"({len(SYNTH_SEEDS)} subjects × {SYNTH_FRAMES} frames at 25 fps), seen by the first, guessed observer "
        f"(`--observer v1`, what the shipped demo model was trained on) and by the observer profile fitted to "
        f"real OpenPose (`--observer {FITTED_OBSERVER}`, `python -m clipmg.train.fit_observer`: video 298's "
        "frames outside its labelled clips; see docs/data.md), the latter also with people built by the posture "
        f"profile fitted to the same frames (`--posture {FITTED_POSTURE} --hands fitted`: arm and hand lengths, "
        "the resting fingers' angle, the head's height, "
        "where resting wrists and elbows are, how far the body sits off centre between the elbows, how far the "
        "head is turned aside and how much the head and the resting hands move), and the same people with the "
        "clip ends straddling the movements (`--timing straddle`: a clip's label starts half-way through the "
        "reach and ends half-way through the return); OpenPose: video 298 (25 fps); "
        "MediaPipe: the shipped backend on the two real GIFs (10 fps).",
        "",
        "| statistic | synthetic, v1 observer | synthetic, fitted observer | synthetic, fitted observer and "
        "posture | the same, clip ends straddling the movements (`--timing straddle`) | real OpenPose (298) | "
        "MediaPipe on real GIFs |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, get in ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt(get(k[s])) for s in COLUMNS if s in k) + " |")
    lines += [
        "",
        "The fitted observer brings the confidences, the misses and the frame-to-frame noise to real "
        "OpenPose's; the v1 observer's noise was also most of its idle sway and median wrist speed. The fast "
        "part of gestures (p90 wrist speed) is the drawn motion's, not the observer's. Where a labelled "
        "clip's ends lie on the movement (its label's boundaries read, never its class): a real clip, in "
        "video 298 and in the GIFs alike, starts while the hands are on their way and ends as they leave, "
        "its fastest movement within a few hundredths of a second of its first frame; a drawn clip held "
        "the whole reach and return inside, a quarter of a second in, until `--timing straddle` (set v2's "
        "default since 2026-12-04: docs/data.md). Set v1's people "
        "had short arms and a long neck and rested their hands on their lap beside the hips; real OpenPose "
        "shows a speaker leaning on the table, elbows out beyond the shoulders, hands together in front "
        "of the chest. The fitted posture builds the people that way, which also brings the hands "
        "nearer the face. A real speaker also looks aside and moves the head while not gesturing (still "
        "for one second, turning or nodding the next: the head motion's p90 is three times its p50); the "
        "fitted posture turns the drawn heads aside and moves them between the same 10th and 90th "
        "percentiles (this sample of 8 subjects reaches less of the tail). The resting hands' motion stays "
        "where the observer's wrist noise puts it: above the real median, below its tail; where the resting "
        "hands are held together (their midpoint beside the neck) is measured but not drawn (docs/data.md "
        "says why). A real speaker also sits off centre between the resting elbows, either way; the person "
        "crop is set by the elbows, so a drawn body always centred between them sat in the model's input where "
        "only a drawn *move torso* put it off centre (docs/data.md); the fitted posture draws the offset. "
        "Shoulders level with the neck are what OpenPose and MediaPipe report; set v1 drew them "
        "lower, which a drawn shrug also does. Set v1's hands were two thirds of a real one's length (and as "
        "narrow), and rested pointing further down; the fitted column draws them at the real length (a resting "
        "hand, its fingers curled, measures a little shorter) and at the real resting angle's 10th-90th "
        "percentile range (`--hands fitted`; set v2 keeps set v1's hands by default, docs/data.md says why). "
        "Where a hand is when it is at the face, read from every frame with no label: the real speaker's "
        "hand centre sits well above the nose, at the brow, while the drawn people's "
        "sits at or below it; the probe's *touch forehead* answers on real face-touching clips point the same "
        "way (docs/pose-probe.md). The synthetic columns draw set v1's classes, so their share of hands at the "
        "face is set by v1's class list, not by how often a person touches the face. MediaPipe, the "
        "live path's "
        "estimator, sees differently again (confidences near 1, a hand lost in a quarter of the frames); "
        "no profile is fitted to it, since its only real footage here is the scored GIFs.",
        "",
        "## 4. The skeleton branch alone on real OpenPose",
        "",
        "`python -m clipmg.train.probe` trains the skeleton encoder and a linear layer on a pose-only synthetic "
        "set v2 and scores video 298's 33 labelled clips (all 9 of its classes are v2 classes), and counts "
        "how often it answers *no gesture* between them (no label read): docs/pose-probe.md. It takes minutes "
        "of training, so CI runs it only on a tiny set "
        "(`tests/test_real_data.py`) and the page holds the full run's figures.",
    ]
    lines.append("")
    return "\n".join(lines)


def report(data: Path, engine: Optional[str], threads: Optional[int], command: str) -> Dict[str, Any]:
    if not (data / CLIPS / "labels.csv").is_file() or not data.joinpath(*VIDEO_298).is_dir():
        raise ClipmgError(
            f"{data} does not hold the shared real data (imigue-clips/labels.csv and "
            f"imigue-298-skeleton/298); pass --data DIR"
        )
    v = video_298(data)
    out = {
        "date": _dt.date.today().isoformat(),
        "machine": machine_line(),
        "command": command,
        "video_298": v,
        "segments": real_segments(data, engine, threads=threads),
        "keypoints": keypoint_table(data, v),
    }
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the shared data folder (default: ../shared/data beside the repository or $CLIPMG_SHARED_DATA)",
    )
    ap.add_argument("--engine", default=None, help="an export folder or checkpoint (default: the shipped demo model)")
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: the runtime's)")
    ap.add_argument("--markdown", type=Path, default=None, help="write the report as Markdown to this file")
    ap.add_argument("--json", type=Path, default=None, help="write the report as JSON to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="keep MediaPipe's native start-up messages")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))

    def body() -> int:
        if args.threads is not None and args.threads < 1:
            raise ClipmgError(f"--threads must be at least 1, got {args.threads}")
        if args.engine is not None and not Path(args.engine).exists():
            raise ClipmgError(f"--engine {args.engine}: no such file or folder")
        if not args.verbose:
            native_stderr_off()
        data = args.data or default_data_dir()
        shown = ["python -m clipmg.train.real_data"] + (["--engine", args.engine] if args.engine else [])
        r = report(data, args.engine, args.threads, " ".join(shown))
        text = markdown(r)
        if args.markdown:
            atomic_write_text(args.markdown, text)
        if args.json:
            atomic_write_text(args.json, json.dumps(_jsonable(r), indent=1) + "\n")
        print(text)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
