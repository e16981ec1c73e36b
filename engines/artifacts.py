"""Artifact directories on disk: manifests, integrity checks, atomic publication, type detection.

An export directory (``clipmg-export``) or an engine directory (``clipmg-build``) holds its model
files plus ``manifest.json``, written last: it names every file with its size and sha256 and
repeats the metadata. A directory without a manifest is an unfinished or failed export and is
never loaded. Directories are staged under a temporary name beside the target and renamed into
place only after every check passed, so a failed export never leaves files that look valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

from clipmg.model.files import atomic_write_text, file_sha256

from .base import EngineError

MANIFEST = "manifest.json"
ONNX_EXPORT = "clipmg-onnx-export/1"
TRT_EXPORT = "clipmg-tensorrt-export/1"
KINDS = {ONNX_EXPORT: "onnx", TRT_EXPORT: "tensorrt"}


def file_entry(path: Path) -> Dict[str, Any]:
    """``{"file", "bytes", "sha256"}`` for one file of an artifact directory."""
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def write_manifest(directory: Path, manifest: Dict[str, Any]) -> Path:
    return atomic_write_text(Path(directory) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(directory: Path, expected_format: str | None = None) -> Dict[str, Any]:
    """The manifest of an artifact directory; refuses a missing, unreadable or foreign one."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise EngineError(
            f"{directory} has no {MANIFEST}: it is not a finished clipmg export (an export that "
            f"failed or was interrupted leaves none); run clipmg-export or clipmg-build again"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineError(
            f"{path} is unreadable ({e}); the export is corrupt: run clipmg-export or clipmg-build again"
        ) from e
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt not in KINDS:
        raise EngineError(
            f"{path} has format {fmt!r}, not one this version reads ({', '.join(KINDS)}); "
            f"export the model again with this version of clipmg"
        )
    if expected_format is not None and fmt != expected_format:
        raise EngineError(f"{directory} is a {KINDS[fmt]} artifact, not {KINDS[expected_format]}")
    return manifest


def verify_files(directory: Path, manifest: Dict[str, Any], check_hash: bool = True) -> None:
    """Refuse a missing, truncated or altered file listed in the manifest (size, then sha256)."""
    for role, entry in manifest["files"].items():
        path = Path(directory) / entry["file"]
        if not path.is_file():
            raise EngineError(f"{path} ({role}) is missing; copy the whole directory or export it again")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise EngineError(
                f"{path} is {size} bytes but was written as {entry['bytes']}: the file is "
                f"truncated or corrupt; copy it again or export it again"
            )
        if check_hash and file_sha256(path) != entry["sha256"]:
            raise EngineError(
                f"{path} does not match its sha256 in {MANIFEST}: the file is corrupt; copy it again or export it again"
            )


@contextlib.contextmanager
def staged_directory(out_dir: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``out_dir``, on error it is deleted.

    ``out_dir`` may be absent, empty, or a previous clipmg artifact (it has a manifest); anything
    else is refused so a typo cannot wipe an unrelated folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise EngineError(f"{out_dir} exists and is not a directory; choose another output directory")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise EngineError(
                f"{out_dir} is not empty and is not a clipmg artifact; choose an empty or new output directory"
            )
        if (out_dir / MANIFEST).is_file() and not overwrite:
            raise EngineError(f"{out_dir} already holds an artifact; remove it or allow overwriting")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes it private; the artifact should not be
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(stage, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def detect_artifact(path: Path) -> Tuple[str, Path]:
    """``(kind, path)``: ``checkpoint`` (a .safetensors file), ``onnx`` or ``tensorrt`` (directories).

    A model file inside an artifact directory (``frame_encoder.onnx``, ``*.engine``) stands for
    its directory.
    """
    p = Path(path)
    if not p.exists():
        raise EngineError(
            f"{p} does not exist; give a checkpoint (.safetensors) or a directory written by "
            f"clipmg-export / clipmg-build"
        )
    if p.is_file() and p.suffix == ".safetensors":
        return "checkpoint", p
    if p.is_file() and p.suffix in (".onnx", ".engine", ".plan") or p.name == MANIFEST:
        if not (p.parent / MANIFEST).is_file():  # a model file on its own, not part of an export
            maker = "clipmg-export" if p.suffix == ".onnx" else "clipmg-build"
            raise EngineError(
                f"{p} is a single {p.suffix} file, but clipmg runs an export directory made by "
                f"{maker} (its graphs plus {MANIFEST}); give that directory, or export the "
                f"checkpoint with {maker}"
            )
        p = p.parent
    if p.is_dir():
        if not (p / MANIFEST).is_file() and not any(p.glob("*.onnx")) and not any(p.glob("*.engine")):
            raise EngineError(
                f"{p} is not an artifact clipmg can run: expected a .safetensors checkpoint or "
                f"a directory written by clipmg-export / clipmg-build"
            )
        return KINDS[read_manifest(p)["format"]], p
    raise EngineError(
        f"{p} is not an artifact clipmg can run: expected a .safetensors checkpoint or a "
        f"directory written by clipmg-export / clipmg-build"
    )
