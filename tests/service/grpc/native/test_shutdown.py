"""`python -m service` as a real subprocess: metrics served, and a graceful SIGTERM/SIGINT with streams in
flight (every chunk sent before the signal is answered; new sessions and requests are refused with UNAVAILABLE
while the open sessions finish; the process exits 0 once they have)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import SERVER_PORTS, LogWatcher
from seqserve_client import AsyncClient, ServerError

MODEL = "vowels_lstm"
SAFETY_TIMEOUT_S = 120.0  # only against a hang


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    target: str
    metrics_url: str
    watcher: LogWatcher

    @property
    def log(self) -> list[str]:
        return self.watcher.lines

    def wait(self) -> int:
        """The exit code, once the process has exited and its whole log has been read."""
        code = self.process.wait(timeout=SAFETY_TIMEOUT_S)
        self.watcher.join(timeout=SAFETY_TIMEOUT_S)
        return code


@pytest.fixture
def server_process(repo_root: Path, models_root: Path) -> Iterator[Callable]:
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        command = [sys.executable, "-m", "service", "--models", str(models_root), "--host", "127.0.0.1",
                   "--port", "0", "--http-port", "0", "--metrics-port", "0", "--device", "cpu", *flags]
        process = subprocess.Popen(command, cwd=repo_root, stderr=subprocess.PIPE, text=True)
        watcher = LogWatcher(process.stderr, SERVER_PORTS)  # type: ignore[arg-type]
        watcher.start()
        port = watcher.found["port"].result(SAFETY_TIMEOUT_S)
        metrics_port = watcher.found["metrics"].result(SAFETY_TIMEOUT_S)
        server = ServerProcess(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", watcher)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.wait()
        assert server.process.stderr is not None
        server.process.stderr.close()


async def next_status(watch) -> int:
    return (await watch.read()).status


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown_answers_every_chunk_sent_before_the_signal(
    server_process, reference, signum: int
) -> None:
    server = server_process("--shutdown-grace", "60")
    with urllib.request.urlopen(server.metrics_url) as response:
        assert b"seqserve_active_sessions" in response.read()
    rng = np.random.default_rng(9)
    sequences = [reference.sequence(MODEL, 40, rng) for _ in range(8)]
    async with AsyncClient(server.target) as client, grpc.aio.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert await next_status(watch) == health_pb2.HealthCheckResponse.SERVING
        streams = [await client.stream(MODEL).open() for _ in sequences]
        answered = [[await s.send(x[:4])] for s, x in zip(streams, sequences, strict=True)]
        for stream, x in zip(streams, sequences, strict=True):
            for start in range(4, 40, 4):
                await stream.submit(x[start:start + 4])
        os.kill(server.process.pid, signum)
        assert await next_status(watch) == health_pb2.HealthCheckResponse.NOT_SERVING
        # Refused by the server itself, not by grpc core racing its own stop: the sessions are still open, so
        # `server.stop` has not started yet.
        with pytest.raises(ServerError, match="shutting down") as refused:
            await client.stream(MODEL).open()
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ServerError, match="shutting down") as refused:
            await client.infer(MODEL, sequences[0][None])
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        for stream, outputs in zip(streams, answered, strict=True):
            outputs += [await stream.receive() for _ in range(4, 40, 4)]
            await stream.close()
        watch.cancel()
    for x, outputs in zip(sequences, answered, strict=True):
        got = np.concatenate([o["logits"] for o in outputs])
        np.testing.assert_allclose(got, reference.run(MODEL, x)["logits"], rtol=0, atol=1e-4)
    assert server.wait() == 0, "".join(server.log)


async def test_streams_still_open_after_the_grace_period_are_cut_and_the_process_exits(server_process) -> None:
    server = server_process("--shutdown-grace", "0.5", "--log-format", "json")
    async with AsyncClient(server.target) as client:
        stream = await client.stream(MODEL).open()
        await stream.send(np.zeros((2, 12), np.float32))
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.wait() == 0, "".join(server.log)
        # The server ended the stream itself before it stopped: a reader gets its status, and so does a later send.
        # (A send racing that status can fail inside grpc's client with INTERNAL instead: grpc's behaviour.)
        with pytest.raises(ServerError, match="shutting down and has ended this stream") as cut:
            await stream.receive()
        assert cut.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ServerError, match="shutting down and has ended this stream"):
            await stream.send(np.zeros((2, 12), np.float32))
    assert any('"message": "stopped"' in line for line in server.log)
    assert any("grace of 0.5 s used up" in line for line in server.log), "".join(server.log)


def test_device_cuda_without_a_gpu_stops_the_start_with_a_clear_message(repo_root: Path, models_root: Path) -> None:
    command = [sys.executable, "-m", "service", "--models", str(models_root), "--device", "cuda", "--port", "0",
               "--http-port", "0"]
    done = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=SAFETY_TIMEOUT_S)
    assert done.returncode == 2
    assert "cannot start: --device cuda" in done.stderr and "--device auto|cpu" in done.stderr


async def test_device_auto_serves_on_cpu_warning_only_where_the_build_has_cuda(server_process) -> None:
    """The CPU build (what `make test` installs here) serves under --device auto with no CUDA warning at all; the
    CUDA build on a machine without a GPU falls back to CPU with exactly one warning."""
    server = server_process("--device", "auto")
    warnings = [line for line in server.log if "WARNING" in line and "CUDA" in line]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert len(warnings) == 1 and "serving every model on CPU" in warnings[0], "".join(server.log)
    else:
        assert warnings == [], "".join(server.log)
    assert not any("onnxruntime" in line and "[E:" in line for line in server.log), "".join(server.log)
    async with AsyncClient(server.target) as client:
        assert {m.provider for m in await client.models()} == {"CPUExecutionProvider"}
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.wait() == 0
