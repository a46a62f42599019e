"""The Redis session store on a real `redis-server`: compare-and-set per row, two registries racing for one
sequence (one step wins, the other is redone or ABORTED, the state stays exact), Redis down and back."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelrepo import latest_versions
from service.engine.errors import Aborted, ResourceExhausted, SequenceNotFound, Unavailable
from service.engine.metrics import Metrics
from service.engine.model import ServedModel
from service.engine.registry import Registry
from service.engine.runtime import Runtime
from service.engine.sequences import SequenceFlags, Sequences, StepResult
from service.engine.state.codec import decode
from service.engine.state.scripts import ANY, FENCED
from service.engine.state.store import RedisStore, Write, sequence_key
from tests.redis_server import RedisServer
from tests.service.helpers import MANIFESTS, SHIPPED, cpu_settings, reference

MODEL = "vowels_gru"
TOLERANCE = 1e-4
Opener = Callable[[], "asyncio.Future[Registry]"]


def logits(result: StepResult) -> np.ndarray:
    return result.outputs["logits"]


def chunk(seed: int, steps: int = 4) -> np.ndarray:
    features = MANIFESTS[MODEL].input.features
    return np.random.default_rng(seed).standard_normal((steps, features)).astype(np.float32)


@pytest.fixture
async def registries(redis_server: RedisServer) -> AsyncIterator[tuple[Registry, Registry]]:
    """Two registries (two replicas' engines) on one event loop, sharing one Redis."""
    settings = cpu_settings(SHIPPED, session_store=redis_server.url)
    loaded = [await Registry.load(settings, Metrics()) for _ in range(2)]
    yield loaded[0], loaded[1]
    for registry in loaded:
        await registry.close()


async def test_a_write_that_does_not_start_from_the_stored_version_is_refused(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, ttl_s=60)
    try:
        assert await store.commit([Write("k", ANY, "e:1", 1, b"a"), Write("j", "e:9", "e:10", 1, b"x")]) == ["", "-"]
        assert await store.commit([Write("k", "e:1", "e:2", 2, b"b"), Write("k", "e:1", "f:2", 2, b"c")]) == ["", "e:2"]
        stored = await store.load("k")
        assert stored is not None and (stored.version, stored.position, stored.state) == ("e:2", 2, b"b")
        assert await store.commit([Write("k", "e:2", "e:3", 3, b"", ending=True)]) == [""]  # an END ends it
        assert await store.load("k") is None
        assert store.round_trips == 5
    finally:
        await store.close()


async def test_two_replicas_racing_for_one_sequence_apply_each_step_once(
    registries: tuple[Registry, Registry], redis_server: RedisServer
) -> None:
    (a, b), tables = registries, (Sequences(), Sequences())
    c1, c2, c3, c4 = (chunk(seed) for seed in range(1, 5))
    await tables[0].submit(a.get(MODEL), SequenceFlags(7, start=True), c1, logits)
    await tables[1].submit(b.get(MODEL), SequenceFlags(7), c2, logits)  # B loads it; A's copy is now stale
    trips = a.store.round_trips  # type: ignore[union-attr]
    racing = [tables[0].submit(a.get(MODEL), SequenceFlags(7), c3, logits),  # from A's stale copy: refused, redone
              tables[1].submit(b.get(MODEL), SequenceFlags(7), c4, logits)]
    got = dict(zip(("c3", "c4"), await asyncio.gather(*racing), strict=True))
    assert a.store.round_trips - trips >= 3  # type: ignore[union-attr]  # refused commit, load, commit
    stored = await a.store.load(sequence_key(MODEL, MANIFESTS[MODEL].version, 7))  # type: ignore[union-attr]
    assert stored is not None and stored.position == 4  # four steps, none lost, none applied twice
    final = decode(MANIFESTS[MODEL].state, stored.state)
    explained = []
    for order, xs in {("c3", "c4"): [c1, c2, c3, c4], ("c4", "c3"): [c1, c2, c4, c3]}.items():
        whole = reference(MODEL, np.concatenate(xs)[None])
        state_ok = all(np.allclose(final[p.input], whole[p.output][0], atol=TOLERANCE) for p in MANIFESTS[MODEL].state)
        answers = np.concatenate([got[name] for name in order])
        if state_ok and np.allclose(answers, whole["logits"][0][8:], atol=TOLERANCE):
            explained.append(order)
    assert len(explained) == 1  # one serial order explains both answers and the stored state


async def test_a_session_another_replica_advanced_is_aborted(registries: tuple[Registry, Registry]) -> None:
    """Below the sequence table (which redoes), a session's stale step is refused with ABORTED, state untouched."""
    a, b = (r.get(MODEL) for r in registries)
    key = sequence_key(MODEL, a.version, "race")
    mine = a.open_session(key)
    await mine.step(chunk(1))
    stored = await a.store.load(key)  # type: ignore[union-attr]
    theirs = b.open_session(key)
    theirs.restore(stored)  # type: ignore[arg-type]
    await theirs.step(chunk(2))  # the other replica wins the session
    before = mine.state()
    with pytest.raises(Aborted, match="concurrent step won"):
        await mine.step(chunk(3))
    assert all(np.array_equal(before[n], v) for n, v in mine.state().items())


async def test_a_commit_sent_twice_applies_once_and_a_lost_one_is_resolved(redis_server: RedisServer) -> None:
    """Every step writes a version of its own: a second copy of a commit is recognised as applied; a commit whose
    answer was lost is read back (applied: OK) or fenced off (never applied, even if a copy arrives later)."""
    store = RedisStore(redis_server.url, ttl_s=60)
    try:
        first = [Write("k", ANY, "e:1", 1, b"a")]
        assert await store.commit(first) == [""]
        step = [Write("k", "e:1", "e:2", 2, b"b", b"answer")]
        assert await store.commit(step) == [""]
        assert await store.commit(step) == [""]  # a retried or late copy: applied once
        stored = await store.load("k", recent=True)
        assert stored is not None and (stored.version, stored.position, stored.recent) == ("e:2", 2, (b"answer",))
        assert await store._resolve(step) == [""]  # lost answer, applied: OK
        lost = [Write("k", "e:2", "e:3", 3, b"c")]
        (fenced,) = await store._resolve(lost)  # lost before Redis ran it: fenced off
        assert fenced.startswith(FENCED) and fenced.endswith(":2")
        assert await store.commit(lost) == [fenced[len(FENCED):]]  # the late copy can never apply
        stored = await store.load("k")
        assert stored is not None and (stored.version, stored.position, stored.state) == (fenced[1:], 2, b"b")
        new = [Write("n", ANY, "f:1", 1, b"x")]
        (fenced_new,) = await store._resolve(new)  # a new session's lost write: its epoch is fenced
        assert fenced_new.startswith(FENCED)
        assert await store.commit(new) == [FENCED] and await store.load("n") is None
        assert await store.commit([Write("n", ANY, "g:1", 1, b"y")]) == [""]  # a new epoch is not
        end = [Write("k", fenced[1:], "h:3", 3, b"", ending=True)]
        assert await store.commit(end) == [""] and await store.commit(end) == [""]  # a retried END
        assert await store._resolve(end) == [""] and await store.load("k") is None
    finally:
        await store.close()


async def test_redis_down_gives_unavailable_and_the_engine_recovers(
    registries: tuple[Registry, Registry], redis_server: RedisServer
) -> None:
    model, table = registries[0].get(MODEL), Sequences()
    await table.submit(model, SequenceFlags(1, start=True), chunk(1), logits)
    redis_server.stop()
    with pytest.raises(Unavailable, match="session store is unreachable"):
        await table.submit(model, SequenceFlags(1), chunk(2), logits)
    with pytest.raises(Unavailable, match="session store is unreachable"):
        await table.submit(model, SequenceFlags(2), chunk(2), logits)  # not held here: the load fails too
    outputs, _ = await model.infer(chunk(3)[None])  # stateless requests need no store
    assert outputs["logits"].shape == (1, 4, MANIFESTS[MODEL].outputs[0].size)
    redis_server.start()  # back, empty (no persistence): what it held is gone, new sequences work
    with pytest.raises(SequenceNotFound):
        await table.submit(model, SequenceFlags(1), chunk(2), logits)
    got = await table.submit(model, SequenceFlags(1, start=True), chunk(4), logits)
    np.testing.assert_allclose(got, reference(MODEL, chunk(4)[None])["logits"][0], atol=TOLERANCE, rtol=0)


async def test_the_store_holds_at_most_max_stored_sessions(redis_server: RedisServer) -> None:
    settings = cpu_settings(SHIPPED, session_store=redis_server.url, max_stored_sessions=2)
    registry = await Registry.load(settings, Metrics())
    try:
        model, table = registry.get(MODEL), Sequences()
        for sequence_id in (1, 2):
            await table.submit(model, SequenceFlags(sequence_id, start=True), chunk(1), logits)
        with pytest.raises(ResourceExhausted, match="limit of 2 sessions"):
            await table.submit(model, SequenceFlags(3, start=True), chunk(1), logits)
        await table.submit(model, SequenceFlags(1, start=True), chunk(2), logits)  # a START of a stored one is fine
        await table.submit(model, SequenceFlags(2, end=True), chunk(2), logits)  # END makes room
        await table.submit(model, SequenceFlags(3, start=True), chunk(1), logits)
    finally:
        await registry.close()


async def test_write_through_and_restore_on_the_device_store_path(redis_server: RedisServer) -> None:
    """The CUDA code path (IOBinding, state as `OrtValue`s in the device pool; here on the CPU): a session written
    through by one model and restored by another continues exactly."""
    manifest, store = MANIFESTS[MODEL], RedisStore(redis_server.url, ttl_s=60)
    pairs = {p.input: p.output for p in manifest.state}
    with ThreadPoolExecutor(max_workers=1) as executor:
        models = []
        for _ in range(2):
            runtime = Runtime(latest_versions(SHIPPED)[MODEL].model_path, "cpu", 1, MODEL, pairs, io_binding=True)
            models.append(ServedModel(manifest, runtime, cpu_settings(SHIPPED), Metrics().for_model(MODEL), executor,
                                      store=store))
            models[-1].start()
        key = sequence_key(MODEL, manifest.version, "device")
        first = models[0].open_session(key)
        got = [(await first.step(chunk(1)))["logits"]]
        second = models[1].open_session(key)
        second.restore(await store.load(key))  # type: ignore[arg-type]
        got.append((await second.step(chunk(2)))["logits"])
        whole = reference(MODEL, np.concatenate([chunk(1), chunk(2)])[None])["logits"][0]
        np.testing.assert_allclose(np.concatenate(got), whole, atol=TOLERANCE, rtol=0)
        for model in models:
            await model.close()
    await store.close()


async def test_stateless_requests_never_wait_for_a_stalled_store(
    registries: tuple[Registry, Registry], redis_server: RedisServer
) -> None:
    """Redis paused with a sequence's write in flight: whole-sequence requests on the same model are answered while
    the write still waits, and the step is answered once Redis is back."""
    model, table = registries[0].get(MODEL), Sequences()
    store = model.store
    assert store is not None and redis_server.process is not None
    await table.submit(model, SequenceFlags(1, start=True), chunk(1), logits)
    sent = store.round_trips
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        step = table.submit(model, SequenceFlags(1), chunk(2), logits)
        while store.round_trips == sent:  # until its write is on the way to the paused Redis
            await asyncio.sleep(0)
        for seed in (3, 4, 5):
            outputs, _ = await model.infer(chunk(seed)[None])
            want = reference(MODEL, chunk(seed)[None])["logits"]
            np.testing.assert_allclose(outputs["logits"], want, atol=TOLERANCE, rtol=0)
        assert not step.done()  # the stateless answers came while the sequence's write still waited
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    got = await step
    whole = reference(MODEL, np.concatenate([chunk(1), chunk(2)])[None])["logits"][0]
    np.testing.assert_allclose(got, whole[4:], atol=TOLERANCE, rtol=0)


async def test_at_maxmemory_new_sessions_are_refused_and_open_ones_go_on(
    registries: tuple[Registry, Registry], redis_server: RedisServer
) -> None:
    model, table = registries[0].get(MODEL), Sequences()
    await table.submit(model, SequenceFlags(1, start=True), chunk(1), logits)
    with redis_server.client() as redis:
        used = int(redis.info("memory")["used_memory"])
        redis.config_set("maxmemory", int(used / 0.95))  # above the 90 % of --session-store-memory-fraction
        for sequence_id in (2, "two"):
            with pytest.raises(ResourceExhausted, match="near its memory limit"):
                await table.submit(model, SequenceFlags(sequence_id, start=True), chunk(1), logits)
        assert redis.dbsize() == 1  # nothing of the refused sessions was written
        got = [await table.submit(model, SequenceFlags(1), chunk(k), logits) for k in (2, 3)]
        redis.config_set("maxmemory", 0)
    whole = reference(MODEL, np.concatenate([chunk(1), chunk(2), chunk(3)])[None])["logits"][0]
    np.testing.assert_allclose(np.concatenate(got), whole[4:], atol=TOLERANCE, rtol=0)
    await table.submit(model, SequenceFlags(2, start=True), chunk(1), logits)  # room again
