"""Fixtures shared by every test folder: where the repository and its shipped models live.

The server reads `SEQSERVE_*` variables, and every server a test starts (in-process or as a subprocess) would
inherit them: they are cleared here, before any test runs, so the suite sees the documented defaults.
Subprocesses get this tree (and its client package) first on their `PYTHONPATH`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, start_redis

REPO_ROOT = Path(__file__).resolve().parent.parent
for _name in [name for name in os.environ if name.startswith("SEQSERVE_")]:
    del os.environ[_name]
# The servers, CLIs and tools a test starts as subprocesses import this tree's server and client package (client/),
# as pytest itself does (`pythonpath` in pyproject.toml), whatever the environment has installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO_ROOT), str(REPO_ROOT / "client"), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def models_root() -> Path:
    """The shipped model repository (`models/`), as a fresh clone has it."""
    return REPO_ROOT / "models"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh `redis-server` on a free port for one test (skips where it is not installed)."""
    server = start_redis()
    yield server
    server.stop()
