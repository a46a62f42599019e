"""The load generator against a real server: answered chunks, sane numbers, errors counted by status code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.procs import Running
from service.loadtest import LoadConfig, run_load
from service.loadtest.__main__ import main


def test_short_closed_run_answers_every_chunk_with_sane_numbers(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, streams=4, chunk=10, chunks=5, progress=False))
    assert report.errors == {}
    assert (report.chunks, report.steps) == (20, 200)
    assert report.throughput_chunks_per_s > 0
    assert report.throughput_steps_per_s == pytest.approx(10 * report.throughput_chunks_per_s)
    assert 0 < report.p50_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    assert report.elapsed_s > 0


def test_unknown_model_is_counted_as_not_found_per_stream(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, model="no_such_model", streams=3, chunks=2, features=12,
                                 progress=False))
    assert report.errors == {"NOT_FOUND": 3}
    assert report.chunks == 0


def test_rejected_chunks_are_counted_and_the_streams_go_on(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, streams=2, chunks=3, features=5, progress=False))
    assert report.errors == {"INVALID_ARGUMENT": 6}
    assert report.chunks == 0


def test_open_loop_answers_every_chunk(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, streams=4, chunks=3, rate=400.0, progress=False))
    assert report.mode == "open"
    assert report.errors == {}
    assert report.chunks == 12


def test_two_client_processes_merge_their_tallies(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, streams=3, chunks=4, processes=2, progress=False))
    assert report.processes == 2
    assert report.errors == {}
    assert report.chunks == 12


def test_echo_server_answers_like_the_real_one(echo: Running) -> None:
    report = run_load(LoadConfig(target=echo.target, streams=2, chunks=3, features=12, progress=False))
    assert report.errors == {}
    assert report.chunks == 6


def test_cli_writes_the_json_report(server: Running, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    argv = ["--target", server.target, "--streams", "2", "--chunks", "2", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["errors"] == {}
    assert data["chunks"] == 4
    assert {"throughput_chunks_per_s", "p50_ms", "p99_ms"} <= data.keys()
