"""The batcher on a real shipped graph: batched == unbatched (mixed lengths), one step per session per batch,
every future resolved on model error, cancellation and close, and the queue bound."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from modelrepo import latest_versions
from service.engine.batching import Batcher
from service.engine.errors import ModelRunFailed, ResourceExhausted, Unavailable
from service.engine.metrics import Metrics, ModelMetrics
from service.engine.runtime import CPU, Runtime
from service.engine.state.device import device_store
from service.engine.state.pool import HostStore, StatePool
from service.engine.tuning import InlinePolicy
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, reference, sequence

NAME = STREAMABLE[0]
MANIFEST = MANIFESTS[NAME]
OUT = MANIFEST.outputs[0].name


@dataclass
class Owner:
    """What the batcher needs from a session: an id, a pool slot and a generation."""

    id: int
    slot: int
    generation: int = 0


@dataclass
class Parts:
    batcher: Batcher
    pool: StatePool
    metrics: ModelMetrics


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def make(
    executor: ThreadPoolExecutor,
    max_batch_size: int = 64,
    max_queued: int = 256,
    max_queue_delay_us: int = 500,
    device: bool = False,
    inline_run_max_us: int = 0,
) -> Parts:
    """`device`: IOBinding and the device store (gather/scatter graphs, `OrtValue`s), the CUDA code path, on CPU."""
    pairs = {p.input: p.output for p in MANIFEST.state}
    runtime = Runtime(latest_versions(SHIPPED)[NAME].model_path, "cpu", 1, NAME, pairs, io_binding=device)
    pool = StatePool(MANIFEST.state, max_slots=64, initial_capacity=2, store=device_store(CPU) if device else HostStore)
    metrics = Metrics().for_model(NAME)
    batcher = Batcher(
        runtime, MANIFEST.input.name, pool, executor, metrics, max_batch_size, max_queue_delay_us, max_queued,
        InlinePolicy(inline_run_max_us),
    )
    batcher.start()
    return Parts(batcher, pool, metrics)


@pytest.fixture(params=[False, True], ids=["host", "device"])
async def parts(executor: ThreadPoolExecutor, request: pytest.FixtureRequest) -> AsyncIterator[Parts]:
    """Both state paths: numpy pool and plain `run`; device store and IOBinding (what CUDA uses)."""
    made = make(executor, device=request.param)
    yield made
    await made.batcher.close()


def owners(pool: StatePool, n: int) -> list[Owner]:
    return [Owner(i, pool.alloc(now=0.0)) for i in range(n)]


def batch_sizes(metrics: ModelMetrics) -> dict[int, int]:
    return {b.batch_size: b.count for b in metrics.snapshot().batches}


async def test_batched_equals_unbatched_with_mixed_chunk_lengths(parts: Parts) -> None:
    lengths = [3, 5, 3, 1, 5, 3, 2, 1]
    sessions = owners(parts.pool, len(lengths))
    seqs = [sequence(MANIFEST, 1, 2 * t, seed=i)[0] for i, t in enumerate(lengths)]
    results = []
    for half in (0, 1):  # two steps per session: the second starts from the scattered state
        rows = [(s[half * t : (half + 1) * t], o, None) for s, t, o in zip(seqs, lengths, sessions, strict=True)]
        results.append(await asyncio.gather(*parts.batcher.enqueue(rows)))
    for i, seq in enumerate(seqs):
        got = np.concatenate([results[0][i][0][OUT], results[1][i][0][OUT]])
        np.testing.assert_allclose(got, reference(NAME, seq[None])[OUT][0], atol=1e-5)
    # one batch per chunk length per round: lengths {3: 3, 5: 2, 1: 2, 2: 1}
    assert batch_sizes(parts.metrics) == {3: 2, 2: 4, 1: 2}


async def test_one_step_per_session_per_batch(parts: Parts) -> None:
    a, b = owners(parts.pool, 2)
    x = sequence(MANIFEST, 3, 4)
    futures = parts.batcher.enqueue([(x[0], a, None), (x[1], a, None), (x[2], b, None)])
    results = await asyncio.gather(*futures)
    assert batch_sizes(parts.metrics) == {2: 1, 1: 1}
    expected = reference(NAME, x[:2].reshape(1, 8, -1))[OUT][0]  # a's two steps in order == one run of 8
    np.testing.assert_allclose(np.concatenate([results[0][0][OUT], results[1][0][OUT]]), expected, atol=1e-5)


async def test_explicit_state_rows_return_their_new_state(parts: Parts) -> None:
    x = sequence(MANIFEST, 2, 6)
    whole = reference(NAME, x)
    initial = {p.input: np.full(p.shape, p.initial, p.dtype) for p in MANIFEST.state}
    first = await asyncio.gather(*parts.batcher.enqueue([(row[:2], None, initial) for row in x]))
    second = await asyncio.gather(*parts.batcher.enqueue([(x[i, 2:], None, first[i][1]) for i in range(2)]))
    for i in range(2):
        np.testing.assert_allclose(np.concatenate([first[i][0][OUT], second[i][0][OUT]]), whole[OUT][i], atol=1e-5)
        for p in MANIFEST.state:
            np.testing.assert_allclose(second[i][1][p.input], whole[p.output][i], atol=1e-5)


async def test_model_error_fails_every_future_and_leaves_state(parts: Parts) -> None:
    sessions = owners(parts.pool, 3)
    before = [parts.pool.read(o.slot) for o in sessions]
    bad = np.zeros((2, MANIFEST.input.features + 1), np.float32)  # the graph refuses this feature size
    results = await asyncio.gather(*parts.batcher.enqueue([(bad, o, None) for o in sessions]), return_exceptions=True)
    assert all(isinstance(r, ModelRunFailed) and "model run failed" in str(r) for r in results)
    for o, state in zip(sessions, before, strict=True):
        for name, value in state.items():
            np.testing.assert_array_equal(parts.pool.read(o.slot)[name], value)
    (ok,) = await asyncio.gather(*parts.batcher.enqueue([(sequence(MANIFEST, 1, 2)[0], sessions[0], None)]))
    assert ok[0][OUT].shape == (2, MANIFEST.outputs[0].size)  # the batcher survived


async def test_cancelled_step_is_skipped_and_state_untouched(parts: Parts) -> None:
    a, b = owners(parts.pool, 2)
    x = sequence(MANIFEST, 2, 3)
    fa, fb = parts.batcher.enqueue([(x[0], a, None), (x[1], b, None)])
    fa.cancel()
    await fb
    assert all(np.all(v == 0.0) for v in parts.pool.read(a.slot).values())
    assert batch_sizes(parts.metrics) == {1: 1}


@pytest.mark.parametrize("device", [False, True], ids=["host", "device"])
async def test_stale_generation_is_not_written_back(executor: ThreadPoolExecutor, device: bool) -> None:
    made = make(executor, device=device)
    (a,) = owners(made.pool, 1)
    release = threading.Event()
    blocker = executor.submit(release.wait)  # holds the only worker, so the step stays in flight
    (future,) = made.batcher.enqueue([(sequence(MANIFEST, 1, 3)[0], a, None)])
    while made.batcher.queued:  # until the batcher has taken the step (yields, no timing)
        await asyncio.sleep(0)
    a.generation += 1  # a reset while the step is in flight
    release.set()
    blocker.result()
    outputs, _ = await future
    assert outputs[OUT].shape == (3, MANIFEST.outputs[0].size)  # still answered
    assert all(np.all(v == 0.0) for v in made.pool.read(a.slot).values())  # but its state dropped
    await made.batcher.close()


async def test_close_runs_queued_steps_then_refuses(executor: ThreadPoolExecutor) -> None:
    made = make(executor, max_batch_size=2)
    sessions = owners(made.pool, 5)
    futures = made.batcher.enqueue([(sequence(MANIFEST, 1, 2, seed=i)[0], o, None) for i, o in enumerate(sessions)])
    await made.batcher.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(Unavailable):
        made.batcher.enqueue([(sequence(MANIFEST, 1, 2)[0], sessions[0], None)])


async def test_queue_bound_admits_all_or_nothing(executor: ThreadPoolExecutor) -> None:
    made = make(executor, max_queued=3)
    sessions = owners(made.pool, 4)
    rows = [(sequence(MANIFEST, 1, 2)[0], o, None) for o in sessions]
    with pytest.raises(ResourceExhausted, match="queue is full"):
        made.batcher.enqueue(rows)
    assert made.metrics.snapshot().execution_count == 0
    await asyncio.gather(*made.batcher.enqueue(rows[:3]))
    await made.batcher.close()


async def step_all(parts: Parts, rows: list[tuple[np.ndarray, Owner]]) -> list[np.ndarray]:
    results = await asyncio.gather(*parts.batcher.enqueue([(x, o, None) for x, o in rows]))
    return [r[0][OUT] for r in results]


async def test_state_stays_in_its_slot_across_batches_of_any_order(parts: Parts) -> None:
    sessions = owners(parts.pool, 5)  # the pool grows from 2 slots on the way
    x = sequence(MANIFEST, 5, 9)
    expected = reference(NAME, x)
    got: dict[int, list[np.ndarray]] = {i: [] for i in range(5)}
    for k, order in enumerate(([2, 0, 1, 4, 3], [4, 3, 2, 1, 0], [1, 3, 0, 2, 4])):
        outs = await step_all(parts, [(x[i, 3 * k : 3 * k + 3], sessions[i]) for i in order])
        for i, out in zip(order, outs, strict=True):
            got[i].append(out)
    assert batch_sizes(parts.metrics) == {5: 3}
    for i, o in enumerate(sessions):
        np.testing.assert_allclose(np.concatenate(got[i]), expected[OUT][i], atol=1e-5)
        for p in MANIFEST.state:  # read straight from the pool: nothing held back elsewhere
            np.testing.assert_allclose(parts.pool.read(o.slot)[p.input], expected[p.output][i], atol=1e-5)


async def test_sessions_and_explicit_state_rows_in_one_batch(parts: Parts) -> None:
    a, b, c = owners(parts.pool, 3)
    x = sequence(MANIFEST, 4, 6)
    expected = reference(NAME, x)
    first = await step_all(parts, [(x[0, :2], a), (x[1, :2], b), (x[2, :2], c)])
    c.generation += 1  # c is reset: its row must not be written back by the batch below
    parts.pool.reset(c.slot)
    initial = {p.input: np.full(p.shape, p.initial, p.dtype) for p in MANIFEST.state}
    rows = [(x[0, 2:], a, None), (x[3, 2:], None, initial), (x[1, 2:], b, None)]
    (ra, rs, rb) = await asyncio.gather(*parts.batcher.enqueue(rows))
    assert batch_sizes(parts.metrics) == {3: 2}
    np.testing.assert_allclose(np.concatenate([first[0], ra[0][OUT]]), expected[OUT][0], atol=1e-5)
    np.testing.assert_allclose(np.concatenate([first[1], rb[0][OUT]]), expected[OUT][1], atol=1e-5)
    stateless = reference(NAME, x[3:, 2:])
    np.testing.assert_allclose(rs[0][OUT], stateless[OUT][0], atol=1e-5)
    assert ra[1] == {} and set(rs[1]) == {p.input for p in MANIFEST.state}
    for p in MANIFEST.state:
        np.testing.assert_allclose(rs[1][p.input], stateless[p.output][0], atol=1e-5)
        np.testing.assert_allclose(parts.pool.read(a.slot)[p.input], expected[p.output][0], atol=1e-5)
        assert np.all(parts.pool.read(c.slot)[p.input] == p.initial)
    (rc,) = await step_all(parts, [(x[2, 2:], c)])  # from the initial state
    np.testing.assert_allclose(rc, reference(NAME, x[2:3, 2:])[OUT][0], atol=1e-5)


HOUR_US = 3600 * 1_000_000


@pytest.mark.timeout(60)
async def test_an_idle_model_runs_a_step_at_once_and_waits_for_the_sessions_it_served(
    executor: ThreadPoolExecutor,
) -> None:
    made = make(executor, max_queue_delay_us=HOUR_US)  # a step that waited for company would hang the test
    a, b, c = owners(made.pool, 3)
    x = sequence(MANIFEST, 1, 2)[0]
    await step_all(made, [(x, a)])  # idle: no wait at all
    await step_all(made, [(x, a), (x, b)])
    (fa,) = made.batcher.enqueue([(x, a, None)])
    for _ in range(20):  # let the batcher run: it must hold a's step until b is back
        await asyncio.sleep(0)
    assert made.batcher.queued == 1
    (fb,) = made.batcher.enqueue([(x, b, None)])
    await asyncio.gather(fa, fb)
    assert batch_sizes(made.metrics) == {1: 1, 2: 2}
    made.batcher.forget(a)  # a and b closed: c does not wait for them
    made.batcher.forget(b)
    await step_all(made, [(x, c)])
    await made.batcher.close()


@pytest.mark.parametrize("inline_run_max_us", [0, 10**9], ids=["executor", "inline"])
async def test_cheap_batches_run_on_the_loop_once_measured(inline_run_max_us: int) -> None:
    """The first run goes through the executor and measures the model; then a batch predicted under the limit
    runs on the event loop (so it still runs with the executor shut down), while 0 keeps every run off the loop."""
    executor = ThreadPoolExecutor(max_workers=1)
    made = make(executor, inline_run_max_us=inline_run_max_us)
    (a,) = owners(made.pool, 1)
    x = sequence(MANIFEST, 1, 6)
    ((first, _),) = await asyncio.gather(*made.batcher.enqueue([(x[0, :3], a, None)]))
    executor.shutdown(wait=True)
    (second,) = await asyncio.gather(*made.batcher.enqueue([(x[0, 3:], a, None)]), return_exceptions=True)
    await made.batcher.close()
    if inline_run_max_us == 0:
        assert isinstance(second, ModelRunFailed)
        return
    assert isinstance(second, tuple)
    got = np.concatenate([first[OUT], second[0][OUT]])
    np.testing.assert_allclose(got, reference(NAME, x)[OUT][0], atol=1e-5)


async def test_an_idle_model_answers_a_cheap_lone_step_as_it_is_queued(executor: ThreadPoolExecutor) -> None:
    """Once measured cheap, a step reaching an idle model with nobody else expected runs inside `enqueue` (no
    batcher wake-up, no task switch): its future is done when `enqueue` returns, with the right answer. A step
    whose batch may get company (a session it was served with is expected back) still waits for the batcher."""
    made = make(executor, inline_run_max_us=10**9, max_queue_delay_us=HOUR_US)
    a, b = owners(made.pool, 2)
    x = sequence(MANIFEST, 2, 9)
    first = await step_all(made, [(x[0, :3], a)])  # the first run measures the model (in the executor)
    (now,) = made.batcher.enqueue([(x[0, 3:6], a, None)])
    assert now.done()
    got = np.concatenate([first[0], now.result()[0][OUT]])
    np.testing.assert_allclose(got, reference(NAME, x[0:1, :6])[OUT][0], atol=1e-5)
    await step_all(made, [(x[0, 6:], a), (x[1, :3], b)])  # served together: each expects the other back
    (fa,) = made.batcher.enqueue([(x[0, :3], a, None)])
    assert not fa.done()  # waits for b, not inline
    (fb,) = made.batcher.enqueue([(x[1, 3:6], b, None)])
    await asyncio.gather(fa, fb)
    assert batch_sizes(made.metrics) == {1: 2, 2: 2}
    await made.batcher.close()


async def test_a_request_of_more_rows_than_a_batch_is_answered_whole_on_an_idle_model(
    executor: ThreadPoolExecutor,
) -> None:
    """Cheap rows of one request, more than `max_batch_size`, reaching an idle model: none is left waiting (a run
    inside `enqueue` took one batch of them and the rest waited for a wake-up that never came)."""
    made = make(executor, max_batch_size=2, inline_run_max_us=10**9)
    sessions = owners(made.pool, 3)
    x = sequence(MANIFEST, 3, 4)
    await step_all(made, [(x[0, :2], sessions[0])])  # measured: cheap, so later batches run inline
    for _ in range(20):  # the batcher goes back to sleep (yields to the loop, not waits for time)
        await asyncio.sleep(0)
    futures = made.batcher.enqueue([(x[i, 2:], s, None) for i, s in enumerate(sessions)])
    await asyncio.wait_for(asyncio.gather(*futures), 30)  # a safety net, never a timed assertion
    await made.batcher.close()


async def test_close_returns_when_the_step_waiting_for_company_was_cancelled(executor: ThreadPoolExecutor) -> None:
    """A SIGTERM cuts every stream of a replica: the step that waits for company is cancelled, then the model
    closes. The batcher wakes for the close, drops the cancelled step and must stop (it went back to sleep with an
    empty queue, nobody left to wake it: the replica never exited)."""
    made = make(executor, max_queue_delay_us=HOUR_US)
    a, b = owners(made.pool, 2)
    x = sequence(MANIFEST, 1, 2)[0]
    await step_all(made, [(x, a), (x, b)])  # served together: each expects the other back
    (waiting,) = made.batcher.enqueue([(x, a, None)])
    for _ in range(20):  # let the batcher reach its wait for b (yields to the loop, not waits for time)
        await asyncio.sleep(0)
    assert made.batcher.queued == 1 and not waiting.done()
    waiting.cancel()
    await asyncio.wait_for(made.batcher.close(), 30)  # a safety net, never a timed assertion


async def test_close_returns_when_every_queued_step_was_cancelled(executor: ThreadPoolExecutor) -> None:
    """A shutdown that cut every stream leaves only cancelled steps queued: the batcher still stops (it hung)."""
    made = make(executor)
    (a,) = owners(made.pool, 1)
    (future,) = made.batcher.enqueue([(sequence(MANIFEST, 1, 3)[0], a, None)])
    future.cancel()  # before the loop has run: the step stays queued, done
    await asyncio.wait_for(made.batcher.close(), 60)  # a safety net, never a timed assertion
