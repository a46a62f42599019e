"""Fixtures shared by every test folder: where the repository and its shipped models live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def models_root() -> Path:
    """The shipped model repository (`models/`), as a fresh clone has it."""
    return REPO_ROOT / "models"
