"""pyskl / mmaction annotation pickles, loaded without ever running code from the file.

``PlainDataUnpickler`` resolves only the globals that rebuild plain data (numpy arrays, dtypes and
scalars, protocol-5 buffers, latin-1 bytes of protocol-2 files); everything else is refused before
it is looked up. Keypoints come back as float32 ``(T, 137, 3)`` like every other reader.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from clipmg.model.layouts import NUM_OPENPOSE, from_body25_hands, from_light_hand, get_layout, layout_indices

from .readers import DataError, Issues, report_issue


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles (mmcv's default) store array bytes as ``_codecs.encode(str, 'latin1')``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise DataError(f"refusing _codecs.encode with encoding {encoding!r} in a pickle")
    return text.encode("latin1", errors)


# Plain-data constructors only: numpy array / dtype / scalar reconstruction (numpy 1.x and 2.x
# module names), protocol-5 array buffers, and latin-1 bytes for protocol-2 files.
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers, numbers, strings and numpy arrays.

    Any other global (``os.system``, ``builtins.eval``, a class, ...) is refused before it is
    looked up, so a malicious pickle cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _PICKLE_ALLOWED:
            return getattr(importlib.import_module(module), name)
        raise DataError(
            f"refusing to unpickle {module}.{name}: only plain data and numpy arrays are allowed "
            f"(the file is not a pyskl annotation file, or it may be malicious)"
        )


def safe_pickle_load(path: str | Path) -> Any:
    """Load a pickle with ``PlainDataUnpickler``; any failure is a ``DataError``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return PlainDataUnpickler(f).load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from e
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        TypeError,
        ValueError,
        MemoryError,
    ) as e:
        raise DataError(f"cannot read pickle {path}: {type(e).__name__}: {e} (truncated or not a pickle?)") from e


def to_openpose137(kp: np.ndarray) -> np.ndarray:
    """Keypoints ``(..., V, 3)`` in a known layout (V = 137, 67 ``body25_hands``, 35 light_hand,
    25 ``body25``, 22 ``upper22``) -> ``(..., 137, 3)`` with absent joints at confidence 0."""
    kp = np.asarray(kp, np.float32)
    v = kp.shape[-2]
    if v == NUM_OPENPOSE:
        return kp
    if v == 67:
        return from_body25_hands(kp)
    if v == 35:
        return from_light_hand(kp)
    for name in ("body25", "upper22"):
        if v == len(get_layout(name)):
            out = np.zeros(kp.shape[:-2] + (NUM_OPENPOSE, 3), np.float32)
            out[..., layout_indices(name), :] = kp
            return out
    raise DataError(f"unknown keypoint layout with {v} joints; expected 137, 67, 35, 25 or 22")


@dataclass(frozen=True)
class PysklClip:
    """One annotation of a pyskl pickle: keypoints ``(T, 137, 3)`` of its (first) person."""

    frame_dir: str
    label: int
    keypoints: np.ndarray
    img_shape: Tuple[int, int] | None  # (height, width)


def read_pyskl(path: str | Path, issues: Issues | None = None) -> Tuple[Dict[str, List[str]], List[PysklClip]]:
    """pyskl / mmaction pickle ``{'split': {...}, 'annotations': [...]}`` -> (split, clips).

    ``keypoint`` ``(M, T, V, 2)`` and ``keypoint_score`` ``(M, T, V)``; the person with the highest
    mean score is kept. Bad annotations are reported and skipped.
    """
    data = safe_pickle_load(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not a pyskl annotation file (expected a dict with an 'annotations' list)")
    split = data.get("split") or {}
    if not isinstance(split, dict):
        raise DataError(f"{path}: 'split' must be a dict of name -> list of frame_dir")
    clips: List[PysklClip] = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{path} annotation {i}"
        try:
            clips.append(_pyskl_clip(ann, where))
        except DataError as e:
            report_issue(issues, "bad pyskl annotation", str(e))
        except (TypeError, ValueError, IndexError) as e:
            report_issue(issues, "bad pyskl annotation", f"{where}: {type(e).__name__}: {e}")
    return {str(k): [str(x) for x in v] for k, v in split.items()}, clips


def _pyskl_clip(ann: Any, where: str) -> PysklClip:
    if not isinstance(ann, dict) or "keypoint" not in ann or "frame_dir" not in ann or "label" not in ann:
        raise DataError(f"{where}: needs frame_dir, label and keypoint")
    kp = np.asarray(ann["keypoint"], dtype=np.float32)
    if kp.ndim == 3:
        kp = kp[None]
    if kp.ndim != 4 or kp.shape[-1] != 2 or kp.shape[0] < 1 or kp.shape[1] < 1:
        raise DataError(f"{where}: keypoint must be (M, T, V, 2), got {kp.shape}")
    score = ann.get("keypoint_score")
    sc = (
        np.asarray(score, np.float32).reshape(kp.shape[:3])
        if score is not None
        else (np.abs(kp).sum(-1) > 0).astype(np.float32)
    )
    person = int(np.argmax(sc.mean(axis=(1, 2))))
    full = to_openpose137(np.concatenate([kp[person], sc[person][..., None]], axis=-1))
    full[full[..., 2] <= 0] = 0.0
    label = int(ann["label"])
    if label < 0:
        raise DataError(f"{where}: negative label {label}")
    shape = ann.get("img_shape")
    img_shape = (int(shape[0]), int(shape[1])) if shape is not None and len(shape) >= 2 else None
    if not np.isfinite(full).all():
        raise DataError(f"{where}: keypoints contain NaN or infinity")
    return PysklClip(str(ann["frame_dir"]), label, full, img_shape)
