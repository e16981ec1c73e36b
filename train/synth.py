"""The synthetic micro-gesture set: a drawn seated upper body performing iMiGUE-like micro-gestures.

One subject a video (random size, position, colours, background) sits behind a desk in one long
take; gesture episodes (one labelled clip each) are separated by idle spans. Every frame comes with
the exact 2D keypoints of the drawing in the ``openpose137`` layout (body 0-24, face 25-94, left hand
95-115, right hand 116-136; the face is approximate). The files use the real iMiGUE layouts so the
real readers are what read them::

    OUT/classes.txt                      class names, one a line, in label order
    OUT/synth.json                       generator settings and per-video subject facts
    OUT/<id>/<id>_label.csv              class_id,start_frame,end_frame (MiGA ids: label+1, 99 for 31)
    OUT/<id>/<id>.mp4                    H.264, yuv420p
    OUT/<id>/openpose/<id>_<frame:012d>_keypoints.json   OpenPose 1.3 JSON, noisy with dropout

The class scripts are built so that each modality is needed (see docs/data.md): *touch chin* /
*touch forehead* / *touch ears* differ only in where the hand goes; *minaret hand* / *play things*
and *touch chest* / *adjust tie* differ only in appearance (a held object, a worn tie: invisible to
the keypoints); *touch face* / *rub eyes* differ only in motion (a still touch against a 3-5 Hz rub
at the same place, which 8 RGB frames alias). Every one-hand gesture uses either hand at random, so
a horizontal flip keeps its label.

The drawn subject and its keypoints are ``clipmg.model.synthetic`` (the live synthetic camera uses
it too); this module writes the data set and is the ``clipmg-synth`` command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import numpy as np

from clipmg.model.config import ConfigError
from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.keypoint_files import miga_class_id
from clipmg.model.observation import list_profiles
from clipmg.model.posture import list_postures
from clipmg.model.synthetic import (  # noqa: F401
    CLASS_SETS,
    IMIGUE_SHARE,
    SET_DEFAULTS,
    SYNTH_CLASSES,
    SYNTH_CLASSES_V2,
    SynthConfig,
    SynthFrame,
    Take,
    _rng,
    imigue_coverage,
    make_episode,
    openpose_json,
    plan_video,
    set_config,
    synthetic_stream,
    write_video,
)

# -------------------------------------------------------------------------------------- writing
miga_id = miga_class_id  # label index -> MiGA class id (model/keypoint_files.py)


def balanced_classes(
    rng: np.random.Generator, classes: Sequence[str], videos: int, per_video: int, mix: str = "uniform"
) -> List[List[str]]:
    """Class of every clip, shuffled: each class equally often over the whole set (to within one), or
    in iMiGUE's proportions (``mix="imigue"``, see ``mix_counts``)."""
    total = videos * per_video
    if mix == "uniform":  # as written since set v1: the same seed gives the same set
        labels = np.resize(rng.permutation(len(classes)), total)
    else:
        labels = np.repeat(np.arange(len(classes)), mix_counts(classes, total, mix))
    labels = rng.permutation(labels)
    return [[classes[i] for i in labels[v * per_video : (v + 1) * per_video]] for v in range(videos)]


CLASS_MIXES = ("uniform", "imigue")
MIX_FLOOR = 1.0  # --class-mix imigue: every class gets at least this share (%), so rare ones are still learnt


