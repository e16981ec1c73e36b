"""Shared fixtures: where the read-only real samples live, and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip(f"real iMiGUE samples not found at {d} (the ../shared folder beside the checkout)")
    return d


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP-MG checkpoint (random weights, seed 0) with ``live_harness.CLASSES``, one a test module."""
    from live_harness import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
