"""The import rule of docs/architecture.md, read from the source: ``model ← engines ← stream ← bench``.

Every ``import clipmg.x`` / ``from clipmg.x …`` of a product folder (module tops and function bodies
alike) is checked against the folders it may import. ``train`` may also import ``stream`` and
``engines`` (the demo model and the real-data report run the live side's code); nothing imports
``train`` or ``bench``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
MAY_IMPORT: Dict[str, Set[str]] = {
    "model": set(),
    "engines": {"model"},
    "stream": {"model", "engines"},
    "train": {"model", "engines", "stream"},
    "bench": {"model", "engines", "stream"},
}


def clipmg_imports(path: Path) -> List[tuple]:
    """``(line, folder)`` of every absolute import of ``clipmg.<folder>`` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("clipmg.")]
    return found


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_a_folder_imports_only_the_layers_below_it(folder: str) -> None:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no modules in {folder}/"
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports clipmg.{other}"
        for path in files
        for line, other in clipmg_imports(path)
        if other != folder and other not in MAY_IMPORT[folder]
    ]
    assert wrong == [], wrong


def test_the_checker_sees_an_import_in_a_function_body(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from clipmg.bench.drive import DrivenWorker\n    import clipmg.train\n")
    assert clipmg_imports(f) == [(4, "bench"), (5, "train")]