def mix_counts(classes: Sequence[str], total: int, mix: str = "uniform") -> List[int]:
    """How many of ``total`` clips each class gets: equal (to within one), or in iMiGUE's proportions
    (``IMIGUE_SHARE``, each at least ``MIX_FLOOR`` %; "no gesture", not an iMiGUE class, keeps the uniform
    share ``1/len(classes)``), rounded by largest remainder so the counts add up to ``total``."""
    n = len(classes)
    if mix == "uniform":
        return [total // n + (1 if i < total % n else 0) for i in range(n)]
    if mix != "imigue":
        raise ConfigError(f"--class-mix must be one of {', '.join(CLASS_MIXES)}, got {mix!r}")
    gestures = [c for c in classes if c != "no gesture"]
    weights = np.array([max(IMIGUE_SHARE.get(c, 0.0), MIX_FLOOR) for c in gestures])
    share = dict(zip(gestures, (weights / weights.sum()) * (1.0 - (1.0 / n if len(gestures) < n else 0.0))))
    share["no gesture"] = 1.0 / n
    exact = np.array([share[c] * total for c in classes])
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return counts.tolist()


def write_dataset(
    out_dir: str | Path,
    seed: int = 0,
    videos: int = 20,
    clips_per_video: int = 20,
    config: SynthConfig | None = None,
    video: bool = True,
    progress: bool = False,
    class_mix: str = "uniform",
) -> Dict[str, object]:
    """Write the synthetic set into ``out_dir`` (created; must be empty) and return its summary dict."""
    cfg = config or SynthConfig()
    out = Path(out_dir)
    if videos < 1 or clips_per_video < 1:
        raise ConfigError(f"need at least one video and one clip per video, got {videos} and {clips_per_video}")
    if seed < 0:
        raise ConfigError(f"--seed must be an integer of at least 0, got {seed}")
    if out.exists() and not out.is_dir():
        raise ClipmgError(f"{out} exists and is not a folder; choose a new or empty folder")
    if out.exists() and any(out.iterdir()):
        raise ClipmgError(f"{out} is not empty; choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClipmgError(f"cannot create {out}: {e.strerror or e}") from e
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in cfg.classes))
    plan_rng = _rng(seed, 1 << 20)
    assignments = balanced_classes(plan_rng, cfg.classes, videos, clips_per_video, class_mix)
    meta: Dict[str, object] = {
        "generator": "clipmg.train.synth",
        "seed": seed,
        "config": asdict(cfg),
        "class_mix": class_mix,
        "imigue_coverage": round(imigue_coverage(cfg.classes), 2),
        "videos": {},
    }
    total_frames = 0
    for v in range(videos):
        vid = f"{v + 1:03d}"
        folder = out / vid
        (folder / "openpose").mkdir(parents=True)
        take = Take(seed, v + 1, cfg)
        episodes = plan_video(_rng(seed, v + 1, 6), assignments[v], cfg)
        rows = [f"{miga_id(cfg.classes.index(e.cls))},{e.start},{e.end}\n" for e in episodes if e.cls is not None]
        (folder / f"{vid}_label.csv").write_text("".join(rows))

        def rendered() -> Iterator[np.ndarray]:
            for fr in take.frames(episodes):
                obs = None if not fr.observed[:, 2].any() else fr.observed
                (folder / "openpose" / f"{vid}_{fr.index:012d}_keypoints.json").write_text(openpose_json(obs))
                yield fr.image

        if video:
            n = write_video(folder / f"{vid}.mp4", rendered(), cfg.width, cfg.height, cfg.fps)
        else:
            n = sum(1 for _ in rendered())
        total_frames += n
        meta["videos"][vid] = {"frames": n, "clips": len(rows), "subject": asdict(take.subject)}  # type: ignore[index]
        if progress:
            print(f"video {vid}: {n} frames, {len(rows)} clips", file=sys.stderr)
    meta["frames"] = total_frames
    meta["clips"] = videos * clips_per_video
    (out / "synth.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "README.md").write_text(
        f"Synthetic micro-gesture set written by `clipmg-synth` (seed {seed}): {videos} videos, "
        f"{videos * clips_per_video} clips of {len(cfg.classes)} classes (classes.txt), iMiGUE layout "
        f"(<id>/<id>_label.csv, <id>/<id>.mp4, <id>/openpose/*_keypoints.json); see docs/data.md.\n"
    )
    return meta


def _set_defaults(key: str) -> str:
    return "(" + ", ".join(f"{name}: {d[key]}" for name, d in SET_DEFAULTS.items()) + ")"


def main(argv: List[str] | None = None) -> int:
    """``clipmg-synth``: exit 0, or 2 with one sentence for a bad setting or folder, 1 for a bug."""
    return run_command("clipmg-synth", lambda: _main(argv))


