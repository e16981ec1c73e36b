"""Files every layer writes or checks: atomic writes, digests, the code version (no PyTorch)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from .config import ConfigError


def code_version() -> str:
    """Package version plus the git commit of the source tree when available."""
    try:
        v = version("clipmg")
    except PackageNotFoundError:
        v = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+g{sha}" if sha else v


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call ``write(tmp_path)``, then make the result ``path`` atomically: the one way clipmg writes a
    file that someone may read while it is being written (checkpoints, training state, logs, configs,
    manifests, engines, reports). The temporary file is ``.<name>.XXXXXXXX`` beside ``path`` (what
    ``remove_stale_temporaries`` clears after a kill); the file and then its folder are fsynced, so
    after a crash ``path`` is the old complete file or the new complete one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: Path, names: Sequence[str]) -> List[Path]:
    """Delete the temporary files ``atomic_write`` leaves when a process is killed mid-write
    (``.<name>.XXXXXXXX`` beside ``<name>``); returns what was removed. The real files are never
    touched: a kill leaves either the previous complete file or the new complete one in place."""
    removed = []
    for name in names:
        for p in Path(directory).glob(f".{name}.*"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def shipped_json_names(package: str) -> Tuple[str, ...]:
    """The names (without ``.json``) of the JSON files shipped in ``package``, sorted."""
    files = resources.files(package).iterdir()
    return tuple(sorted(p.name[: -len(".json")] for p in files if p.name.endswith(".json")))


def load_shipped_json(package: str, name: str, what: str) -> Dict[str, Any]:
    """The JSON file ``name`` shipped in ``package``; a ``ConfigError`` naming the shipped ones otherwise
    (``what``: how the message calls them, e.g. "observer profile")."""
    names = shipped_json_names(package)
    if name not in names:
        raise ConfigError(f"unknown {what} {name!r}; choose one of {', '.join(names)}")
    return json.loads(resources.files(package).joinpath(f"{name}.json").read_text())
