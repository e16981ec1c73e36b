"""The checkpoint format without PyTorch: its metadata, and what a checkpoint or artifact must match.

A checkpoint is one safetensors file whose header carries the JSON metadata under ``clipmg`` (model
config, class names, clip-duration statistics, metrics, code version, and ``tensor_sha256``: the
digest of the weights, see :func:`tensor_digest`). Reading the metadata needs only ``safetensors``
and NumPy; the weights are loaded by ``clipmg.model.checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from safetensors import safe_open

from .config import ModelConfig
from .errors import ClipmgError

FORMAT = "clipmg-checkpoint/1"
META_KEY = "clipmg"
DIGEST_KEY = "tensor_sha256"  # metadata key of the weights' digest (tensor_digest)

log = logging.getLogger("clipmg.model")
_warned_no_digest: set[str] = set()


class CheckpointError(ClipmgError, ValueError):
    """A checkpoint that cannot be used; the message says why and what to do. (A ``ValueError`` too,
    for callers written before ``ClipmgError``.)"""


def read_metadata(path: str | Path) -> Dict[str, Any]:
    """The metadata of a checkpoint without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise CheckpointError(
            f"{path} is not a readable clipmg checkpoint ({e}); it may be truncated or corrupt: re-copy it or retrain"
        ) from e
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file without clipmg metadata; export it from "
            f"clipmg-train or load plain CLIP weights with create_model(pretrained=...)"
        )
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this version reads {FORMAT}")
    return meta


def _header(buf: Any, where: Path | str) -> Tuple[Dict[str, Any], int]:
    """The parsed safetensors header of the bytes ``buf`` and where its data section starts."""
    if len(buf) < 8:
        raise CheckpointError(f"{where} is too short to be a safetensors file; it is truncated or corrupt")
    n = int.from_bytes(buf[:8], "little")
    if n > len(buf) - 8:
        raise CheckpointError(
            f"{where}: its safetensors header claims {n} bytes but the file has {len(buf) - 8}; "
            f"it is truncated or corrupt"
        )
    try:
        header = json.loads(bytes(buf[8 : 8 + n]))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{where}: the safetensors header is not JSON; the file is corrupt") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the safetensors header is not a JSON object; the file is corrupt")
    return header, 8 + n


def tensor_digest(buf: Any, where: Path | str = "checkpoint") -> str:
    """sha256 over the tensors of a safetensors file held in ``buf`` (bytes, memoryview or mmap), in
    a defined order that does not depend on the header's layout or metadata: for each tensor name in
    sorted order, ``name NUL dtype NUL shape (comma-separated) NUL`` and then its raw bytes."""
    header, start = _header(buf, where)
    h = hashlib.sha256()
    view = memoryview(buf)
    for name in sorted(k for k in header if k != "__metadata__"):
        t = header[name]
        try:
            lo, hi = (int(x) for x in t["data_offsets"])
            dtype, shape = str(t["dtype"]), [int(x) for x in t["shape"]]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: tensor {name!r} has a malformed header entry; the file is corrupt") from e
        if not 0 <= lo <= hi <= len(buf) - start:
            raise CheckpointError(f"{where}: tensor {name!r} lies beyond the end of the file; it is truncated")
        h.update(f"{name}\0{dtype}\0{','.join(map(str, shape))}\0".encode())
        h.update(view[start + lo : start + hi])
    return h.hexdigest()


def with_digest(buf: Any, where: Path | str = "checkpoint") -> Tuple[bytes, memoryview]:
    """A safetensors file in ``buf`` with :func:`tensor_digest` put into its clipmg metadata: returns
    the new length prefix plus header, and the unchanged data section (write the two one after the
    other). The tensor bytes are untouched; only the header grows."""
    header, start = _header(buf, where)
    meta = header.get("__metadata__") or {}
    if META_KEY not in meta:
        raise CheckpointError(f"{where} is a safetensors file without clipmg metadata")
    info = json.loads(meta[META_KEY])
    info[DIGEST_KEY] = tensor_digest(buf, where)
    header["__metadata__"] = {**meta, META_KEY: json.dumps(info)}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors keeps the data section 8-byte aligned
    return len(text).to_bytes(8, "little") + text, memoryview(buf)[start:]


