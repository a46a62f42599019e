"""Write-through at engine level on a real Redis: sessions stepping in closed loop, each step's answer kept (as for
a native stream), give answers and stored state equal to the whole-sequence run; the commit script's batch layout
(one line of small fields per row, the states and the answers side by side) round-trips every row."""

from __future__ import annotations

import asyncio

import numpy as np

from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.state.codec import decode, decode_answer
from service.engine.state.store import new_token, stream_key
from tests.redis_server import RedisServer
from tests.service.helpers import MANIFESTS, SHIPPED, cpu_settings, reference, sequence

MODEL = "vowels_gru"


async def test_closed_loop_sessions_on_redis_stay_exact_and_keep_their_answers(redis_server: RedisServer) -> None:
    registry = await Registry.load(cpu_settings(SHIPPED, session_store=redis_server.url), Metrics())
    try:
        model, steps, streams = registry.get(MODEL), 6, 16
        xs = sequence(MANIFESTS[MODEL], streams, 4 * steps, seed=3)
        keys = [stream_key(MODEL, model.version, new_token()) for _ in range(streams)]
        sessions = [model.open_session(key) for key in keys]
        for session in sessions:
            session.answers = True  # what a native stream keeps for a resuming client

        async def drive(i: int) -> np.ndarray:
            return np.concatenate([(await sessions[i].step(xs[i, 4 * k:4 * k + 4]))["logits"] for k in range(steps)])

        got = await asyncio.gather(*(drive(i) for i in range(streams)))
        whole = reference(MODEL, xs)
        for i in range(streams):
            np.testing.assert_allclose(got[i], whole["logits"][i], atol=1e-4, rtol=0)
            stored = await registry.store.load(keys[i], recent=True)  # type: ignore[union-attr]
            assert stored is not None and stored.position == steps and len(stored.recent) == steps
            state = decode(MANIFESTS[MODEL].state, stored.state)
            for p in MANIFESTS[MODEL].state:
                np.testing.assert_allclose(state[p.input], whole[p.output][i], atol=1e-4, rtol=0)
            kept = np.concatenate([decode_answer(answer)["logits"] for answer in stored.recent])
            np.testing.assert_array_equal(kept, got[i])
        for session in sessions:
            session.close()
    finally:
        await registry.close()