def _main(argv: List[str] | None) -> int:
    ap = argparse.ArgumentParser(
        prog="clipmg-synth",
        description="Write the synthetic micro-gesture set (iMiGUE layout: label CSV, OpenPose JSON per frame, mp4).",
    )
    ap.add_argument("out_dir", help="folder to create (must be new or empty)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed: same files)")
    ap.add_argument("--videos", type=int, default=20, help="number of videos (subjects)")
    ap.add_argument("--clips-per-video", type=int, default=20, help="labelled clips in each video")
    ap.add_argument("--width", type=int, default=SynthConfig.width, help="frame width (even)")
    ap.add_argument("--height", type=int, default=SynthConfig.height, help="frame height (even)")
    ap.add_argument("--fps", type=float, default=SynthConfig.fps, help="frame rate")
    ap.add_argument("--min-clip", type=int, default=SynthConfig.clip_frames[0], help="shortest clip (frames)")
    ap.add_argument("--max-clip", type=int, default=SynthConfig.clip_frames[1], help="longest clip (frames)")
    ap.add_argument(
        "--class-set",
        default="v1",
        help="v1: the 15 first scripts (the demo model's; 33 %% of iMiGUE's clips by class), still faces; v2: 23 "
        "scripts following iMiGUE's class mix (95 %% of its clips), a person talking throughout (docs/data.md)",
    )
    ap.add_argument(
        "--class-mix",
        default="uniform",
        help="uniform: every class equally often; imigue: in iMiGUE's proportions, each class at least "
        f"{MIX_FLOOR:g} %%",
    )
    ap.add_argument("--classes", default="", help="comma-separated subset of: " + ", ".join(SYNTH_CLASSES_V2))
    ap.add_argument(
        "--observer",
        default=None,
        help="how the keypoints are observed: v1 (the first, guessed noise) or a profile fitted to a real "
        "estimator: "
        + ", ".join(list_profiles())
        + " (see docs/data.md); default: the class set's "
        + _set_defaults("observer"),
    )
    ap.add_argument(
        "--posture",
        default=None,
        help="how the people are built and sit: v1 (short arms, hands on the lap) or a profile fitted to real "
        "people: "
        + ", ".join(list_postures())
        + " (see docs/data.md); default: the class set's "
        + _set_defaults("posture"),
    )
    ap.add_argument(
        "--pixels",
        default=None,
        help="v1: the drawing as set v1 made it; varied: a photograph behind, a microphone and a name card in "
        "front, a camera that zooms, tilts, exposes, blurs and compresses, per video (docs/data.md); default: "
        "the class set's " + _set_defaults("pixels"),
    )
    ap.add_argument(
        "--scripts",
        default=None,
        help="v1: set v1's hand places (touch face where rub eyes rubs, minaret hand where play things holds "
        "its object); v2: each of those with a place of its own (docs/data.md); default: the class set's "
        + _set_defaults("scripts"),
    )
    ap.add_argument(
        "--hands",
        default=None,
        help="v1: set v1's hands (two thirds of a real hand's length); fitted: the posture profile's hand "
        "length and resting hands (fingers' angle, turned over, foreshortened, thumb along the hand), palms "
        "placed where a script's contact is the palm (needs a fitted --posture; docs/data.md); default: the "
        "class set's " + _set_defaults("hands"),
    )
    ap.add_argument(
        "--timing",
        default=None,
        help="where a clip's label lies on its movement: v1 (the whole reach, hold and return inside the "
        "label) or straddle (the label starts half-way through the reach and ends half-way through the "
        "return, as real labelled clips do; docs/data.md); default: the class set's " + _set_defaults("timing"),
    )
    ap.add_argument("--no-video", action="store_true", help="skip the mp4 files (pose-only set)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    if args.class_set not in CLASS_SETS:
        raise ConfigError(f"--class-set must be one of {', '.join(CLASS_SETS)}, got {args.class_set!r}")
    if args.class_mix not in CLASS_MIXES:
        raise ConfigError(f"--class-mix must be one of {', '.join(CLASS_MIXES)}, got {args.class_mix!r}")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) or None
    try:  # SynthConfig checks the flags' values; its ValueErrors are about them
        cfg = set_config(
            args.class_set,
            width=args.width,
            height=args.height,
            fps=args.fps,
            clip_frames=(args.min_clip, args.max_clip),
            classes=classes,
            observer=args.observer,
            posture=args.posture,
            pixels=args.pixels,
            scripts=args.scripts,
            hands=args.hands,
            timing=args.timing,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e
    t0 = time.perf_counter()
    meta = write_dataset(
        args.out_dir,
        args.seed,
        args.videos,
        args.clips_per_video,
        cfg,
        video=not args.no_video,
        progress=not args.quiet,
        class_mix=args.class_mix,
    )
    print(
        f"wrote {meta['clips']} clips in {args.videos} videos ({meta['frames']} frames) to {args.out_dir} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
