"""gRPC test fixtures: `start_server(**settings)` starts a real server (see `helpers.py`), stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrepo import Manifest
from service.settings import Settings
from tests.service.grpc.helpers import Reference, RunningServer, run_in_thread
from tests.service.helpers import MANIFESTS, STREAMABLE


@pytest.fixture
def start_server(models_root: Path) -> Iterator[Callable[..., RunningServer]]:
    """Factory: start a server on the shipped models (CPU, 1 thread, port 0) with any settings overridden."""
    started: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        fields: dict[str, Any] = {"models": models_root, "host": "127.0.0.1", "port": 0, "metrics_port": 0,
                                  "http_port": 0, "device": "cpu", "intra_op_threads": 1, **overrides}
        server = run_in_thread(Settings(**fields))
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def manifests() -> dict[str, Manifest]:
    """The newest manifest of every shipped model, by name."""
    return MANIFESTS


@pytest.fixture(scope="session")
def streamable() -> list[str]:
    return STREAMABLE


@pytest.fixture(scope="session")
def reference(manifests: dict[str, Manifest]) -> Reference:
    return Reference(manifests)
