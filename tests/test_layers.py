"""The import rule of docs/architecture.md, read from the source: ``model ← engines ← stream ← bench``.

Every ``import clipmg.x`` / ``from clipmg.x …`` of a product folder (module tops and function bodies
alike) is checked against the folders it may import. ``train`` may also import ``stream`` and
``engines`` (the demo model and the real-data report run the live side's code); nothing imports
``train`` or ``bench``.
"""

from __future__ import annotations

import ast
import functools
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


# --------------------------------------------------------------------------- imports inside functions
# Imports belong at the module top (docs/architecture.md, "Imports inside functions"). One inside a
# function must have one of the reasons below; anything else (``import json`` in a function) fails.
PRODUCT = ("model", "engines", "stream", "train", "bench")
PYTORCH = ("torch", "torchvision", "open_clip", "onnx")  # the `train` extra's PyTorch stack

# Optional or heavy backends, loaded only on the path that uses them (the house style's "heavy
# imports inside `load`"), wherever that path is.
BACKENDS = {
    "tensorrt": "TensorRT: the GPU engine path only (the `gpu` extra)",
    "torch_tensorrt": "torch-tensorrt: one build route of clipmg-build (the `gpu` extra)",
    "pycuda": "CUDA from Python: the GPU path only",
    "onnxruntime": "ONNX Runtime: loaded by the ONNX backend's load and by the int8 quantiser",
    "mediapipe": "MediaPipe: one pose backend of several, loaded when it is chosen",
    "av": "PyAV (the `train` extra): video files for training and for the synthetic set",
    "matplotlib": "the confusion-matrix plot of clipmg-eval only",
    "torch.utils.tensorboard": "TensorBoard: only when --tensorboard is given",
    "tensorboard": "TensorBoard: only when --tensorboard is given",
    "zmq": "ZeroMQ: only the code that opens a socket",
    "openpyxl": "MiGA's .xlsx keypoint files only (slow to import, the `runtime` extra)",
    "PIL": "Pillow (not a declared dependency; it comes with matplotlib and scikit-image): a GIF's frame rate in the "
    "real-data report, scikit-image's photographs for the synthetic set's backgrounds",
    "aiohttp": "the web view's server: only with --web",
    "playwright": "the browser that bench/web.py drives (the `test` extra)",
    "playwright.sync_api": "the browser that bench/web.py drives (the `test` extra)",
}

# The modules the live path imports (docs/architecture.md): they may import PyTorch, or a clipmg
# module that imports it, inside a function only.
PYTORCH_FREE = {
    *(
        f"model/{m}.py"
        for m in (
            "config settings logs layouts sampling splits preprocess crop pose_cache files checkpoint_format "
            "keypoint_files synthetic observation posture machine keypoint_stats errors __init__"
        ).split()
    ),
    *(f"engines/{m}.py" for m in "base artifacts graphs metadata loader onnx_backend cli __init__".split()),
    *(f"stream/{p.name}" for p in (REPO / "stream").glob("*.py")),
    "train/index.py",
    "train/pipeline.py",
}
# Modules that need PyTorch but load it (or a clipmg module that does: seconds with open_clip)
# only once the cheap checks are done, so that a wrong flag or a missing GPU is one quick sentence.
PYTORCH_LATER = {
    "train/trainer.py": "clipmg-train: the flags and --data are checked before PyTorch loads",
    "train/ablation.py": "clipmg-ablate: the flags are checked before PyTorch loads",
    "train/demo.py": "the demo-model tool: its flags first; the export is one of its steps",
    "engines/export.py": "clipmg-export: flags, files and the checkpoint's metadata before PyTorch and open_clip",
    "engines/build.py": "clipmg-build: flags, artifact and TensorRT/GPU checks before PyTorch (its CUDA layer)",
    "engines/trt_build.py": "TensorRT builds: PyTorch with torch-tensorrt, after the 'not installed' check",
    "engines/trt_format.py": "the engine file is read and written without PyTorch; it asks CUDA about the GPU",
    "engines/tensorrt_backend.py": "the TensorRT backend: PyTorch holds its CUDA buffers, loaded with tensorrt",
}
# A registry's dispatch loads the one backend it picks (the house style's dict dispatch).
REGISTRIES = {
    ("engines/loader.py", "clipmg.engines.torch_backend"),
    ("engines/loader.py", "clipmg.engines.cuda_backend"),
    ("engines/loader.py", "clipmg.engines.onnx_backend"),
    ("engines/loader.py", "clipmg.engines.tensorrt_backend"),
    ("stream/pose.py", "clipmg.stream.pose_mediapipe"),
    ("stream/pose.py", "clipmg.stream.pose_openpose"),
}
# Import cycles, broken inside a function.
CYCLES: Set[tuple] = set()  # none now: (file, module), with a comment naming the cycle
# TEMPORARY: being edited elsewhere while the imports moved; the lead clears this list after merging.
NOT_YET_CHECKED: set = set()


