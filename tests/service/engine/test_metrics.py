"""Metrics: per-server Prometheus registries and the per-model counters behind Triton's ModelStatistics."""

import asyncio

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


def test_each_server_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.count_request("m", "OK")
    assert first.registry.get_sample_value("seqserve_requests_total", {"model": "m", "code": "OK"}) == 1
    assert second.registry.get_sample_value("seqserve_requests_total", {"model": "m", "code": "OK"}) is None
