"""Prometheus metrics on a per-server registry, and the plain per-model counters behind Triton's ModelStatistics.

Each `Metrics` owns its own `CollectorRegistry` (not the global one), so several servers can live in one
process (tests). Serve it with `prometheus_client.start_http_server(port, registry=metrics.registry)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._request_counters: dict[tuple[str, str], Counter] = {}
        self.requests = Counter("seqserve_requests", "Requests by model and status code", ["model", "code"], registry=r)
        self.chunk_latency = Histogram(
            "seqserve_chunk_latency_seconds", "Time from a chunk's arrival to its outputs", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_wait = Histogram(
            "seqserve_queue_wait_seconds", "Time a step waited for its batch", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "seqserve_batch_size", "Steps per model run", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.model_run = Histogram(
            "seqserve_model_run_seconds", "Duration of one model run", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.active_sessions = Gauge("seqserve_active_sessions", "Open sessions", ["model"], registry=r)
        self.evictions = Counter("seqserve_evictions", "Sessions evicted for idleness", ["model"], registry=r)

    def count_request(self, model: str, code: str) -> None:
        """Called by the fronts once per request (chunk, infer, open) with its status code name, e.g. "OK"."""
        child = self._request_counters.get((model, code))
        if child is None:  # labels() costs microseconds on every chunk: look each pair up once
            child = self._request_counters[(model, code)] = self.requests.labels(model=model, code=code)
        child.inc()

    def for_model(self, model: str) -> ModelMetrics:
        """The label-bound children of one model plus its plain counters (label lookups done once)."""
        return ModelMetrics(
            chunk_latency=self.chunk_latency.labels(model=model),
            queue_wait=self.queue_wait.labels(model=model),
            batch_size=self.batch_size.labels(model=model),
            model_run=self.model_run.labels(model=model),
            active_sessions=self.active_sessions.labels(model=model),
            evictions=self.evictions.labels(model=model),
            counters=ModelCounters(),
        )


@dataclass(frozen=True)
class ModelMetrics:
    chunk_latency: Histogram
    queue_wait: Histogram
    batch_size: Histogram
    model_run: Histogram
    active_sessions: Gauge
    evictions: Counter
    counters: ModelCounters


@dataclass(frozen=True)
class BatchStats:
    """Model runs of one batch size and their cumulative durations in ns."""

    batch_size: int
    count: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int


@dataclass(frozen=True)
class ModelStats:
    """A snapshot of one model's counters (Triton ModelStatistics semantics; durations cumulative, in ns)."""

    inference_count: int  # steps run (a batch of 8 counts 8)
    execution_count: int  # model runs
    last_inference_ms: int  # epoch milliseconds of the last model run, 0 if none
    success_count: int
    success_ns: int
    fail_count: int
    fail_ns: int
    queue_count: int
    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    batches: tuple[BatchStats, ...]


@dataclass
class _BatchTotals:
    count: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


@dataclass
class ModelCounters:
    """Mutable counters, updated on the event loop thread; `snapshot()` gives the frozen view."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    _batches: dict[int, _BatchTotals] = field(default_factory=dict)

    def record_request(self, ok: bool, duration_ns: int) -> None:
        if ok:
            self.success_count += 1
            self.success_ns += duration_ns
        else:
            self.fail_count += 1
            self.fail_ns += duration_ns

    def record_queue(self, steps: int, wait_ns: int) -> None:
        self.queue_count += steps
        self.queue_ns += wait_ns

    def record_batch(self, size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        self.inference_count += size
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        totals = self._batches.setdefault(size, _BatchTotals())
        totals.count += 1
        totals.input_ns += input_ns
        totals.infer_ns += infer_ns
        totals.output_ns += output_ns

    def snapshot(self) -> ModelStats:
        batches = tuple(
            BatchStats(size, t.count, t.input_ns, t.infer_ns, t.output_ns) for size, t in sorted(self._batches.items())
        )
        counts = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return ModelStats(
            **counts,
            compute_input_ns=sum(b.compute_input_ns for b in batches),
            compute_infer_ns=sum(b.compute_infer_ns for b in batches),
            compute_output_ns=sum(b.compute_output_ns for b in batches),
            batches=batches,
        )
