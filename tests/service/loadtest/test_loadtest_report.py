"""The report's JSON shape and numbers, the human table, and how a load is split over client processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.loadtest.config import LoadConfig, parse_args
from service.loadtest.report import build_report
from service.loadtest.stats import Tally

REQUIRED_KEYS = {"throughput_chunks_per_s", "p50_ms", "p99_ms", "errors"}


def sample_tally() -> Tally:
    tally = Tally(started=100.0, ended=102.0)
    for i in range(1, 1001):
        tally.record_ok(i / 1e5, steps=10)  # 0.01 .. 10 ms
    tally.record_error("INVALID_ARGUMENT")
    tally.record_error("INVALID_ARGUMENT")
    tally.record_error("RESOURCE_EXHAUSTED")
    return tally


def test_json_has_the_required_keys_and_consistent_numbers(tmp_path: Path) -> None:
    report = build_report(LoadConfig(streams=4, chunk=10, chunks=250), sample_tally())
    path = tmp_path / "r.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert data.keys() >= REQUIRED_KEYS
    assert data["errors"] == {"INVALID_ARGUMENT": 2, "RESOURCE_EXHAUSTED": 1}
    assert data["throughput_chunks_per_s"] == pytest.approx(500.0)
    assert data["throughput_steps_per_s"] == pytest.approx(5000.0)
    assert data["p50_ms"] == pytest.approx(5.0, rel=1e-2)
    assert data["p99_ms"] == pytest.approx(9.9, rel=1e-2)
    assert data["p50_ms"] <= data["p90_ms"] <= data["p99_ms"] <= data["p999_ms"] <= data["max_ms"]
    assert data["mode"] == "closed"


def test_table_shows_throughput_percentiles_and_errors() -> None:
    table = build_report(LoadConfig(rate=100.0), sample_tally()).table()
    assert "500.0 chunks/s" in table
    assert "p99" in table
    assert "INVALID_ARGUMENT=2" in table
    assert "open loop" in table


def test_split_divides_streams_and_rate_over_processes() -> None:
    parts = LoadConfig(streams=10, processes=3, rate=100.0).split()
    assert [p.streams for p in parts] == [4, 3, 3]
    assert sum(p.rate or 0.0 for p in parts) == pytest.approx(100.0)
    assert len({p.seed for p in parts}) == 3
    assert len(LoadConfig(streams=2, processes=8).split()) == 2


def test_cli_flags() -> None:
    config, json_path = parse_args(["--streams", "8", "--duration", "2.5", "--rate", "40", "--json", "x.json"])
    assert (config.streams, config.duration_s, config.rate, config.chunks, json_path) == (8, 2.5, 40.0, None, "x.json")
    assert config.target == "127.0.0.1:8001"
    default, _ = parse_args([])
    assert default.chunks == 100 and default.mode == "closed"
    with pytest.raises(SystemExit):
        parse_args(["--streams", "0"])