def verify_digest(path: str | Path, meta: Dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights do not match the digest in its metadata (a file corrupted
    on disk or in a copy, even when its size is right). A checkpoint written before digests existed
    loads with one warning a file."""
    path = Path(path)
    want = meta.get(DIGEST_KEY)
    if want is None:
        key = str(path.resolve())
        if key not in _warned_no_digest:
            _warned_no_digest.add(key)
            log.warning(
                "%s has no weight digest (written by an older clipmg), so corruption of its weights cannot "
                "be detected; re-save it with clipmg.model.checkpoint.add_digest",
                path,
            )
        return
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            have = tensor_digest(buf, path)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if have != want:
        raise CheckpointError(
            f"checkpoint {path}: the weights do not match their digest: the file is corrupt; copy it again or retrain"
        )


def config_differences(expected: ModelConfig, actual: ModelConfig) -> List[str]:
    """Human-readable differences between two model configs (``[]`` when they agree)."""
    out: List[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix[:-1]} is {b!r} in the checkpoint but {a!r} was requested")

    walk(json.loads(json.dumps(expected.to_dict())), json.loads(json.dumps(actual.to_dict())), "")
    return out


def expectation_differences(
    meta: Dict[str, Any],
    what: str = "checkpoint",
    config: ModelConfig | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    variant: str | None = None,
    preset: str | None = None,
    preprocess: Any = None,
    image_size: int | None = None,
    num_joints: int | None = None,
    layout: str | None = None,
    rgb_frames: int | None = None,
    pose_frames: int | None = None,
) -> List[str]:
    """What differs between a checkpoint's or artifact's metadata and what the caller asked for
    (``[]``: nothing). ``what`` names the thing in the sentences ("checkpoint", "artifact")."""
    cfg = ModelConfig.from_dict(meta["config"])
    diffs: List[str] = []
    if config is not None:
        diffs += [d.replace("in the checkpoint", f"in the {what}") for d in config_differences(config, cfg)]
    if preset is not None and cfg.name != preset:
        diffs.append(f"preset is {cfg.name!r} in the {what} but {preset!r} was requested")
    if variant is not None and cfg.variant != variant:
        diffs.append(f"variant is {cfg.variant!r} in the {what} but {variant!r} was requested")
    if num_classes is not None and cfg.num_classes != num_classes:
        diffs.append(f"the {what} has {cfg.num_classes} classes but {num_classes} were requested")
    if class_names is not None and list(class_names) != list(meta["class_names"]):
        diffs.append(
            f"class names differ ({what}: {list(meta['class_names'])[:4]}..., requested: {list(class_names)[:4]}...)"
        )
    if preprocess is not None:
        want = preprocess if isinstance(preprocess, dict) else json.loads(json.dumps(preprocess.__dict__))
        have = json.loads(json.dumps(cfg.preprocess.__dict__))
        for k in sorted(set(want) | set(have)):
            if want.get(k, have.get(k)) != have.get(k):
                diffs.append(f"preprocess.{k} is {have.get(k)!r} in the {what} but {want.get(k)!r} was requested")
    scalars = {
        "image_size": (image_size, cfg.vision.image_size),
        "num_joints": (num_joints, cfg.pose.num_joints),
        "keypoint layout": (layout, cfg.pose.layout),
        "rgb_frames": (rgb_frames, cfg.clip.rgb_frames),
        "pose_frames": (pose_frames, cfg.clip.pose_frames),
    }
    for name, (want_v, have_v) in scalars.items():
        if want_v is not None and want_v != have_v:
            diffs.append(f"{name} is {have_v!r} in the {what} but {want_v!r} was requested")
    return diffs


EXPECTATIONS = (
    "config",
    "class_names",
    "num_classes",
    "variant",
    "preset",
    "preprocess",
    "image_size",
    "num_joints",
    "layout",
    "rgb_frames",
    "pose_frames",
)


def check_expectations(
    meta: Dict[str, Any], where: Path | str, what: str = "checkpoint", error: type = CheckpointError, **expect: Any
) -> None:
    """Refuse, with one sentence (``error``), metadata that does not match what the caller asked for.

    ``what``: "checkpoint" or "artifact" (the sentence names it and says what to use instead);
    ``expect`` keys: ``EXPECTATIONS``.
    """
    diffs = expectation_differences(meta, what, **expect)
    if diffs:
        use = (
            "a checkpoint trained for this configuration"
            if what == "checkpoint"
            else "an artifact exported from a checkpoint trained for this configuration"
        )
        lead = f"checkpoint {where}" if what == "checkpoint" else str(where)
        raise error(
            f"{lead} does not match the requested configuration: "
            + "; ".join(diffs[:6])
            + f". Use {use}, or drop the conflicting options."
        )


def user_message(e: BaseException) -> str:
    """An error as one line for a command line. torch's refusal of a pickle spans many lines and
    suggests ``weights_only=False``: it is replaced by what matters. A pickle that names code
    (``GLOBAL module.name``) is refused as such; anything else the unpickler cannot read (random
    bytes, a damaged file) is said to be no PyTorch checkpoint file."""
    text = str(e) or type(e).__name__
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        lead = text.split("Weights only load failed")[0].rstrip(" :")
        if found:
            text = (
                lead + f": refused: the file holds pickled objects ({found.group(1)}), not only tensors, and "
                f"is never run; give a .safetensors file or a plain state dict"
            )
        else:
            text = (
                lead + ": the file is not a safetensors or PyTorch checkpoint file (or it is damaged); give a "
                ".safetensors file or a plain state dict saved with torch.save"
            )
    return " ".join(text.split())