def _module_of(rel: str) -> str:
    parts = rel[: -len(".py")].split("/")
    return ".".join(["clipmg", *(parts[:-1] if parts[-1] == "__init__" else parts)])


@functools.lru_cache(maxsize=None)
def _file_of(module: str) -> str | None:
    """``clipmg.a.b`` -> ``a/b.py`` (or ``a/b/__init__.py``) when that file is in the repository."""
    if not module.startswith("clipmg."):
        return None
    rel = "/".join(module.split(".")[1:])
    for cand in (f"{rel}.py", f"{rel}/__init__.py"):
        if (REPO / cand).is_file():
            return cand
    return None


@functools.lru_cache(maxsize=None)
def _lazy_names(package_file: str) -> Dict[str, str]:
    """A lazy package ``__init__``'s ``_WHERE`` (name -> submodule), or ``{}``."""
    for node in ast.parse((REPO / package_file).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imported_modules(rel: str, node: ast.Import | ast.ImportFrom) -> List[str]:
    """The absolute modules an import statement of file ``rel`` loads (a lazy package's name: its submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = _module_of(rel).split(".") if rel.endswith("__init__.py") else _module_of(rel).split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        init = _file_of(base)
        if _file_of(sub):
            found.append(sub)
        elif init and init.endswith("__init__.py") and alias.name in _lazy_names(init):
            found.append(f"{base}.{_lazy_names(init)[alias.name]}")
        else:
            found.append(base)
    return found


@functools.lru_cache(maxsize=None)
def _split_imports(rel: str) -> tuple:
    """``(top, inside)``: the modules ``rel`` loads when imported (``if TYPE_CHECKING:`` blocks left
    out), and ``(line, module)`` of every import inside a function."""
    tree = ast.parse((REPO / rel).read_text(encoding="utf-8"), rel)
    inside: List[tuple] = []
    in_function: Set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in in_function:
                    in_function.add(id(node))
                    inside += [(node.lineno, m) for m in imported_modules(rel, node)]
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    top = {
        m
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in in_function | type_only
        for m in imported_modules(rel, node)
    }
    return top, inside


def _matches(module: str, names) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def _loads_pytorch(rel: str) -> bool:
    """Whether importing ``rel`` imports PyTorch, open_clip or ONNX (through clipmg modules' tops too)."""
    seen, todo = set(), [rel]
    while todo:
        f = todo.pop()
        seen.add(f)
        for m in _split_imports(f)[0]:
            if _matches(m, PYTORCH) and not _matches(m, BACKENDS):
                return True
            g = _file_of(m)
            if g and g not in seen:
                todo.append(g)
    return False


def _product_files() -> List[str]:
    return sorted(str(p.relative_to(REPO)) for folder in PRODUCT for p in (REPO / folder).rglob("*.py"))


def misplaced_imports(rel: str) -> List[str]:
    """The imports inside functions of ``rel`` that have none of the reasons above."""
    wrong = []
    for line, m in _split_imports(rel)[1]:
        if _matches(m, BACKENDS) or (rel, m) in REGISTRIES | CYCLES:
            continue
        target = _file_of(m)
        heavy = _matches(m, PYTORCH) or (target is not None and _loads_pytorch(target))
        if heavy and (rel in PYTORCH_FREE or rel in PYTORCH_LATER) and not _loads_pytorch(rel):
            continue
        why = "it loads PyTorch and so does this module" if heavy else "nothing keeps it inside"
        wrong.append(f"{rel}:{line} imports {m} inside a function ({why}): move it to the module top")
    return wrong


def test_imports_inside_functions_each_have_a_reason() -> None:
    wrong = [w for rel in _product_files() if rel not in NOT_YET_CHECKED for w in misplaced_imports(rel)]
    assert wrong == [], "\n".join(wrong)


def test_the_pytorch_free_modules_import_no_pytorch_at_their_top() -> None:
    assert [rel for rel in sorted(PYTORCH_FREE) if _loads_pytorch(rel)] == []
    assert not set(PYTORCH_LATER) & PYTORCH_FREE


def test_the_lists_name_files_that_exist() -> None:
    named = set(PYTORCH_FREE) | set(PYTORCH_LATER) | NOT_YET_CHECKED | {f for f, _ in REGISTRIES | CYCLES}
    assert [f for f in sorted(named) if not (REPO / f).is_file()] == []
    assert [m for _, m in sorted(REGISTRIES | CYCLES) if _file_of(m) is None] == []
