"""One metrics system: plain per-model counters, read by Triton's ModelStatistics and by Prometheus at scrape time.

The engine and the fronts update plain ints, floats and bucket lists on the event loop thread (no locks, no
Prometheus objects on the hot path). `Metrics.registry` is a per-server `CollectorRegistry` (not the global one,
so several servers can live in one process) holding one custom collector that turns those counters into
Prometheus families when `/metrics` is scraped. Served by `service/metrics_http.py`.

Thread safety: a scrape runs on the HTTP server's thread while the loop keeps counting. It only reads: ints and
floats are read whole, and the dicts and lists it walks are copied first (`dict.copy()` and `list(...)` run
without releasing the GIL). One scrape may therefore see a histogram's count one observation ahead of its sum;
no value is ever torn or lost.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Buckets:
    """A plain histogram: counts per upper bound (the last one is +Inf) and the sum of the observations."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le semantics: value == bound counts in it
        self.total += value


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


@dataclass(eq=False)
class ModelMetrics:
    """Every counter of one model version, updated on the event loop thread."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    active_sessions: int = 0
    evictions: int = 0
    chunk_latency: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    queue_wait: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    batch_size: Buckets = field(default_factory=lambda: Buckets(BATCH_BUCKETS))
    model_run: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS))
    batches: dict[int, _BatchTotals] = field(default_factory=dict)

    def record_request(self, ok: bool, duration_ns: int, chunk: bool = False) -> None:
        """One engine request (a session step when `chunk`, else a whole-sequence infer) and its duration."""
        if ok:
            self.success_count += 1
            self.success_ns += duration_ns
            if chunk:
                self.chunk_latency.observe(duration_ns / 1e9)
        else:
            self.fail_count += 1
            self.fail_ns += duration_ns

    def record_batch(self, waits_ns: Iterable[int], input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One model run: each step's queue wait, and the run's input, compute and output durations."""
        size = 0
        for wait in waits_ns:
            size += 1
            self.queue_ns += wait
            self.queue_wait.observe(wait / 1e9)
        self.queue_count += size
        self.inference_count += size
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.batch_size.observe(size)
        self.model_run.observe(infer_ns / 1e9)
        totals = self.batches.get(size)
        if totals is None:
            totals = self.batches[size] = _BatchTotals()
        totals.count += 1
        totals.input_ns += input_ns
        totals.infer_ns += infer_ns
        totals.output_ns += output_ns

    def snapshot(self) -> ModelStats:
        totals = sorted(self.batches.copy().items())
        batches = tuple(BatchStats(size, t.count, t.input_ns, t.infer_ns, t.output_ns) for size, t in totals)
        return ModelStats(
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            last_inference_ms=self.last_inference_ms,
            success_count=self.success_count,
            success_ns=self.success_ns,
            fail_count=self.fail_count,
            fail_ns=self.fail_ns,
            queue_count=self.queue_count,
            queue_ns=self.queue_ns,
            compute_input_ns=sum(b.compute_input_ns for b in batches),
            compute_infer_ns=sum(b.compute_infer_ns for b in batches),
            compute_output_ns=sum(b.compute_output_ns for b in batches),
            batches=batches,
        )


class Metrics:
    """The counters of one server: request codes per model (counted by the fronts) and each model's `ModelMetrics`."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.models: dict[str, list[ModelMetrics]] = {}  # by model name: one per served version
        self.store: StoreCounters | None = None  # the shared session store's counters, when there is one
        self.registry = CollectorRegistry()
        self.registry.register(_Exporter(self))

    def count_request(self, model: str, code: str) -> None:
        """Called by the fronts once per request (chunk, infer, open) with its status code name, e.g. "OK"."""
        key = (model, code)
        self.requests[key] = self.requests.get(key, 0) + 1

    def for_model(self, model: str) -> ModelMetrics:
        """New counters for one version of `model`; Prometheus shows the sum over the versions of a name."""
        counters = ModelMetrics()
        self.models.setdefault(model, []).append(counters)
        return counters


class StoreCounters(Protocol):
    round_trips: int  # commits, loads and deletes sent
    failures: int  # of them, those that could not reach the store (UNAVAILABLE)
    conflicts: int  # rows refused by the compare-and-set (another replica advanced the session)
    resolved: int  # commits whose answer was lost, read back
    unknown: Counter[str]  # rows whose outcome stayed unknown, by key kind


_HISTOGRAMS = (
    ("seqserve_chunk_latency_seconds", "Time from a chunk's arrival to its outputs", "chunk_latency"),
    ("seqserve_queue_wait_seconds", "Time a step waited for its batch", "queue_wait"),
    ("seqserve_batch_size", "Steps per model run", "batch_size"),
    ("seqserve_model_run_seconds", "Duration of one model run", "model_run"),
)


class _Exporter(Collector):
    """Builds the Prometheus families from the plain counters at scrape time (on the scraping thread)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "seqserve_requests", "Requests by model and status code", labels=("model", "code")
        )
        for (model, code), count in sorted(m.requests.copy().items()):
            requests.add_metric([model, code], count)
        yield requests
        models = sorted(m.models.copy().items())
        active = GaugeMetricFamily("seqserve_active_sessions", "Open sessions", labels=["model"])
        evictions = CounterMetricFamily("seqserve_evictions", "Sessions evicted for idleness", labels=["model"])
        for name, versions in models:
            active.add_metric([name], sum(v.active_sessions for v in versions))
            evictions.add_metric([name], sum(v.evictions for v in versions))
        yield active
        yield evictions
        if (store := m.store) is not None:
            for name, doc, value in (
                ("round_trips", "Round trips to the session store (one per batch on the write-through path)",
                 store.round_trips),
                ("failures", "Session store calls that could not reach it", store.failures),
                ("conflicts", "Steps refused by the store's compare-and-set (another replica won)", store.conflicts),
                ("resolved", "Commits whose answer was lost and whose outcome was read back", store.resolved),
                ("unknown_outcomes", "Steps answered ABORTED 'outcome unknown' (the store stayed silent)",
                 sum(store.unknown.values())),
            ):
                counter = CounterMetricFamily(f"seqserve_session_store_{name}", doc)
                counter.add_metric([], value)
                yield counter
        for metric, doc, attr in _HISTOGRAMS:
            family = HistogramMetricFamily(metric, doc, labels=["model"])
            for name, versions in models:
                parts: list[Buckets] = [getattr(v, attr) for v in versions]
                counts = [sum(c) for c in zip(*(list(p.counts) for p in parts), strict=True)]
                bounds = [*(floatToGoString(b) for b in parts[0].bounds), "+Inf"]
                cumulative, running = [], 0
                for bound, count in zip(bounds, counts, strict=True):
                    running += count
                    cumulative.append((bound, running))
                family.add_metric([name], cumulative, sum_value=sum(p.total for p in parts))
            yield family
