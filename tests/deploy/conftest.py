"""Fixtures for the deployment tests: the no-container topology (two replicas behind nginx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.topology import Balancer, Replica, nginx_binary


@pytest.fixture
def replica(models_root: Path) -> Iterator[Replica]:
    server = Replica(models_root)
    yield server
    server.stop()


@pytest.fixture
def topology(tmp_path: Path, models_root: Path) -> Iterator[tuple[Replica, Replica, Balancer]]:
    """Two replicas (1 s shutdown grace) behind nginx configured from deploy/nginx.conf."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed and could not be (make test installs Debian's nginx when root)")
    replicas: list[Replica] = []
    balancer = None
    try:
        replicas = [Replica(models_root, "--shutdown-grace", "1") for _ in range(2)]
        balancer = Balancer(tmp_path, [r.target for r in replicas], binary)
        yield replicas[0], replicas[1], balancer
    finally:
        if balancer is not None:
            balancer.stop()
        for r in replicas:
            r.stop()
