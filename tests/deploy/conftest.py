"""Fixtures for the deployment tests: the no-container topology (two replicas behind nginx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.topology import Balancer, Replica, nginx_binary
from tests.redis_server import RedisServer

SHORT_IDLE_S = 20


@pytest.fixture
def replica(models_root: Path) -> Iterator[Replica]:
    server = Replica(models_root)
    yield server
    server.stop()


@pytest.fixture
def topology(tmp_path: Path, models_root: Path) -> Iterator[tuple[Replica, Replica, Balancer]]:
    """Two replicas (1 s shutdown grace) behind nginx configured from deploy/nginx.conf."""
    yield from two_replicas(tmp_path, models_root)


@pytest.fixture
def shared_topology(
    tmp_path: Path, models_root: Path, redis_server: RedisServer
) -> Iterator[tuple[Replica, Replica, Balancer]]:
    """The same topology with both replicas on one real Redis (`--session-store redis://...`); the grace is long,
    to show that a replica hands its sessions off instead of waiting for them."""
    yield from two_replicas(tmp_path, models_root, "--session-store", redis_server.url, "--shutdown-grace", "600")


@pytest.fixture
def short_lived_topology(
    tmp_path: Path, models_root: Path, redis_server: RedisServer
) -> Iterator[tuple[Replica, Replica, Balancer]]:
    """The shared topology with stored sessions expiring after 20 s idle (SHORT_IDLE_S): a resume must not wait
    for longer than that anywhere (the compose smoke test's replicas keep the default, 60 s)."""
    yield from two_replicas(tmp_path, models_root, "--session-store", redis_server.url,
                            "--session-idle-timeout", str(SHORT_IDLE_S))


def two_replicas(tmp_path: Path, models_root: Path, *args: str) -> Iterator[tuple[Replica, Replica, Balancer]]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed and could not be (make test installs Debian's nginx when root)")
    replicas: list[Replica] = []
    balancer = None
    try:
        replicas = [Replica(models_root, "--shutdown-grace", "1", *args) for _ in range(2)]
        balancer = Balancer(tmp_path, [r.target for r in replicas], binary, web=[r.http_target for r in replicas])
        yield replicas[0], replicas[1], balancer
    finally:
        if balancer is not None:
            balancer.stop()
        for r in replicas:
            r.stop()
