"""Sessions through the real shipped models: chunked == whole sequence, rejected chunks leave the state
unchanged, reset, close, idle eviction, session limit, draining (and waiting for the last session); and
whole-sequence `infer`."""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelrepo import latest_versions
from service.engine.errors import FailedPrecondition, InvalidInput, ResourceExhausted, Unavailable
from service.engine.metrics import Metrics
from service.engine.model import ServedModel
from service.engine.registry import Registry
from service.engine.runtime import Runtime
from service.engine.state.device import DeviceStore
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, WHOLE_ONLY, cpu_settings, reference, sequence

OUT_OF = {name: m.outputs[0].name for name, m in MANIFESTS.items()}


def chunk_bounds(total: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts = np.sort(rng.choice(np.arange(1, total), size=5, replace=False))
    edges = [0, *cuts.tolist(), total]
    return list(itertools.pairwise(edges))


@pytest.mark.parametrize("name", STREAMABLE)
async def test_concurrent_chunked_streams_equal_whole_sequence_runs(registry: Registry, name: str) -> None:
    model = registry.get(name)
    streams, steps = 8, 30
    x = sequence(model.manifest, streams, steps, seed=1)
    expected = reference(name, x)
    rng = np.random.default_rng(2)

    async def stream(i: int) -> dict[str, np.ndarray]:
        session = model.open_session()
        try:
            parts = [await session.step(x[i, a:b]) for a, b in chunk_bounds(steps, rng)]
            final = session.state()
            return {o.name: np.concatenate([p[o.name] for p in parts]) for o in model.manifest.outputs} | final
        finally:
            session.close()

    results = await asyncio.gather(*(stream(i) for i in range(streams)))
    for i, got in enumerate(results):
        for o in model.manifest.outputs:
            np.testing.assert_allclose(got[o.name], expected[o.name][i], atol=1e-4)
        for p in model.manifest.state:
            np.testing.assert_allclose(got[p.input], expected[p.output][i], atol=1e-4)
    assert model.active_sessions == 0
    assert model.stats().success_count == streams * 6  # five cuts: six chunks per stream


def bad_chunks(features: int) -> dict[str, np.ndarray]:
    good = np.zeros((3, features), np.float32)
    return {
        "dtype": good.astype(np.float64),
        "rank": good[None],
        "features": np.zeros((3, features + 1), np.float32),
        "empty": np.zeros((0, features), np.float32),
        "nan": np.where(np.arange(3 * features).reshape(3, features) == 1, np.nan, good).astype(np.float32),
        "inf": np.full((3, features), np.inf, np.float32),
    }


async def test_rejected_chunks_leave_the_state_unchanged(registry: Registry) -> None:
    name = STREAMABLE[0]
    model = registry.get(name)
    x = sequence(model.manifest, 1, 10)
    session = model.open_session()
    first = await session.step(x[0, :4])
    before = session.state()
    for kind, chunk in bad_chunks(model.manifest.input.features).items():
        with pytest.raises(InvalidInput):
            await session.step(chunk)
        for key, value in session.state().items():
            np.testing.assert_array_equal(value, before[key], err_msg=kind)
    rest = await session.step(x[0, 4:])
    out = model.manifest.outputs[0].name
    got = np.concatenate([first[out], rest[out]])
    np.testing.assert_allclose(got, reference(name, x)[out][0], atol=1e-4)  # as if it never saw the bad chunks
    assert model.stats().fail_count == 6
    session.close()


async def test_nonfinite_allowed_when_configured() -> None:
    registry = await Registry.load(cpu_settings(SHIPPED, reject_nonfinite=False), Metrics())
    try:
        model = registry.get(STREAMABLE[0])
        session = model.open_session()
        chunk = np.full((2, model.manifest.input.features), np.nan, np.float32)
        assert model.validate_chunk(chunk) is not None
        await session.step(chunk)
    finally:
        await registry.close()


async def test_reset_returns_to_the_initial_state(registry: Registry) -> None:
    model = registry.get(STREAMABLE[0])
    x = sequence(model.manifest, 1, 6)
    session = model.open_session()
    first = await session.step(x[0])
    session.reset()
    assert all(np.all(v == 0.0) for v in session.state().values())
    again = await session.step(x[0])
    for name, value in first.items():
        np.testing.assert_array_equal(again[name], value)


async def test_close_frees_the_slot_and_later_steps_fail(registry: Registry, metrics: Metrics) -> None:
    name = STREAMABLE[0]
    model = registry.get(name)
    session = model.open_session()
    assert metrics.registry.get_sample_value("seqserve_active_sessions", {"model": name}) == 1
    session.close()
    session.close()  # idempotent
    assert session.closed and model.active_sessions == 0
    assert metrics.registry.get_sample_value("seqserve_active_sessions", {"model": name}) == 0
    with pytest.raises(FailedPrecondition, match="closed"):
        await session.step(sequence(model.manifest, 1, 2)[0])


async def test_idle_sessions_are_evicted(registry: Registry, metrics: Metrics) -> None:
    name = STREAMABLE[0]
    model = registry.get(name)
    idle, active = model.open_session(), model.open_session()
    later = time.monotonic() + model.session_idle_timeout + 1
    await active.step(sequence(model.manifest, 1, 2)[0])
    assert model.evict_idle(now=time.monotonic()) == 0
    assert model.evict_idle(now=later) == 2
    assert idle.expired and model.active_sessions == 0
    assert metrics.registry.get_sample_value("seqserve_evictions_total", {"model": name}) == 2
    with pytest.raises(FailedPrecondition, match="session expired"):
        await idle.step(sequence(model.manifest, 1, 2)[0])


async def test_session_limit_and_recovery() -> None:
    registry = await Registry.load(cpu_settings(SHIPPED, max_sessions=2), Metrics())
    try:
        model = registry.get(STREAMABLE[0])
        first, _ = model.open_session(), model.open_session()
        with pytest.raises(ResourceExhausted, match="session limit"):
            model.open_session()
        first.close()
        third = model.open_session()
        await third.step(sequence(model.manifest, 1, 2)[0])
    finally:
        await registry.close()


async def test_not_streamable_and_draining(registry: Registry) -> None:
    for name in WHOLE_ONLY:
        with pytest.raises(FailedPrecondition, match="not streamable"):
            registry.get(name).open_session()
    model = registry.get(STREAMABLE[0])
    session = model.open_session()
    registry.begin_drain()
    with pytest.raises(Unavailable, match="shutting down"):
        model.open_session()
    await session.step(sequence(model.manifest, 1, 2)[0])  # open sessions continue
    with pytest.raises(Unavailable, match="shutting down"):
        await model.infer(sequence(model.manifest, 1, 2))
    assert not await registry.sessions_ended(0.0)
    waiting = asyncio.create_task(registry.sessions_ended(60.0))
    await asyncio.sleep(0)  # one loop turn: the waiter runs and blocks on the open session
    assert not waiting.done()
    session.close()  # ... and the last session ending wakes it
    assert await waiting
    assert await registry.sessions_ended(0.0)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
async def test_infer_whole_sequences_and_explicit_state(registry: Registry, name: str) -> None:
    model = registry.get(name)
    x = sequence(model.manifest, 3, 12, seed=5)
    expected = reference(name, x)
    outputs, state = await model.infer(x)
    for o in model.manifest.outputs:
        np.testing.assert_allclose(outputs[o.name], expected[o.name], atol=1e-4)
    if model.manifest.streamable:
        head, mid = await model.infer(x[:, :5])
        tail, final = await model.infer(x[:, 5:], mid)
        for o in model.manifest.outputs:
            np.testing.assert_allclose(np.concatenate([head[o.name], tail[o.name]], 1), expected[o.name], atol=1e-4)
        for p in model.manifest.state:
            np.testing.assert_allclose(final[p.input], expected[p.output], atol=1e-4)
            np.testing.assert_allclose(state[p.input], expected[p.output], atol=1e-4)
    else:
        assert state == {}


async def test_infer_rejects_bad_state(registry: Registry) -> None:
    model = registry.get(STREAMABLE[0])
    x = sequence(model.manifest, 2, 3)
    pair = model.manifest.state[0]
    good = {p.input: np.zeros((2, *p.shape), np.float32) for p in model.manifest.state}
    for bad in (
        {},
        good | {pair.input: np.zeros((3, *pair.shape), np.float32)},
        good | {pair.input: np.zeros((2, *pair.shape), np.float64)},
        good | {pair.input: np.full((2, *pair.shape), np.nan, np.float32)},
    ):
        with pytest.raises(InvalidInput, match="state"):
            await model.infer(x, bad)
    with pytest.raises(InvalidInput, match="rank"):
        await model.infer(x[0])


async def test_close_answers_steps_in_flight_then_frees_everything(registry: Registry, metrics: Metrics) -> None:
    name = STREAMABLE[0]
    model = registry.get(name)
    sessions = [model.open_session() for _ in range(6)]
    x = sequence(model.manifest, 6, 4)
    steps = [asyncio.ensure_future(s.step(x[i])) for i, s in enumerate(sessions)]
    while not all(s.busy or t.done() for s, t in zip(sessions, steps, strict=True)):  # all admitted (yields only)
        await asyncio.sleep(0)
    await registry.close()
    expected = reference(name, x)[model.manifest.outputs[0].name]
    for i, step in enumerate(steps):
        np.testing.assert_allclose(step.result()[model.manifest.outputs[0].name], expected[i], atol=1e-4)
    assert all(s.closed for s in sessions) and model.active_sessions == 0
    assert metrics.registry.get_sample_value("seqserve_active_sessions", {"model": name}) == 0
    with pytest.raises(Unavailable):
        model.open_session()


async def test_steps_of_one_session_submitted_at_once_run_in_call_order(registry: Registry) -> None:
    name = STREAMABLE[0]
    model = registry.get(name)
    x = sequence(model.manifest, 2, 12, seed=3)
    first, second = model.open_session(), model.open_session()
    other = asyncio.ensure_future(second.step(x[1, :5]))  # sets the first batch's length: 5
    bounds = [(0, 2), (2, 7), (7, 12)]  # the 2-step chunk waits for a later batch, and so must the 5-step ones
    steps = [asyncio.ensure_future(first.step(x[0, a:b])) for a, b in bounds]
    parts = await asyncio.gather(*steps)
    await other
    out = model.manifest.outputs[0].name
    got = np.concatenate([p[out] for p in parts])
    np.testing.assert_allclose(got, reference(name, x)[out][0], atol=1e-4)


def device_path_model(name: str, executor: ThreadPoolExecutor) -> ServedModel:
    """A served model on the CUDA code path (IOBinding + the device pool), here with CPU `OrtValue`s."""
    manifest = MANIFESTS[name]
    pairs = {p.input: p.output for p in manifest.state}
    runtime = Runtime(latest_versions(SHIPPED)[name].model_path, "cpu", 1, name, pairs, io_binding=True)
    model = ServedModel(manifest, runtime, cpu_settings(SHIPPED), Metrics().for_model(name), executor)
    model.start()
    return model


async def test_sessions_on_the_device_store_path() -> None:
    """Chunked streams, state reads, reset, a stateless infer among them, close and eviction behave as on the host
    pool."""
    name = STREAMABLE[0]
    manifest = MANIFESTS[name]
    with ThreadPoolExecutor(max_workers=1) as executor:
        model = device_path_model(name, executor)
        assert isinstance(model._pool.store, DeviceStore)
        x = sequence(manifest, 10, 6)  # 10 sessions: the pool grows past its first 8 slots
        expected = reference(name, x)
        sessions = [model.open_session() for _ in range(10)]
        for lo, hi in ((0, 2), (2, 6)):
            outs = await asyncio.gather(
                *(s.step(x[i, lo:hi]) for i, s in enumerate(sessions)), model.infer(x[:2, lo:hi])
            )
        for i, s in enumerate(sessions):
            np.testing.assert_allclose(outs[i][OUT_OF[name]], expected[OUT_OF[name]][i, 2:], atol=1e-5)
            for p in manifest.state:
                np.testing.assert_allclose(s.state()[p.input], expected[p.output][i], atol=1e-5)
        sessions[0].reset()
        assert all(np.all(v == p.initial) for v, p in zip(sessions[0].state().values(), manifest.state, strict=True))
        sessions[1].close()
        with pytest.raises(FailedPrecondition, match="closed"):
            await sessions[1].step(x[1, :2])
        assert model.evict_idle(time.monotonic() + 3600) == 9
        with pytest.raises(FailedPrecondition, match="expired"):
            await sessions[2].step(x[2, :2])
        await model.close()


@pytest.mark.parametrize("name", WHOLE_ONLY)
async def test_stateless_models_on_the_device_store_path(name: str) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        model = device_path_model(name, executor)
        x = sequence(MANIFESTS[name], 3, 5)
        outputs, state = await model.infer(x)
        np.testing.assert_allclose(outputs[OUT_OF[name]], reference(name, x)[OUT_OF[name]], atol=1e-5)
        assert state == {}
        await model.close()
