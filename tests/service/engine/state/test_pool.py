"""The state pool: alloc, free, grow, limit, reset, read/gather/scatter, idle slots."""

import numpy as np
import pytest

from modelrepo import StatePair
from service.engine.errors import ResourceExhausted
from service.engine.state.pool import StatePool

PAIRS = [
    StatePair(input="h0", output="hn", shape=[1, 4], initial=0.5),
    StatePair(input="c0", output="cn", shape=[1, 4], initial=0.0),
]


def test_alloc_gives_initial_state_and_free_recycles() -> None:
    pool = StatePool(PAIRS, max_slots=4, initial_capacity=2)
    a = pool.alloc(now=0.0)
    state = pool.read(a)
    assert set(state) == {"h0", "c0"}
    assert np.all(state["h0"] == 0.5) and np.all(state["c0"] == 0.0)
    assert state["h0"].shape == (1, 4)
    pool.free(a)
    pool.free(a)  # idempotent
    assert pool.used == 0
    assert pool.alloc(now=0.0) == a


def test_grows_by_doubling_up_to_the_limit_then_refuses() -> None:
    pool = StatePool(PAIRS, max_slots=5, initial_capacity=2)
    slots = [pool.alloc(now=0.0) for _ in range(5)]
    assert sorted(slots) == [0, 1, 2, 3, 4]
    assert pool.capacity == 5
    with pytest.raises(ResourceExhausted, match="5 open sessions"):
        pool.alloc(now=0.0)
    pool.free(slots[2])
    assert pool.alloc(now=0.0) == slots[2]


def test_growth_keeps_existing_state() -> None:
    pool = StatePool(PAIRS, max_slots=16, initial_capacity=1)
    first = pool.alloc(now=0.0)
    pool.scatter(np.array([first]), {"h0": np.full((1, 1, 4), 7.0), "c0": np.full((1, 1, 4), 8.0)})
    for _ in range(6):
        pool.alloc(now=0.0)
    assert pool.capacity == 8
    assert np.all(pool.read(first)["h0"] == 7.0) and np.all(pool.read(first)["c0"] == 8.0)


def test_idle_pool_memory_is_about_the_state_bytes() -> None:
    pool = StatePool(PAIRS, max_slots=100_000)
    per_slot = sum(4 * int(np.prod(p.shape)) for p in PAIRS)
    assert pool.nbytes <= 8 * per_slot  # nothing preallocated for max_slots
    for _ in range(100):
        pool.alloc(now=0.0)
    assert pool.nbytes <= 2 * 100 * per_slot


def test_gather_scatter_by_slot_and_reset() -> None:
    pool = StatePool(PAIRS, max_slots=8)
    slots = np.array([pool.alloc(now=0.0) for _ in range(3)])
    new = {"h0": np.arange(12, dtype=np.float32).reshape(3, 1, 4), "c0": -np.ones((3, 1, 4), np.float32)}
    order = slots[[2, 0]]
    pool.scatter(order, {k: v[:2] for k, v in new.items()})
    gathered = pool.gather(slots)
    np.testing.assert_array_equal(gathered["h0"][2], new["h0"][0])
    np.testing.assert_array_equal(gathered["h0"][0], new["h0"][1])
    assert np.all(gathered["h0"][1] == 0.5)  # untouched slot
    gathered["h0"][:] = 99  # a gather is a copy
    assert not np.any(pool.read(int(slots[0]))["h0"] == 99)
    pool.reset(int(slots[0]))
    assert np.all(pool.read(int(slots[0]))["h0"] == 0.5) and np.all(pool.read(int(slots[0]))["c0"] == 0.0)


def test_read_of_a_free_slot_is_refused() -> None:
    pool = StatePool(PAIRS, max_slots=2)
    slot = pool.alloc(now=0.0)
    pool.free(slot)
    with pytest.raises(KeyError):
        pool.read(slot)


def test_idle_slots_by_last_use() -> None:
    pool = StatePool(PAIRS, max_slots=8)
    old, fresh, freed = pool.alloc(now=1.0), pool.alloc(now=1.0), pool.alloc(now=1.0)
    pool.touch(fresh, now=50.0)
    pool.free(freed)
    assert pool.idle_slots(older_than=10.0) == [old]
    assert pool.idle_slots(older_than=0.5) == []


def test_gathers_of_any_size_in_turn() -> None:
    pool = StatePool(PAIRS, max_slots=8)
    slots = np.array([pool.alloc(now=0.0) for _ in range(4)])
    pool.scatter(slots, {"h0": np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 1, 4), np.float32),
                         "c0": np.zeros((4, 1, 4), np.float32)})
    for order in ([3, 1], [0, 1, 2, 3], [2], []):
        rows = pool.gather(slots[order])["h0"]
        assert rows.shape == (len(order), 1, 4)
        np.testing.assert_array_equal(rows[:, 0, 0], np.array(order, dtype=np.float32))
