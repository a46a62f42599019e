"""The load generator over the web front against a real server: a WebSocket `Stream` per load stream and a Triton
sequence per load stream over KServe REST answer every chunk, end their sessions, and count errors by code."""

from __future__ import annotations

import pytest

from bench.procs import Running
from service.loadtest import LoadConfig, run_load
from service.loadtest.config import parse_args


@pytest.mark.parametrize("protocol", ["websocket", "rest"])
def test_web_protocols_answer_every_chunk(server: Running, protocol: str) -> None:
    assert server.http_target is not None
    report = run_load(LoadConfig(target=server.http_target, streams=4, chunk=10, chunks=5, protocol=protocol,
                                 progress=False))
    assert report.errors == {}
    assert (report.chunks, report.steps, report.protocol) == (20, 200, protocol)
    assert 0 < report.p50_ms <= report.p99_ms


@pytest.mark.parametrize("protocol", ["websocket", "rest"])
def test_web_protocols_count_rejected_chunks_and_unknown_models_by_code(server: Running, protocol: str) -> None:
    assert server.http_target is not None
    bad = run_load(LoadConfig(target=server.http_target, streams=2, chunks=3, features=5, protocol=protocol,
                              progress=False))
    assert bad.chunks == 0 and bad.errors == {"INVALID_ARGUMENT": 6}
    unknown = run_load(LoadConfig(target=server.http_target, model="no_such_model", streams=3, chunks=2,
                                  features=12, protocol=protocol, progress=False))
    assert unknown.errors == {"NOT_FOUND": 3}


def test_web_protocols_over_two_processes(server: Running) -> None:
    assert server.http_target is not None
    report = run_load(LoadConfig(target=server.http_target, streams=4, chunks=3, processes=2,
                                 protocol="websocket", progress=False))
    assert report.errors == {} and report.chunks == 12


def test_the_cli_takes_the_web_protocols() -> None:
    config, _ = parse_args(["--protocol", "websocket", "--target", "127.0.0.1:8000"])
    assert config.protocol == "websocket"
    with pytest.raises(SystemExit):
        parse_args(["--protocol", "rest", "--rate", "10"])
