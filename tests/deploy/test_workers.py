"""`--workers 2`: two server processes on one port, both serving, one metrics endpoint that adds them up (over TLS
too, as a single process serves it); a busy metrics port stops it before any worker starts."""

from __future__ import annotations

import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from seqserve_client import Client, Security
from seqserve_client.security import PLAIN
from tests.deploy.topology import REPO_ROOT, Replica
from tests.service.grpc.certs import Certs, make_certs
from tests.service.helpers import MANIFESTS

CONNECTIONS = 24  # the kernel spreads connections over the workers: all on one has odds of 2 ** -23
MODEL = "vowels_lstm"


@pytest.fixture
def two_workers(models_root: Path) -> Iterator[Replica]:
    server = Replica(models_root, "--workers", "2")
    yield server
    server.stop()


def samples(replica: Replica, prefix: str, ca: Path | None = None) -> dict[str, float]:
    scheme, context = ("http", None) if ca is None else ("https", ssl.create_default_context(cafile=str(ca)))
    url = f"{scheme}://localhost:{replica.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10, context=context) as reply:
        lines = reply.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix)}


def serve_and_count(workers: Replica, security: Security = PLAIN, ca: Path | None = None) -> None:
    x = np.zeros((1, 3, MANIFESTS[MODEL].input.features), dtype=np.float32)
    for _ in range(CONNECTIONS):
        with Client(workers.target, security=security) as client:  # a new connection each time
            client.infer(MODEL, x)
    total = samples(workers, "seqserve_requests_total{", ca)
    assert total == {f'seqserve_requests_total{{code="OK",model="{MODEL}"}}': CONNECTIONS}
    per_worker = samples(workers, "seqserve_worker_requests_total{", ca)
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()) and sum(per_worker.values()) == CONNECTIONS
    assert workers.kill(signal.SIGTERM) == 0  # forwarded to both workers, which drain and exit


def test_two_workers_on_one_port_both_serve_and_their_metrics_add_up(two_workers: Replica) -> None:
    serve_and_count(two_workers)


def test_with_tls_the_summed_metrics_speak_tls_like_a_single_process(models_root: Path, tmp_path: Path) -> None:
    certs: Certs = make_certs(tmp_path)
    security = Security(ca=certs.ca)
    workers = Replica(models_root, "--workers", "2", "--tls-cert", str(certs.server_cert), "--tls-key",
                      str(certs.server_key), security=security)
    try:
        serve_and_count(workers, security, certs.ca)  # (the workers' own endpoints: plain, on loopback)
    finally:
        workers.stop()


def test_a_busy_metrics_port_stops_the_start_before_any_worker(models_root: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv = [sys.executable, "-m", "service", "--models", str(models_root), "--host", "127.0.0.1", "--port", "0",
                "--http-port", "0", "--metrics-port", str(busy.getsockname()[1]), "--workers", "2"]
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot bind the metrics port" in done.stderr and "[worker" not in done.stderr


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
        return [int(child) for child in listing.read().split()]


def test_sigkill_of_the_parent_ends_every_worker(two_workers: Replica) -> None:
    """No orphan keeps the port: each worker asked the kernel for SIGTERM at its parent's death (PR_SET_PDEATHSIG)."""
    workers = children_of(two_workers.process.pid)
    assert len(workers) == 2
    handles = [os.pidfd_open(pid) for pid in workers]  # readable once that process has ended
    try:
        two_workers.kill(signal.SIGKILL)
        for handle in handles:  # a safety net, never a timed assertion: a worker drains, then exits
            readable, _, _ = select.select([handle], [], [], 60)
            assert readable, "a worker outlived its parent"
    finally:
        for handle in handles:
            os.close(handle)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", two_workers.port))  # the port is free again: nobody serves on it


def test_with_authentication_the_summed_metrics_need_a_metrics_token(models_root: Path) -> None:
    """The parent reads its workers' /metrics with a token of its own; a scraper needs one with the permission."""
    tokens = '{"user": {"principal": "alice"}, "prom": {"principal": "prometheus", "models": [], "metrics": true}}'
    server = Replica(models_root, "--workers", "2", "--auth-tokens", tokens)
    try:
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        for token in (None, "user"):
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
            assert refused.value.code == 401
            refused.value.close()
        scrape = urllib.request.Request(url, headers={"Authorization": "Bearer prom"})
        with urllib.request.urlopen(scrape, timeout=10) as reply:
            text = reply.read().decode()
        assert text.count("seqserve_worker_requests_total{") == 2  # both workers were read, with the parent's token
        assert "seqserve_active_sessions" in text
    finally:
        server.stop()
