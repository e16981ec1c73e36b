"""The pose-only probe: does what the skeleton branch learns on drawn people transfer to real ones?

    python -m clipmg.train.probe [--data ../shared/data] [--epochs 12] [--markdown docs/pose-probe.md] [--json OUT]

CLIP-MG's skeleton encoder (the ``clipmg-tiny`` preset's, from scratch) and one linear layer are
trained on a pose-only synthetic set v2 (``clipmg-synth --class-set v2 --no-video``: 23 gesture
scripts and *no gesture*, with v2's defaults: keypoints observed as real OpenPose sees them, people
built and seated as the real ones (``model/posture.py``), seen through a camera that zooms, rolls and
pans per video (``--pixels varied``'s camera, which moves the keypoints too), set v1's look-alike
pairs given hand places of their own (``--scripts v2``)),
then scored on the labelled clips of real iMiGUE video 298 (raw OpenPose, never trained or tuned
on): top-1 and top-3 among the set's classes, per-class recall, against chance and against always
answering the most frequent real class. Every setting is fixed here, before any real clip is
scored (``PROBE``); the person crop is used because the synthetic and real frames differ in size
and framing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.factory import create_model
from clipmg.model.layouts import joint_names
from clipmg.model.machine import cpu_line
from clipmg.model.synthetic import SynthConfig, set_config

from .dataset import MicroGestureDataset
from .index import build_index
from .loop import classification_metrics
from .readers import IMIGUE_CLASSES
from .real_data import VIDEO_298, default_data_dir
from .synth import write_dataset

COMMAND = "python -m clipmg.train.probe"
NO_GESTURE = "no gesture"


@dataclass(frozen=True)
class ProbeSettings:
    """Every choice of the probe, fixed before a real clip is scored."""

    preset: str = "clipmg-tiny"
    videos: int = 36  # synthetic subjects
    clips_per_video: int = 24  # 864 clips: 36 a class
    seed: int = 0
    epochs: int = 12
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2  # synthetic videos held out to show the probe learnt the synthetic task
    threads: int = 2
    hands: str = "v1"  # SynthConfig.hands: set v2's default, or "fitted" (real-sized hands; docs/data.md)
    timing: str = "straddle"  # SynthConfig.timing: set v2's default (clip ends mid-movement; docs/data.md), or "v1"


PROBE = ProbeSettings()


class PoseProbe(nn.Module):
    """The model's skeleton branch (keypoints -> heatmap volume -> skeleton encoder) and a linear layer."""

    def __init__(self, preset: str, num_classes: int) -> None:
        super().__init__()
        model = create_model(preset, num_classes=num_classes)
        # what the data sets crop with (pose_feature itself takes keypoints already in model-input pixels)
        self.cfg = replace(model.cfg, preprocess=replace(model.cfg.preprocess, crop="person"))
        self.branch = model  # only pose_feature (heatmaps + skeleton) is used and trained
        self.head = nn.Linear(model.skeleton.proj.out_features, num_classes)

    def parameters_to_train(self) -> List[nn.Parameter]:
        return list(self.branch.skeleton.parameters()) + list(self.head.parameters())

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:  # (B, T_p, J, 3) -> (B, C)
        return self.head(self.branch.pose_feature(keypoints))


def _loader(ds: MicroGestureDataset, batch: int, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=shuffle, generator=g, num_workers=0)


def _logits(probe: PoseProbe, ds: MicroGestureDataset, batch: int) -> tuple[np.ndarray, np.ndarray]:
    probe.eval()
    out, labels = [], []
    with torch.no_grad():
        for b in _loader(ds, batch, False, 0):
            out.append(probe(b["keypoints"]).numpy())
            labels.append(b["label"].numpy())
    return np.concatenate(out), np.concatenate(labels)


def joint_medians(ds: MicroGestureDataset, batch: int) -> np.ndarray:
    """Per joint, the median position ``(J, 2)`` (model-input pixels; NaN where never seen) of the
    keypoints the skeleton branch reads from ``ds``: person-cropped, as validation reads them."""
    k = np.concatenate([b["keypoints"].numpy() for b in _loader(ds, batch, False, 0)])
    k = k.reshape(-1, k.shape[-2], k.shape[-1])
    out = np.full((k.shape[1], 2), np.nan)
    for j in range(k.shape[1]):
        seen = k[:, j, 2] > 0
        if seen.any():
            out[j] = np.median(k[seen, j, :2], axis=0)
    return out


