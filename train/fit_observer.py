"""Fit the synthetic set's observer and posture profiles to real OpenPose keypoints.

    python -m clipmg.train.fit_observer [--data ../shared/data] [--out model/observers/openpose.json]
        [--posture-out model/postures/seated.json] [--check]

Reads iMiGUE video 298 (the shared real sample: seven minutes of raw OpenPose JSON, 25 fps) with
the training readers and fits ``model/observation.py``'s profile to the frames **outside its
labelled clips** (a margin of ``MARGIN_S`` either side): only label-free facts about the estimator
are read (confidences, misses, frame-to-frame noise), never a class, and the labelled clips the
real-data report scores stay unseen. The same frames give the posture profile
(``model/posture.py``: arm lengths, the nose's height, where resting wrists and elbows are).
``--check`` refits and compares with the shipped profiles instead of writing them (CI runs it, so
the shipped numbers are the command's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from clipmg.model.errors import ClipmgError, run_command
from clipmg.model.observation import ObserverProfile, fit_profile
from clipmg.model.posture import PostureProfile, fit_posture

from .readers import IMIGUE_CLASSES, read_label_csv, read_openpose_folder
from .real_data import VIDEO_298, default_data_dir

PROFILE = "openpose"
POSTURE = "seated"
MARGIN_S = 1.0  # seconds left out before and after every labelled clip
FPS_298 = 25.0
COMMAND = "python -m clipmg.train.fit_observer"


def unlabelled_frames(frames: int, rows, margin: int) -> np.ndarray:
    """``(frames,)`` True outside every labelled clip widened by ``margin`` frames each side."""
    use = np.ones(frames, bool)
    for r in rows:
        use[max(0, r.start - margin) : min(frames, r.end + margin + 1)] = False
    return use


def fit_298(data: Path) -> Tuple[ObserverProfile, PostureProfile]:
    """The ``openpose`` observer and ``seated`` posture profiles from video 298's unlabelled frames."""
    folder = data.joinpath(*VIDEO_298)
    if not folder.is_dir():
        raise ClipmgError(f"{folder} is not there; pass --data with the shared real samples (see its README)")
    kp = read_openpose_folder(folder / "openpose", "298")
    rows = read_label_csv(folder / "298_label.csv", num_classes=len(IMIGUE_CLASSES))
    use = unlabelled_frames(len(kp), rows, int(round(MARGIN_S * FPS_298)))
    what = f"frames outside its {len(rows)} labelled clips (±{MARGIN_S:g} s): {int(use.sum())} of {len(kp)} frames"
    observer = fit_profile(
        [(kp, use)],
        FPS_298,
        PROFILE,
        f"OpenPose 1.7 (BODY_25 + face + hands) on iMiGUE video 298, {what}; `{COMMAND}`",
    )
    posture = fit_posture(
        kp, use, POSTURE, f"the seated speaker of iMiGUE video 298 (OpenPose 1.7), {what}; `{COMMAND}`", fps=FPS_298
    )
    return observer, posture


def shipped_path() -> Path:
    return Path(__file__).resolve().parents[1] / "model" / "observers" / f"{PROFILE}.json"


def shipped_posture_path() -> Path:
    return Path(__file__).resolve().parents[1] / "model" / "postures" / f"{POSTURE}.json"


def compare(a: ObserverProfile | PostureProfile, b: ObserverProfile | PostureProfile, tol: float = 1e-5) -> List[str]:
    """The fields in which two profiles differ by more than ``tol`` (after the file's rounding)."""
    da, db = a.to_dict(), b.to_dict()
    numbers = [k for k, v in da.items() if not isinstance(v, str)]
    return [k for k in numbers if not np.allclose(np.asarray(da[k]), np.asarray(db[k]), atol=tol)]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipmg-fit-observer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the shared real samples (default: ../shared/data)")
    ap.add_argument("--out", type=Path, default=None, help="where to write the profile (default: the shipped one)")
    ap.add_argument(
        "--posture-out", type=Path, default=None, help="where to write the posture profile (default: the shipped one)"
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="refit and compare with the profile (--out, or the shipped one); write nothing",
    )
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        profile, posture = fit_298(args.data or default_data_dir())
        fitted = (
            (profile, args.out or shipped_path(), ObserverProfile.from_dict),
            (posture, args.posture_out or shipped_posture_path(), PostureProfile.from_dict),
        )
        for fit, path, load in fitted:
            if args.check:
                try:
                    shipped = load(json.loads(path.read_text()))
                except (OSError, ValueError, KeyError) as e:
                    raise ClipmgError(f"cannot read the profile {path}: {e}") from e
                differ = compare(fit, shipped)
                if differ:
                    raise ClipmgError(f"{path} differs from a refit in {', '.join(differ)}; rerun {COMMAND}")
                print(f"{path} matches a refit ({fit.frames} frames)")
            else:
                path.write_text(json.dumps(fit.to_dict(), separators=(",", ":")) + "\n")
                print(f"wrote {path} ({fit.frames} frames)", file=sys.stderr)
        return 0

    return run_command("clipmg-fit-observer", body)


if __name__ == "__main__":
    sys.exit(main())
