"""``clipmg.model.files.atomic_write``: the one way the project writes a file someone may be reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipmg.model.files import atomic_write, atomic_write_bytes, atomic_write_text, remove_stale_temporaries


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and len(list(target.parent.iterdir())) == 1


def test_temporaries_are_named_after_their_file_and_cleared_by_name(tmp_path: Path) -> None:
    seen = []
    atomic_write(tmp_path / "last.safetensors", lambda tmp: (seen.append(Path(tmp).name), Path(tmp).write_bytes(b"x")))
    assert seen[0].startswith(".last.safetensors.")
    (tmp_path / seen[0]).write_bytes(b"left by a kill")
    (tmp_path / ".other.txt.abc").write_bytes(b"not ours")
    removed = remove_stale_temporaries(tmp_path, ["last.safetensors"])
    assert [p.name for p in removed] == [seen[0]] and (tmp_path / ".other.txt.abc").exists()
