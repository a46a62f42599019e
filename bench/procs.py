"""Server processes under test: the real server and the echo server, started as subprocesses and stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc

from service.healthcheck import probe

READY_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Running:
    pid: int
    target: str  # HOST:PORT of the gRPC server
    metrics_url: str | None  # the real server's /metrics


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _wait_ready(proc: subprocess.Popen[bytes], target: str, health: bool, log: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before serving:\n{tail}")
        try:
            if not health:
                with grpc.insecure_channel(target) as channel:
                    grpc.channel_ready_future(channel).result(timeout=1.0)
                return
            if probe(target, timeout=1.0) == "SERVING":
                return
        except (grpc.RpcError, grpc.FutureTimeoutError):
            pass
        time.sleep(0.2)  # polling a subprocess that is still loading models
    raise RuntimeError(f"{target} not ready after {READY_TIMEOUT_S:.0f} s")


@contextmanager
def _process(argv: Sequence[str], target: str, metrics_url: str | None, health: bool) -> Iterator[Running]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_ready(proc, target, health, log)
            yield Running(proc.pid, target, metrics_url)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def real_server(models: Path, extra: Sequence[str] = ()) -> Iterator[Running]:
    """`python -m service` on free ports, CPU, with the flags in `extra` (e.g. `--max-batch-size 1`)."""
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "service", "--models", str(models), "--host", "127.0.0.1", "--port", str(port),
            "--metrics-port", str(metrics_port), "--device", "cpu", "--log-level", "WARNING", *extra]
    with _process(argv, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", health=True) as running:
        yield running


@contextmanager
def echo_server(models: Path, model: str, chunk: int) -> Iterator[Running]:
    port = free_port()
    argv = [sys.executable, "-m", "service.loadtest.echo", "--models", str(models), "--model", model,
            "--chunk", str(chunk), "--port", str(port)]
    with _process(argv, f"127.0.0.1:{port}", None, health=False) as running:
        yield running