def train_probe(root: Path, s: ProbeSettings, progress: bool = True) -> tuple[PoseProbe, Dict[str, Any]]:
    """Train on the synthetic set at ``root``; returns the probe and its synthetic scores."""
    torch.manual_seed(s.seed)
    index = build_index(root, "openpose_json")
    train_ix, val_ix = index.split(s.val_fraction, seed=s.seed)
    probe = PoseProbe(s.preset, index.num_classes)
    size = (SynthConfig.width, SynthConfig.height)
    kw = dict(require_rgb=False, frame_size=size, cache_frames=False)
    train_ds = MicroGestureDataset(train_ix, probe.cfg, train=True, **kw)  # type: ignore[arg-type]
    val_ds = MicroGestureDataset(val_ix, probe.cfg, **kw)  # type: ignore[arg-type]
    opt = torch.optim.AdamW(probe.parameters_to_train(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.epochs * len(_loader(train_ds, s.batch, True, 0)))
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for epoch in range(s.epochs):
        probe.train()
        bar = tqdm(
            _loader(train_ds, s.batch, True, s.seed + epoch),
            desc=f"probe epoch {epoch + 1}/{s.epochs}",
            disable=not progress,
            leave=False,
        )
        for b in bar:
            loss = loss_fn(probe(b["keypoints"]), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    logits, labels = _logits(probe, val_ds, s.batch)
    names = list(index.class_names)
    rest = labels == names.index(NO_GESTURE) if NO_GESTURE in names else np.zeros(len(labels), bool)
    # its own training subjects' clips, as validation reads them (centre window, no augmentation): the
    # gap to the held-out subjects is what the probe learnt about particular drawn people
    seen = classification_metrics(*_logits(probe, MicroGestureDataset(train_ix, probe.cfg, **kw), s.batch), names)  # type: ignore[arg-type]
    val = classification_metrics(logits, labels, names)
    # every drawn person at rest (the no-gesture clips of every subject): what the skeleton branch reads
    at_rest = replace(index, clips=[c for c in index.clips if names[c.label] == NO_GESTURE])
    drawn = joint_medians(MicroGestureDataset(at_rest, probe.cfg, **kw), s.batch) if at_rest.clips else None  # type: ignore[arg-type]
    return probe, {
        "train_clips": len(train_ds),
        "val_clips": len(val_ds),
        "train_top1": seen["top1"],
        "val_top1": val["top1"],
        "val_per_class": _right_of(val, names),
        "val_at_rest": {"clips": int(rest.sum()), "answers": _count(logits[rest].argmax(1), names)},
        "inputs_at_rest": None
        if drawn is None
        else {
            "clips": len(at_rest.clips),
            "median": drawn.round(2).tolist(),
            "layout": probe.cfg.pose.layout,
            "image_size": probe.cfg.vision.image_size,
        },
        "train_minutes": (time.perf_counter() - t0) / 60,
        "class_names": list(index.class_names),
    }


def score_real(probe: PoseProbe, data: Path, class_names: Sequence[str], batch: int) -> Dict[str, Any]:
    """The probe on video 298's labelled clips whose class the synthetic set has."""
    root = data / VIDEO_298[0]
    index = build_index(root, "openpose_json", class_names=IMIGUE_CLASSES)
    ds = MicroGestureDataset(
        index,
        replace(probe.cfg, num_classes=len(IMIGUE_CLASSES)),
        require_rgb=False,
        frame_size=(1280, 720),
        cache_frames=False,
    )
    logits, labels = _logits(probe, ds, batch)
    true = [IMIGUE_CLASSES[i] for i in labels]
    known = np.array([t in class_names for t in true])
    order = np.argsort(-logits, axis=1)
    top = [[class_names[k] for k in row[:3]] for row in order]
    clips = [
        {"clip": c.clip_id, "start": c.start, "end": c.end, "label": t, "top3": tp}
        for c, t, tp in zip(ds.clips, true, top)
    ]
    scored = [r for r, k in zip(clips, known) if k]
    classes = sorted({r["label"] for r in scored})
    recall = {c: float(np.mean([r["top3"][0] == c for r in scored if r["label"] == c])) for c in classes}
    majority = max(classes, key=lambda c: sum(r["label"] == c for r in scored))
    return {
        "clips": clips,
        "scored": len(scored),
        "top1": int(sum(r["top3"][0] == r["label"] for r in scored)),
        "top3": int(sum(r["label"] in r["top3"] for r in scored)),
        "per_class_recall": recall,
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "chance_top1": 1.0 / len(class_names),
        "chance_top3": 3.0 / len(class_names),
        "majority_class": majority,
        "majority_top1": sum(r["label"] == majority for r in scored) / max(1, len(scored)),
    }


IDLE_WINDOWS = 1000.0  # background_ratio high enough to keep every window mined from the unlabelled spans


def score_unlabelled(probe: PoseProbe, data: Path, class_names: Sequence[str], batch: int) -> Dict[str, Any]:
    """What the probe answers on windows of video 298 outside its labelled clips (clip-long, mined as
    ``--background`` mines them): no label is read, only where the labelled clips are. A person
    between gestures should mostly get *no gesture*; the answers it gets instead name what still
    makes a real person at rest look unlike a drawn one."""
    root = data / VIDEO_298[0]
    index = build_index(
        root, "openpose_json", class_names=IMIGUE_CLASSES, background=True, background_ratio=IDLE_WINDOWS
    )
    index.clips = [c for c in index.clips if c.background]
    ds = MicroGestureDataset(
        index,
        replace(probe.cfg, num_classes=index.num_classes),
        require_rgb=False,
        frame_size=(1280, 720),
        cache_frames=False,
    )
    logits, _ = _logits(probe, ds, batch)
    answers = _count(logits.argmax(1), class_names)
    return {
        "windows": len(ds),
        "no_gesture": answers.get(NO_GESTURE, 0),
        "answers": answers,
        "inputs_median": joint_medians(ds, batch).round(2).tolist(),
    }


def _right_of(metrics: Dict[str, Any], class_names: Sequence[str]) -> Dict[str, List[int]]:
    """``classification_metrics``' per-class accuracy as ``{class: [right, clips]}``, weakest first."""
    conf = np.asarray(metrics["confusion"])
    recall = metrics["per_class"]  # only the classes with clips
    out = {c: [int(conf[i, i]), int(conf[i].sum())] for i, c in enumerate(class_names) if c in recall}
    return dict(sorted(out.items(), key=lambda kv: (recall[kv[0]], kv[0])))


def _count(predicted: np.ndarray, class_names: Sequence[str]) -> Dict[str, int]:
    """How often each class was answered, most frequent first."""
    answers: Dict[str, int] = {}
    for k in predicted:
        answers[class_names[k]] = answers.get(class_names[k], 0) + 1
    return dict(sorted(answers.items(), key=lambda kv: (-kv[1], kv[0])))


def markdown(r: Dict[str, Any]) -> str:
    s, real = r["synthetic"], r["real"]
    n = real["scored"]
    lines = [
        "# The pose-only probe: drawn people → a real one",
        "",
        f"Generated by `{r['command']}` on {r['date']} ({r['machine']}); training took "
        f"{s['train_minutes']:.1f} minutes. The `{r['settings']['preset']}` skeleton encoder and a linear layer, "
        f"trained from scratch on a pose-only synthetic set v2 ({r['settings']['videos']} subjects, "
        f"{s['train_clips'] + s['val_clips']} clips of {len(s['class_names'])} classes, keypoints by the observer "
        "fitted to real OpenPose, people by the posture fitted to real ones, a camera that zooms, rolls and pans "
        "per video, set v1's look-alike pairs given hand places of their own"
        + ("; real-sized hands, `--hands fitted`" if r["settings"].get("hands", "v1") != "v1" else "")
        + (
            "; clip ends straddling the movements (`--timing straddle`)"
            if r["settings"].get("timing", "v1") != "v1"
            else "; the whole movement inside each clip's label, `--timing v1`"
        )
        + "; see docs/data.md), person crop, "
        "every setting fixed in `train/probe.py` before a real clip was scored. Real: the labelled clips of "
        "iMiGUE video 298 (raw OpenPose JSON), never trained or tuned on.",
        "",
        "| | top-1 | top-3 | balanced accuracy (mean per-class recall) |",
        "|---|---|---|---|",
        *(
            [f"| synthetic training subjects ({s['train_clips']} clips, the probe's own) | {s['train_top1']:.1%} | | |"]
            if "train_top1" in s
            else []
        ),
        f"| synthetic validation ({s['val_clips']} clips of held-out subjects) | {s['val_top1']:.1%} | | |",
        f"| **real, video 298** ({n} clips, {len(real['per_class_recall'])} classes) | "
        f"**{real['top1']} / {n} = {real['top1'] / n:.1%}** | {real['top3']} / {n} = {real['top3'] / n:.1%} | "
        f"{real['balanced_accuracy']:.1%} |",
        f"| chance ({len(s['class_names'])} classes) | {real['chance_top1']:.1%} | {real['chance_top3']:.1%} | "
        f"{real['chance_top1']:.1%} |",
        f"| always *{real['majority_class']}* (the most frequent real class) | {real['majority_top1']:.1%} | | "
        f"{1 / len(real['per_class_recall']):.1%} |",
        "",
        _reading(real, n),
        "",
        "Per real class, recall (clips): "
        + ", ".join(
            f"{c} {v:.0%} ({sum(x['label'] == c for x in real['clips'])})" for c, v in real["per_class_recall"].items()
        )
        + ".",
        "",
        "The clip-by-clip answers are in the run's `--json` output only: video 298's label rows are test "
        "data and are not copied into the project.",
    ]
    if "train_top1" in s and "val_per_class" in s:
        weak = ", ".join(f"*{c}* {k}/{n}" for c, (k, n) in list(s["val_per_class"].items())[:6])
        lines += [
            "",
            "## On drawn people",
            "",
            f"Right on {s['train_top1']:.0%} of the clips of the drawn people it trained on (read as validation "
            f"reads them: the centre window, no augmentation) and on {s['val_top1']:.0%} of held-out drawn people's: "
            "the difference is what it learnt about those particular people rather than the gestures. "
            f"Held-out people, weakest classes (right/clips): {weak}.",
        ]
    idle = r.get("unlabelled")
    if idle:
        top = ", ".join(f"*{c}* {n}" for c, n in list(idle["answers"].items())[:4])
        lines += [
            "",
            "## Between gestures (no label read)",
            "",
            f"The same probe on {idle['windows']} clip-long windows of video 298 outside its labelled clips "
            "(mined as `clipmg-train --background` mines them; only where the labelled clips lie is read): "
            f"**{idle['no_gesture']} of {idle['windows']} answered *no gesture***; most answers: {top}. "
            "A person between gestures answered as a gesture is a gap between drawn and real people "
            "that can be studied without the test labels.",
        ]
        rest = s.get("val_at_rest")
        if rest and rest["clips"]:
            top = ", ".join(f"*{c}* {n}" for c, n in list(rest["answers"].items())[:4])
            lines += [
                "",
                f"For scale, the drawn people at rest: the {rest['clips']} *no gesture* clips of the synthetic "
                f"validation subjects got {top}. The probe does not see the lips (they are not among its "
                "joints), so it can tell *bite lip* from *no gesture* only by how the head moves: even drawn "
                "people at rest are answered *no gesture* only part of the time.",
            ]
    lines += _inputs_at_rest(r)
    lines.append("")
    return "\n".join(lines)


OFF_PX = 3.0  # a joint this far (model-input pixels) from where the real one is, at rest, is named


def _inputs_at_rest(r: Dict[str, Any]) -> List[str]:
    """The section comparing, joint by joint, what the skeleton branch reads from a real person between
    gestures and from the drawn people at rest."""
    idle, drawn = r.get("unlabelled") or {}, r["synthetic"].get("inputs_at_rest")
    if "inputs_median" not in idle or not drawn:
        return []
    names = joint_names(drawn["layout"])
    real, ours = np.array(idle["inputs_median"], float), np.array(drawn["median"], float)
    off = ours - real
    far = [f"{n} ({dx:+.1f}, {dy:+.1f})" for n, (dx, dy) in zip(names, off) if np.hypot(dx, dy) > OFF_PX]
    size = drawn["image_size"]
    lines = [
        "",
        "## What the skeleton branch reads at rest (no label read)",
        "",
        f"Each joint's median position in the person crop, in model-input pixels ({size}×{size}): the real "
        f"person over the {idle['windows']} windows between the labelled clips, and the drawn "
        f"people over the {drawn['clips']} *no gesture* clips of every synthetic subject. "
        + (
            f"More than {OFF_PX:g} pixels off: " + ", ".join(far) + "."
            if far
            else f"Every joint lies within {OFF_PX:g} pixels of the real one."
        ),
        "",
        "| joint | real x, y | drawn − real |",
        "|---|---|---|",
    ]
    for n, (x, y), (dx, dy) in zip(names, real, off):
        lines.append(f"| {n} | {x:.1f}, {y:.1f} | {dx:+.1f}, {dy:+.1f} |")
    return lines


def _reading(real: Dict[str, Any], n: int) -> str:
    """One sentence on what the figures say, from the figures."""
    top1 = real["top1"] / n
    beats_majority = top1 > real["majority_top1"]
    return (
        f"Top-1 is {top1 / real['chance_top1']:.1f}× chance and top-3 {real['top3'] / n / real['chance_top3']:.1f}×, "
        + (
            "and above always answering the most frequent real class"
            if beats_majority
            else f"but below always answering *{real['majority_class']}* ({real['majority_top1']:.0%})"
        )
        + f"; balanced accuracy {real['balanced_accuracy']:.1%} against {real['chance_top1']:.1%} by chance"
        + (
            ": the skeleton branch learnt on drawn people does not yet tell real people's gestures apart."
            if real["balanced_accuracy"] < 2 * real["chance_top1"]
            else "."
        )
    )


def run(data: Path, s: ProbeSettings, synth_dir: Optional[Path] = None, progress: bool = True) -> Dict[str, Any]:
    if not data.joinpath(*VIDEO_298).is_dir():
        raise ClipmgError(f"{data} does not hold the shared real data (imigue-298-skeleton); pass --data")
    torch.set_num_threads(s.threads)
    with tempfile.TemporaryDirectory(prefix="clipmg-probe-") as tmp:
        root = synth_dir or Path(tmp) / "synth-v2"
        if (root / "classes.txt").is_file():
            try:
                made = json.loads((root / "synth.json").read_text()).get("config", {})
            except (OSError, ValueError) as e:
                raise ClipmgError(f"cannot read {root / 'synth.json'}: {e}") from e
            for key in ("hands", "timing"):
                if made.get(key, "v1") != getattr(s, key):
                    raise ClipmgError(
                        f"the set in {root} was written with --{key} {made.get(key, 'v1')}, not "
                        f"{getattr(s, key)}; pick another --synth"
                    )
        else:
            cfg = set_config("v2", hands=s.hands, timing=s.timing)
            write_dataset(root, s.seed, s.videos, s.clips_per_video, cfg, video=False)
        probe, synthetic = train_probe(root, s, progress)
        real = score_real(probe, data, synthetic["class_names"], s.batch)
        idle = score_unlabelled(probe, data, synthetic["class_names"], s.batch)
    return {
        "command": COMMAND,
        "date": _dt.date.today().isoformat(),
        "machine": f"{cpu_line()}, Python {platform.python_version()}, PyTorch {torch.__version__}",
        "settings": s.__dict__,
        "synthetic": synthetic,
        "real": real,
        "unlabelled": idle,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipmg-probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the shared real samples (default: ../shared/data)")
    ap.add_argument("--epochs", type=int, default=PROBE.epochs, help="training epochs")
    ap.add_argument("--videos", type=int, default=PROBE.videos, help="synthetic subjects")
    ap.add_argument("--clips-per-video", type=int, default=PROBE.clips_per_video, help="clips a subject")
    ap.add_argument("--synth", type=Path, default=None, help="reuse (or keep) the synthetic set in this folder")
    ap.add_argument(
        "--hands",
        choices=("v1", "fitted"),
        default=PROBE.hands,
        help="the drawn people's hands (clipmg-synth --hands): set v2's default v1, or fitted (real-sized)",
    )
    ap.add_argument(
        "--timing",
        choices=("v1", "straddle"),
        default=PROBE.timing,
        help="where the drawn clips' labels lie on their movements (clipmg-synth --timing): set v2's default "
        "straddle (clip ends mid-movement, as real labelled clips), or v1 (the whole movement inside the label)",
    )
    ap.add_argument("--markdown", type=Path, default=None, help="write the report page here")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--render", type=Path, default=None, help="only re-render the page from a --json file of a run")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        for name in ("epochs", "videos", "clips_per_video"):
            if getattr(args, name) < 1:
                raise ClipmgError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
        s = replace(
            PROBE,
            epochs=args.epochs,
            videos=args.videos,
            clips_per_video=args.clips_per_video,
            hands=args.hands,
            timing=args.timing,
        )
        if args.render:
            try:
                r = json.loads(args.render.read_text())
            except (OSError, ValueError) as e:
                raise ClipmgError(f"cannot read the run {args.render}: {e}") from e
        else:
            r = run(args.data or default_data_dir(), s, args.synth, progress=not args.quiet)
        text = markdown(r)
        if args.markdown:
            args.markdown.write_text(text)
        if args.json:
            args.json.write_text(json.dumps(r, indent=1) + "\n")
        print(text)
        return 0

    return run_command("clipmg-probe", body)


if __name__ == "__main__":
    sys.exit(main())
