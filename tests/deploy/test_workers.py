"""`--workers 2`: two server processes on one port, both serving, one metrics endpoint that adds them up."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.client import Client
from tests.deploy.topology import Replica
from tests.service.helpers import MANIFESTS

CONNECTIONS = 24  # the kernel spreads connections over the workers: all on one has odds of 2 ** -23
MODEL = "vowels_lstm"


@pytest.fixture
def two_workers(models_root: Path) -> Iterator[Replica]:
    server = Replica(models_root, "--workers", "2")
    yield server
    server.stop()


def samples(replica: Replica, prefix: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{replica.metrics_port}/metrics", timeout=10) as reply:
        lines = reply.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix)}


def test_two_workers_on_one_port_both_serve_and_their_metrics_add_up(two_workers: Replica) -> None:
    x = np.zeros((1, 3, MANIFESTS[MODEL].input.features), dtype=np.float32)
    for _ in range(CONNECTIONS):
        with Client(two_workers.target) as client:  # a new connection each time
            client.infer(MODEL, x)
    total = samples(two_workers, "seqserve_requests_total{")
    assert total == {f'seqserve_requests_total{{code="OK",model="{MODEL}"}}': CONNECTIONS}
    per_worker = samples(two_workers, "seqserve_worker_requests_total{")
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()) and sum(per_worker.values()) == CONNECTIONS
    assert two_workers.kill(signal.SIGTERM) == 0  # forwarded to both workers, which drain and exit
