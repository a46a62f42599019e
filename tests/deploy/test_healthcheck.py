"""`python -m service.healthcheck`: exit 0 only when the server says SERVING."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.deploy.topology import REPO_ROOT, Replica


def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.healthcheck", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_serving_replica_is_healthy(replica: Replica) -> None:
    probe = run_probe("--target", replica.target, "--timeout", "30")  # a loaded machine is not an unhealthy server
    assert probe.returncode == 0, probe.stderr


def test_no_server_is_unhealthy() -> None:
    with socket.socket() as sock:  # a bound port that never listens: connection refused
        sock.bind(("127.0.0.1", 0))
        probe = run_probe("--target", f"127.0.0.1:{sock.getsockname()[1]}", "--timeout", "2")
    assert probe.returncode == 1
    assert "unhealthy" in probe.stderr and "UNAVAILABLE" in probe.stderr


@pytest.mark.parametrize("service", ["no.such.Service"])
def test_unknown_service_is_unhealthy(replica: Replica, service: str) -> None:
    probe = run_probe("--target", replica.target, "--service", service, "--timeout", "30")
    assert probe.returncode == 1
    assert "NOT_FOUND" in probe.stderr
