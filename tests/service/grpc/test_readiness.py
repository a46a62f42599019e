"""Readiness that means something (`--require-models`), start-up failures in one line (exit 2), and a stream
racing the shutdown's stop is refused with UNAVAILABLE (never grpc's CANCELLED)."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelrepo import latest_versions
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as npb_grpc
from service.grpc.cut import CUT_MESSAGE
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from tests.service.grpc.helpers import RunningServer

MODEL = "vowels_lstm"
SAFETY_TIMEOUT_S = 120.0


def readiness(server: RunningServer) -> tuple[int, bool]:
    """(health status of the whole server, Triton ServerReady)."""
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        ready = tpb_grpc.GRPCInferenceServiceStub(channel).ServerReady(tpb.ServerReadyRequest(), timeout=10).ready
    return health, ready


def one_model_repo(tmp_path: Path, models_root: Path, broken: bool) -> Path:
    repo = tmp_path / "models"
    shutil.copytree(models_root / MODEL, repo / MODEL)
    if broken:
        latest_versions(repo)[MODEL].model_path.write_bytes(b"not an onnx graph")
    return repo


SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_an_empty_repository_starts_not_ready_with_a_warning(
    start_server: Callable[..., RunningServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING):
        server = start_server(models=tmp_path / "empty")
    assert readiness(server) == (NOT_SERVING, False)
    assert any("holds no model" in r.getMessage() for r in caplog.records)


def test_a_server_whose_models_all_failed_is_not_ready(
    start_server: Callable[..., RunningServer], tmp_path: Path, models_root: Path
) -> None:
    server = start_server(models=one_model_repo(tmp_path, models_root, broken=True))
    assert readiness(server) == (NOT_SERVING, False)


@pytest.mark.parametrize(("require", "expected"), [("any", SERVING), ("all", SERVING), (MODEL, SERVING),
                                                   (f"{MODEL},nope", NOT_SERVING), ("nope", NOT_SERVING)])
def test_require_models_names_what_must_be_served(
    start_server: Callable[..., RunningServer], tmp_path: Path, models_root: Path, require: str, expected: int
) -> None:
    server = start_server(models=one_model_repo(tmp_path, models_root, broken=False), require_models=require)
    assert readiness(server) == (expected, expected == SERVING)


def test_a_stream_starting_after_the_shutdown_cut_is_refused_with_unavailable(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    server.call(server.serving.streams.cut(1.0))  # the moment between the cut and grpc's stop
    with grpc.insecure_channel(server.target) as channel:
        native = npb_grpc.SeqServeStub(channel).Stream(iter([npb.StreamRequest(open=npb.Open(model=MODEL))]),
                                                       timeout=10)
        triton = tpb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter([]), timeout=10)
        for call in (native, triton):
            with pytest.raises(grpc.RpcError) as failure:
                list(call)
            assert failure.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert CUT_MESSAGE in failure.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize("port_flag", ["--port", "--metrics-port"])
def test_a_port_in_use_stops_the_start_with_one_line_and_exit_2(
    repo_root: Path, models_root: Path, port_flag: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        flags = {"--port": "0", "--metrics-port": "0", "--http-port": "0", port_flag: port}
        command = [sys.executable, "-m", "service", "--models", str(models_root), "--host", "127.0.0.1",
                   "--device", "cpu", *(x for flag, value in flags.items() for x in (flag, value))]
        done = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=SAFETY_TIMEOUT_S)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "cannot start: cannot bind the" in lines[0] and port in lines[0], done.stderr
