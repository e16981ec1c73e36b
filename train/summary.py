"""``clipmg-data summary ROOT``: what a dataset root holds, as the training code will see it.

Prints clips per class, clip-duration statistics, missing modalities and skipped-file counts
(``--json`` for a machine-readable dict). ``--strict`` stops at the first malformed file. A video
whose keypoints are all missing (or were NaN) counts as a video without keypoints. Errors: one
sentence, exit status 2 (``clipmg.model.errors``).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Dict, List

from clipmg.model.errors import run_command
from clipmg.model.logs import PLAIN, LogStyle, set_level

from .config import LAYOUT_NAMES
from .index import ClipIndex, build_index, detect_layout
from .readers import read_class_names


def summarize(index: ClipIndex) -> Dict[str, Any]:
    """The summary of an index as a plain dict (what ``--json`` prints)."""
    counts = index.class_counts()
    bg = sum(c.background for c in index.clips)
    with_rgb = sum(1 for v in {c.source for c in index.clips} if index.sources[v].rgb is not None)
    return {
        "root": str(index.root),
        "layout": index.layout,
        "videos": len(index.videos),
        "sources_with_rgb": with_rgb,
        "clips": len(index.clips) - bg,
        "background_windows": bg,
        "classes": [{"label": i, "name": n, "clips": counts[i]} for i, n in enumerate(index.class_names)],
        "duration_frames": index.duration_stats(),
        "missing": dict(index.missing),
        "skipped": dict(index.issues.counts),
        "skipped_summary": index.issues.summary(),
    }


def format_summary(s: Dict[str, Any]) -> str:
    d = s["duration_frames"]
    lines: List[str] = [
        f"root: {s['root']} (layout {s['layout']})",
        f"videos: {s['videos']} ({s['sources_with_rgb']} keypoint sources with a readable video)",
        f"clips: {s['clips']} labelled in {len(s['classes'])} classes"
        + (f", plus {s['background_windows']} background windows" if s["background_windows"] else ""),
    ]
    width = max(len(c["name"]) for c in s["classes"])
    lines += [f"  {c['label']:3d}  {c['name']:<{width}}  {c['clips']:6d}" for c in s["classes"]]
    lines.append(
        f"clip duration (frames): mean {d['mean']:.1f}, median {d['median']:.0f}, p10 {d['p10']:.0f}, "
        f"p90 {d['p90']:.0f}, min {d['min']:.0f}, max {d['max']:.0f}"
    )
    lines.append("missing modalities: " + ", ".join(f"{n} {k}" for k, n in s["missing"].items()))
    lines.append(s["skipped_summary"])
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    """``clipmg-data``: exit 0, or 2 with one sentence for data that cannot be read, 1 for a bug."""
    return run_command("clipmg-data", lambda: _main(argv), style=LogStyle(PLAIN, speak=False, level=logging.WARNING))


def _main(argv: List[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="clipmg-data", description="Inspect micro-gesture datasets.")
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("summary", help="clips per class, durations, missing modalities, skipped files")
    sp.add_argument("root", help="dataset folder (or a pyskl .pkl file)")
    sp.add_argument(
        "--layout",
        default="auto",
        choices=("auto",) + LAYOUT_NAMES,
        help="dataset layout (default: guessed from the file names)",
    )
    sp.add_argument(
        "--classes",
        help="class-names file (one a line, or a JSON list); default: classes.txt "
        "beside the data, else the iMiGUE list",
    )
    sp.add_argument("--background", action="store_true", help="also mine 'no gesture' windows from unlabelled spans")
    sp.add_argument("--strict", action="store_true", help="stop at the first malformed file (exit 2)")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    sp.add_argument("--quiet", action="store_true", help="no per-file warnings, only the summary")
    args = ap.parse_args(argv)
    if args.quiet:
        set_level(logging.ERROR)  # the per-file warnings off
    layout = detect_layout(args.root) if args.layout == "auto" else args.layout
    names = read_class_names(args.classes) if args.classes else None
    index = build_index(args.root, layout, class_names=names, background=args.background, strict=args.strict)
    s = summarize(index)
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
