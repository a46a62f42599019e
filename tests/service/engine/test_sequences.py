"""The engine-level sequence table (`service/engine/sequences.py`) on the real shipped models and a real registry."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.engine.errors import FailedPrecondition, SequenceNotFound
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.sequences import SequenceFlags, Sequences, StepResult
from tests.service.helpers import SHIPPED, cpu_settings

TOLERANCE = 1e-4
MODEL = "vowels_gru"


def outputs(result: StepResult) -> dict[str, np.ndarray]:
    return result.outputs


def chunks_of(registry: Registry, steps: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    features = registry.get(MODEL).manifest.input.features
    x = np.random.default_rng(seed).standard_normal((steps, features)).astype(np.float32)
    return x, [x[i:i + 4] for i in range(0, steps, 4)]


async def whole(registry: Registry, x: np.ndarray) -> np.ndarray:
    out, _ = await registry.get(MODEL).infer(x[None])
    return out["logits"][0]


async def test_submitted_steps_run_in_order_and_equal_the_whole_run(registry: Registry) -> None:
    """Every chunk submitted at once, without awaiting in between: the table keeps the order."""
    model, table = registry.get(MODEL), Sequences()
    x, chunks = chunks_of(registry, 22, seed=0)
    last = len(chunks) - 1
    tasks = [table.submit(model, SequenceFlags("s", start=k == 0, end=k == last), c, outputs)
             for k, c in enumerate(chunks)]
    results = await asyncio.gather(*tasks)
    got = np.concatenate([r["logits"] for r in results])
    np.testing.assert_allclose(got, await whole(registry, x), atol=TOLERANCE, rtol=0)
    assert len(table) == 0 and model.active_sessions == 0


async def test_int_and_str_ids_are_distinct_and_start_restarts(registry: Registry) -> None:
    model, table = registry.get(MODEL), Sequences()
    _, chunks = chunks_of(registry, 8, seed=1)
    await table.submit(model, SequenceFlags(5, start=True), chunks[0], outputs)
    await table.submit(model, SequenceFlags("5", start=True), chunks[1], outputs)
    assert len(table) == 2
    again = await table.submit(model, SequenceFlags(5, start=True), chunks[0], outputs)  # restart: initial state
    np.testing.assert_allclose(again["logits"], (await whole(registry, chunks[0]))[:4], atol=TOLERANCE, rtol=0)
    assert model.active_sessions == 2
    table.close()
    assert model.active_sessions == 0


async def test_unknown_id_without_start_names_start(registry: Registry) -> None:
    model, table = registry.get(MODEL), Sequences()
    _, chunks = chunks_of(registry, 4, seed=2)
    with pytest.raises(SequenceNotFound, match="START"):
        await table.submit(model, SequenceFlags(9), chunks[0], outputs)


async def test_end_frees_even_a_rejected_step_and_state_is_requested(registry: Registry) -> None:
    model, table = registry.get(MODEL), Sequences()
    _, chunks = chunks_of(registry, 4, seed=3)
    result = await table.submit(model, SequenceFlags(1, start=True), chunks[0], lambda r: r, want_state=True)
    assert result.state is not None and set(result.state) == {p.input for p in model.manifest.state}
    with pytest.raises(Exception, match="features"):
        await table.submit(model, SequenceFlags(1, end=True), chunks[0][:, :3], outputs)
    assert len(table) == 0 and model.active_sessions == 0


async def test_evicted_sequences_vanish(registry: Registry) -> None:
    model, table = registry.get(MODEL), Sequences()
    _, chunks = chunks_of(registry, 4, seed=4)
    await table.submit(model, SequenceFlags(1, start=True), chunks[0], outputs)
    assert model.evict_idle(float("inf")) == 1
    with pytest.raises(SequenceNotFound):
        await table.submit(model, SequenceFlags(1), chunks[0], outputs)
    assert len(table) == 0


async def test_a_cancelled_step_does_not_stall_its_sequence(metrics: Metrics) -> None:
    registry = await Registry.load(cpu_settings(SHIPPED, inline_run_max_us=0), metrics)  # no run inline: in flight
    try:
        await _cancelled_step_does_not_stall(registry)
    finally:
        await registry.close()


async def _cancelled_step_does_not_stall(registry: Registry) -> None:
    model, table = registry.get(MODEL), Sequences()
    _, chunks = chunks_of(registry, 12, seed=5)
    first = table.submit(model, SequenceFlags(1, start=True), chunks[0], outputs)
    cancelled = table.submit(model, SequenceFlags(1), chunks[1], outputs)
    cancelled.cancel()
    after = table.submit(model, SequenceFlags(1, end=True), chunks[2], outputs)
    await first
    assert (await after)["logits"].shape == (4, model.manifest.outputs[0].size)
    assert cancelled.cancelled()


async def test_non_streamable_models_take_no_sequence(registry: Registry) -> None:
    whole_only = next(s for s in registry.statuses() if s.manifest is not None and not s.manifest.streamable)
    model = registry.get(whole_only.name)
    x = np.zeros((2, model.manifest.input.features), np.float32)
    with pytest.raises(FailedPrecondition, match="not streamable"):
        await Sequences().submit(model, SequenceFlags(1, start=True), x, outputs)
