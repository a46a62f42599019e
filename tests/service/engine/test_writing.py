"""Write-through in flight: a session is held while its write is in flight, at most `DEPTH` writes fly, a batch
shares the queue when nothing is in flight; and with a real Redis, sessions stepping in closed loop form two
groups whose answers, and stored state, equal the whole-sequence run."""

from __future__ import annotations

import asyncio

import numpy as np

from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.state.codec import decode
from service.engine.state.store import new_token, stream_key
from service.engine.writing import DEPTH, SPLIT_MIN, Writes
from tests.redis_server import RedisServer
from tests.service.helpers import MANIFESTS, SHIPPED, cpu_settings, reference, sequence

MODEL = "vowels_gru"


async def test_a_session_is_held_until_its_write_is_done_and_at_most_depth_writes_fly() -> None:
    assert DEPTH == 2  # what this test walks through
    released: list[int] = []
    writes = Writes(lambda: released.append(len(writes.held)))
    gates, started = [asyncio.Event() for _ in range(DEPTH)], asyncio.Event()

    async def write(gate: asyncio.Event) -> None:
        started.set()
        await gate.wait()

    assert writes.share(2 * SPLIT_MIN, 64) == SPLIT_MIN  # nothing in flight: half of the queue
    assert writes.share(2 * SPLIT_MIN - 1, 64) == 64  # too few to split
    await writes.start([1, 2], write(gates[0]))
    assert writes.held == {1, 2} and writes.busy
    assert writes.share(64, 64) == 64  # a write in flight: take everything
    started.clear()
    last = asyncio.create_task(writes.start([3], write(gates[1])))  # the DEPTH-th write: waits for room
    await started.wait()
    assert writes.held == {1, 2, 3} and not last.done()
    gates[0].set()
    await last  # room once the oldest is done
    assert writes.held == {3} and released == [1]
    gates[1].set()
    await writes.drain()
    assert writes.held == set() and not writes.busy and released == [1, 0]


async def test_closed_loop_sessions_on_redis_form_two_groups_and_stay_exact(redis_server: RedisServer) -> None:
    registry = await Registry.load(cpu_settings(SHIPPED, session_store=redis_server.url), Metrics())
    try:
        model, steps, streams = registry.get(MODEL), 6, 16
        xs = sequence(MANIFESTS[MODEL], streams, 4 * steps, seed=3)
        keys = [stream_key(MODEL, model.version, new_token()) for _ in range(streams)]
        sessions = [model.open_session(key) for key in keys]
        before = model.stats().execution_count

        async def drive(i: int) -> np.ndarray:
            return np.concatenate([(await sessions[i].step(xs[i, 4 * k:4 * k + 4]))["logits"] for k in range(steps)])

        got = await asyncio.gather(*(drive(i) for i in range(streams)))
        assert model.stats().execution_count - before > steps  # not one batch of all per step: the groups formed
        whole = reference(MODEL, xs)
        for i in range(streams):
            np.testing.assert_allclose(got[i], whole["logits"][i], atol=1e-4, rtol=0)
            stored = await registry.store.load(keys[i])  # type: ignore[union-attr]
            assert stored is not None and stored.position == steps
            state = decode(MANIFESTS[MODEL].state, stored.state)
            for p in MANIFESTS[MODEL].state:
                np.testing.assert_allclose(state[p.input], whole[p.output][i], atol=1e-4, rtol=0)
        for session in sessions:
            session.close()
    finally:
        await registry.close()
