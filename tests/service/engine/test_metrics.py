"""Metrics: per-server Prometheus registries and the per-model counters behind Triton's ModelStatistics."""

import asyncio

import pytest
from prometheus_client import generate_latest

from service.engine.metrics import Metrics
from service.engine.registry import Registry
from tests.service.helpers import STREAMABLE, sequence


async def test_engine_records_batches_queue_and_latency(registry: Registry, metrics: Metrics) -> None:
    name = STREAMABLE[0]
    model = registry.get(name)
    sessions = [model.open_session() for _ in range(4)]
    x = sequence(model.manifest, 4, 3)
    for _ in range(2):
        await asyncio.gather(*(s.step(x[i]) for i, s in enumerate(sessions)))
    metrics.count_request(name, "OK")
    labels = {"model": name}
    sample = metrics.registry.get_sample_value
    assert sample("seqserve_chunk_latency_seconds_count", labels) == 8
    assert sample("seqserve_queue_wait_seconds_count", labels) == 8
    assert sample("seqserve_batch_size_sum", labels) == 8
    assert sample("seqserve_model_run_seconds_count", labels) == sample("seqserve_batch_size_count", labels)
    assert sample("seqserve_active_sessions", labels) == 4
    assert sample("seqserve_requests_total", {"model": name, "code": "OK"}) == 1
    stats = model.stats()
    assert (stats.inference_count, stats.success_count, stats.fail_count, stats.queue_count) == (8, 8, 0, 8)
    assert stats.execution_count == sum(b.count for b in stats.batches)
    assert sum(b.batch_size * b.count for b in stats.batches) == 8
    assert stats.compute_infer_ns > 0 and stats.last_inference_ms > 0
    assert b"seqserve_batch_size_bucket" in generate_latest(metrics.registry)
    await model.infer(x)  # one system: the scrape is built from the same counters as `stats()`
    stats = model.stats()
    assert sample("seqserve_batch_size_count", labels) == stats.execution_count
    assert sample("seqserve_batch_size_sum", labels) == stats.inference_count == 12
    assert sample("seqserve_queue_wait_seconds_count", labels) == stats.queue_count
    assert sample("seqserve_queue_wait_seconds_sum", labels) == pytest.approx(stats.queue_ns / 1e9)
    assert sample("seqserve_model_run_seconds_sum", labels) == pytest.approx(stats.compute_infer_ns / 1e9)
    assert sample("seqserve_chunk_latency_seconds_count", labels) == stats.success_count - 1  # the infer: no chunk


def test_each_server_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.count_request("m", "OK")
    assert first.registry.get_sample_value("seqserve_requests_total", {"model": "m", "code": "OK"}) == 1
    assert second.registry.get_sample_value("seqserve_requests_total", {"model": "m", "code": "OK"}) is None


def test_histogram_buckets_are_cumulative_and_versions_of_a_name_add_up() -> None:
    metrics = Metrics()
    v1, v2 = metrics.for_model("m"), metrics.for_model("m")
    v1.record_batch([1_000_000], 0, 1_000_000, 0)  # 1 ms: on the 0.001 bound, which counts it (le)
    v2.record_batch([3_000_000, 0], 0, 20_000_000, 0)
    v1.active_sessions, v2.active_sessions, v2.evictions = 2, 1, 4
    sample = metrics.registry.get_sample_value
    buckets = {le: sample("seqserve_queue_wait_seconds_bucket", {"model": "m", "le": le})
               for le in ("0.0005", "0.001", "0.005", "+Inf")}
    assert buckets == {"0.0005": 1, "0.001": 2, "0.005": 3, "+Inf": 3}
    assert sample("seqserve_batch_size_bucket", {"model": "m", "le": "2.0"}) == 2
    assert sample("seqserve_model_run_seconds_sum", {"model": "m"}) == pytest.approx(0.021)
    assert sample("seqserve_active_sessions", {"model": "m"}) == 3
    assert sample("seqserve_evictions_total", {"model": "m"}) == 4
    assert (v1.snapshot().inference_count, v2.snapshot().inference_count) == (1, 2)  # ModelStatistics: per version
