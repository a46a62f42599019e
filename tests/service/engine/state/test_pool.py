"""The state pool: alloc, free, grow, limit, reset, read/gather/scatter, idle slots; on both stores (host numpy,
and the device store's gather/scatter graphs with CPU `OrtValue`s, the code path CUDA runs)."""

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo import StatePair
from service.engine.errors import ResourceExhausted
from service.engine.runtime import CPU, to_host
from service.engine.state.device import device_store
from service.engine.state.pool import HostStore, StatePool, StoreFactory

PAIRS = [
    StatePair(input="h0", output="hn", shape=[1, 4], initial=0.5),
    StatePair(input="c0", output="cn", shape=[1, 4], initial=0.0),
]
MakePool = Callable[..., StatePool]


@pytest.fixture(params=["host", "device"])
def make_pool(request: pytest.FixtureRequest) -> MakePool:
    store: StoreFactory = HostStore if request.param == "host" else device_store(CPU)
    return lambda pairs, **kwargs: StatePool(pairs, store=store, **kwargs)


def rows(value: float, n: int = 1) -> dict[str, np.ndarray]:
    return {p.input: np.full((n, *p.shape), value, np.float32) for p in PAIRS}


def test_alloc_gives_initial_state_and_free_recycles(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=4, initial_capacity=2)
    a = pool.alloc(now=0.0)
    state = pool.read(a)
    assert set(state) == {"h0", "c0"}
    assert np.all(state["h0"] == 0.5) and np.all(state["c0"] == 0.0)
    assert state["h0"].shape == (1, 4)
    pool.free(a)
    pool.free(a)  # idempotent
    assert pool.used == 0
    assert pool.alloc(now=0.0) == a


def test_grows_by_doubling_up_to_the_limit_then_refuses(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=5, initial_capacity=2)
    slots = [pool.alloc(now=0.0) for _ in range(5)]
    assert sorted(slots) == [0, 1, 2, 3, 4]
    assert pool.capacity == 5
    with pytest.raises(ResourceExhausted, match="5 open sessions"):
        pool.alloc(now=0.0)
    pool.free(slots[2])
    assert pool.alloc(now=0.0) == slots[2]


def test_growth_keeps_existing_state(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=16, initial_capacity=1)
    first = pool.alloc(now=0.0)
    pool.scatter(np.array([first]), {"h0": rows(7.0)["h0"], "c0": rows(8.0)["c0"]})
    for _ in range(6):
        pool.alloc(now=0.0)
    assert pool.capacity == 8
    assert np.all(pool.read(first)["h0"] == 7.0) and np.all(pool.read(first)["c0"] == 8.0)


def test_idle_pool_memory_is_about_the_state_bytes(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=100_000)
    per_slot = sum(4 * int(np.prod(p.shape)) for p in PAIRS)
    assert pool.nbytes <= 8 * per_slot  # nothing preallocated for max_slots
    for _ in range(100):
        pool.alloc(now=0.0)
    assert pool.nbytes <= 2 * 100 * per_slot


def test_gather_scatter_by_slot_and_reset(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=8)
    slots = np.array([pool.alloc(now=0.0) for _ in range(3)])
    new = {"h0": np.arange(12, dtype=np.float32).reshape(3, 1, 4), "c0": -np.ones((3, 1, 4), np.float32)}
    order = slots[[2, 0]]
    pool.scatter(order, {k: v[:2] for k, v in new.items()})
    gathered = {k: to_host(v) for k, v in pool.gather(slots).items()}
    np.testing.assert_array_equal(gathered["h0"][2], new["h0"][0])
    np.testing.assert_array_equal(gathered["h0"][0], new["h0"][1])
    assert np.all(gathered["h0"][1] == 0.5)  # untouched slot
    gathered["h0"][:] = 99  # a gather is a copy
    assert not np.any(pool.read(int(slots[0]))["h0"] == 99)
    pool.reset(int(slots[0]))
    assert np.all(pool.read(int(slots[0]))["h0"] == 0.5) and np.all(pool.read(int(slots[0]))["c0"] == 0.0)


def test_read_of_a_free_slot_is_refused(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=2)
    slot = pool.alloc(now=0.0)
    pool.free(slot)
    with pytest.raises(KeyError):
        pool.read(slot)


def test_idle_slots_by_last_use(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=8)
    old, fresh, freed = pool.alloc(now=1.0), pool.alloc(now=1.0), pool.alloc(now=1.0)
    pool.touch(fresh, now=50.0)
    pool.free(freed)
    assert pool.idle_slots(older_than=10.0) == [old]
    assert pool.idle_slots(older_than=0.5) == []


def test_gathers_of_any_size_in_turn(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=8)
    slots = np.array([pool.alloc(now=0.0) for _ in range(4)])
    pool.scatter(slots, {"h0": np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 1, 4), np.float32),
                         "c0": np.zeros((4, 1, 4), np.float32)})
    for order in ([3, 1], [0, 1, 2, 3], [2], []):
        got = to_host(pool.gather(slots[order])["h0"])
        assert got.shape == (len(order), 1, 4)
        np.testing.assert_array_equal(got[:, 0, 0], np.array(order, dtype=np.float32))


def test_scatter_writes_only_the_chosen_rows(make_pool: MakePool) -> None:
    pool = make_pool(PAIRS, max_slots=8)
    a, b, c = (pool.alloc(now=0.0) for _ in range(3))
    new = {p.input: np.arange(3, dtype=np.float32)[:, None, None] + np.zeros((3, *p.shape), np.float32) + 1
           for p in PAIRS}
    pool.scatter(np.array([c, a]), new, rows=np.array([2, 0]))  # row 1 (b) does not advance
    assert np.all(pool.read(a)["c0"] == 1) and np.all(pool.read(c)["c0"] == 3)
    assert np.all(pool.read(b)["h0"] == 0.5) and np.all(pool.read(b)["c0"] == 0.0)


def test_device_store_keeps_state_as_ortvalues_where_the_model_runs() -> None:
    pool = StatePool(PAIRS, max_slots=64, initial_capacity=2, store=device_store(CPU))
    slots = np.array([pool.alloc(now=0.0) for _ in range(5)])  # grown twice
    gathered = pool.gather(slots)
    assert all(isinstance(v, ort.OrtValue) for v in gathered.values())
    pool.scatter(slots[::-1].copy(), gathered)  # feeding its own gather back: OrtValues in, pool stays OrtValues
    pool.scatter(slots[:1], rows(2.0))  # and numpy rows (explicit state) are copied in
    assert np.all(pool.read(int(slots[0]))["h0"] == 2.0) and np.all(pool.read(int(slots[1]))["h0"] == 0.5)
    assert pool.nbytes == 8 * sum(4 * 4 for _ in PAIRS)


def test_a_model_without_state_gets_an_empty_pool(make_pool: MakePool) -> None:
    pool = make_pool([], max_slots=4)  # bidirectional models: nothing to place, on any device
    assert pool.gather(np.array([pool.alloc(now=0.0)])) == {} and pool.nbytes == 0
