"""The benchmark matrix: every model x stream count against the batched server, the unbatched server, the echo
server (transport ceiling), plus the compute ceiling at the batch sizes the batched server formed.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import procs, scrape
from bench.compute import ModelTimer, ceiling_chunks_per_s
from modelrepo import Manifest, ModelVersionDir, latest_versions
from service.loadtest import LoadConfig, Report, run_load


@dataclass(frozen=True)
class Plan:
    models_root: Path
    models: list[str]
    streams: tuple[int, ...] = (1, 8, 64, 256)
    chunk: int = 10
    duration_s: float = 4.0
    warmup_s: float = 1.0
    processes: int = 1
    intra_op_threads: int = 1


@dataclass
class Row:
    model: str
    streams: int
    chunk: int
    server: dict[str, object] = field(default_factory=dict)
    unbatched: dict[str, object] = field(default_factory=dict)
    echo: dict[str, object] = field(default_factory=dict)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    mean_batch: float = 0.0
    server_model_run_ms: float = 0.0
    server_queue_wait_ms: float = 0.0
    compute_chunks_per_s: float = 0.0
    batched_run_ms: float = 0.0  # one in-process model run at the mean batch size the server formed

    def ratios(self) -> dict[str, float]:
        served = float(self.server["throughput_chunks_per_s"])  # type: ignore[arg-type]
        echo = float(self.echo["throughput_chunks_per_s"])  # type: ignore[arg-type]
        unbatched = float(self.unbatched["throughput_chunks_per_s"])  # type: ignore[arg-type]
        return {
            "server_over_compute": served / self.compute_chunks_per_s if self.compute_chunks_per_s else 0.0,
            "server_over_transport": served / echo if echo else 0.0,
            "batching_speedup": served / unbatched if unbatched else 0.0,
        }

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ratios": self.ratios()}


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _load(plan: Plan, target: str, model: str, streams: int, features: int) -> Report:
    config = LoadConfig(target=target, model=model, streams=streams, chunk=plan.chunk, duration_s=plan.duration_s,
                        warmup_s=plan.warmup_s, processes=plan.processes, features=features, progress=False)
    report = run_load(config)
    _log(f"{target} {model} x{streams}: {report.throughput_chunks_per_s:.0f} chunks/s, p99 {report.p99_ms:.2f} ms, "
         f"errors {report.errors or 'none'}")
    return report


def _version(plan: Plan, model: str) -> ModelVersionDir:
    return latest_versions(plan.models_root)[model]


def _manifest(plan: Plan, model: str) -> Manifest:
    return Manifest.load(_version(plan, model).manifest_path)


def run_batched(plan: Plan, rows: dict[tuple[str, int], Row]) -> None:
    """The real server with default batching; records its batch sizes and the compute ceiling at them."""
    with procs.real_server(plan.models_root, ["--intra-op-threads", str(plan.intra_op_threads)]) as server:
        assert server.metrics_url is not None
        for model in plan.models:
            manifest = _manifest(plan, model)
            timer = ModelTimer(_version(plan, model).path, plan.chunk, plan.intra_op_threads)
            for streams in plan.streams:
                before = scrape.scrape(server.metrics_url, model)
                report = _load(plan, server.target, model, streams, manifest.input.features)
                view = scrape.server_view(before, scrape.scrape(server.metrics_url, model), streams)
                row = rows.setdefault((model, streams), Row(model, streams, plan.chunk))
                row.server = report.to_json()
                row.batch_sizes = view.batch_sizes
                row.mean_batch = view.mean_batch
                row.server_model_run_ms = view.mean_model_run_ms
                row.server_queue_wait_ms = view.mean_queue_wait_ms
                row.compute_chunks_per_s = ceiling_chunks_per_s(timer, view.batch_sizes)
                row.batched_run_ms = timer.seconds_per_run(max(1, round(view.mean_batch))) * 1e3


def run_unbatched(plan: Plan, rows: dict[tuple[str, int], Row]) -> None:
    extra = ["--intra-op-threads", str(plan.intra_op_threads), "--max-batch-size", "1"]
    with procs.real_server(plan.models_root, extra) as server:
        for model in plan.models:
            features = _manifest(plan, model).input.features
            for streams in plan.streams:
                report = _load(plan, server.target, model, streams, features)
                rows.setdefault((model, streams), Row(model, streams, plan.chunk)).unbatched = report.to_json()


def run_echo(plan: Plan, rows: dict[tuple[str, int], Row]) -> None:
    """The echo server once per distinct message shape (features, outputs); models sharing a shape share it."""
    by_shape: dict[tuple[object, ...], list[str]] = {}
    for model in plan.models:
        m = _manifest(plan, model)
        by_shape.setdefault((m.input.features, tuple((o.name, o.size) for o in m.outputs)), []).append(model)
    for (features, _), models in by_shape.items():
        with procs.echo_server(plan.models_root, models[0], plan.chunk) as echo:
            for streams in plan.streams:
                report = _load(plan, echo.target, models[0], streams, int(features))  # type: ignore[call-overload]
                for model in models:
                    rows.setdefault((model, streams), Row(model, streams, plan.chunk)).echo = report.to_json()


def run_matrix(plan: Plan) -> list[Row]:
    rows: dict[tuple[str, int], Row] = {}
    run_batched(plan, rows)
    run_unbatched(plan, rows)
    run_echo(plan, rows)
    return [rows[(model, streams)] for model in plan.models for streams in plan.streams]
