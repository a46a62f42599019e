"""The repeats of a cell folded into one row (medians), and the physical limit of every cell.

physical limit (chunks/s) = cores / (client CPU per chunk + echo server CPU per chunk + model CPU per chunk)

The client's and the echo server's CPU per chunk are measured against the echo server in the same cell (same
model, streams and message sizes): what any server pays for the transport on both ends. The model's CPU per chunk
is its in-process run at the best batch the cell allows (`min(streams, 64)` rows), one intra-op thread. A server
that spent nothing beyond the transport and the model would reach the limit; its share of it says how close a
row is.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, replace

from bench.compute import ModelTimer
from bench.plan import ECHO, Run

MAX_BATCH = 64


@dataclass(frozen=True)
class Limit:
    model: str
    streams: int
    client_us: float  # load generator CPU per chunk, against the echo server
    echo_us: float  # echo server CPU per chunk
    batch: int
    compute_us: float  # the model's own CPU per chunk at `batch`
    cores: int
    chunks_per_s: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def aggregate(runs: list[Run]) -> list[Run]:
    """One row per (path, model, streams), in first-run order: medians of the repeats, every chunks/s kept."""
    groups: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.path, r.model, r.streams), []).append(r)
    rows = []
    for group in groups.values():
        rate = _median([r.chunks_per_s for r in group])
        middle = min(group, key=lambda r: abs(r.chunks_per_s - rate))
        report = {**middle.report, "throughput_chunks_per_s": rate,
                  **{k: _median([r.num(k) for r in group]) for k in ("p50_ms", "p90_ms", "p99_ms")}}
        sizes: dict[int, int] = {}
        for r in group:
            for size, n in r.batch_sizes.items():
                sizes[size] = sizes.get(size, 0) + n
        med = {k: _median([getattr(r, k) for r in group]) for k in (
            "mean_batch", "server_model_run_ms", "server_queue_wait_ms", "compute_chunks_per_s", "batched_run_ms",
            "server_cpu_us", "client_cpu_us", "model_cpu_us")}
        row = replace(middle, report=report, batch_sizes=sizes, samples=[r.chunks_per_s for r in group])
        for k, v in med.items():
            setattr(row, k, v)
        rows.append(row)
    return rows


def limits(rows: list[Run], timers: dict[str, ModelTimer], cores: int | None = None) -> list[Limit]:
    """The physical limit of every (model, streams) that has an echo row; sets it on that cell's rows."""
    cores = cores or os.cpu_count() or 1
    out = []
    for echo in (r for r in rows if r.path == ECHO and r.model in timers):
        batch = min(echo.streams, MAX_BATCH)
        compute = timers[echo.model].cpu_us_per_chunk({batch: 1})
        per_chunk = echo.client_cpu_us + echo.server_cpu_us + compute
        limit = Limit(echo.model, echo.streams, echo.client_cpu_us, echo.server_cpu_us, batch, compute, cores,
                      cores * 1e6 / per_chunk if per_chunk else 0.0)
        out.append(limit)
        for r in rows:
            if (r.model, r.streams) == (echo.model, echo.streams):
                r.limit_chunks_per_s = limit.chunks_per_s
    return out
