"""Shared pytest set-up: data locations and session-scoped fixtures gathered from per-topic modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest_plugins: list[str] = []
for _mod in ("fixtures_models", "fixtures_vlm", "fixtures_media", "fixtures_llm"):
    if (Path(__file__).parent / f"{_mod}.py").exists():
        pytest_plugins.append(f"tests.{_mod}" if (Path(__file__).parent / "__init__.py").exists() else _mod)


def msrvtt_dir() -> Path:
    """Where the MSR-VTT score matrices live: $MMFUSE_MSRVTT or ../shared/data/msrvtt-1ka."""
    return Path(os.environ.get("MMFUSE_MSRVTT", REPO.parent / "shared" / "data" / "msrvtt-1ka"))


@pytest.fixture(scope="session")
def msrvtt():
    path = msrvtt_dir()
    if not (path / "descs_ret_test_msrvtt.csv").exists():
        pytest.skip(f"MSR-VTT score matrices not found at {path} (set MMFUSE_MSRVTT)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
