"""A real seqserve server (and an echo server) as subprocesses on free ports, shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procs import Running, echo_server, real_server


@pytest.fixture(scope="module")
def server(models_root: Path) -> Iterator[Running]:
    with real_server(models_root, ["--intra-op-threads", "1"]) as running:
        yield running


@pytest.fixture(scope="module")
def echo(models_root: Path) -> Iterator[Running]:
    with echo_server(models_root, "vowels_lstm", chunk=10) as running:
        yield running
