"""Store faults under live traffic on both fronts: a real `redis-server` paused (SIGSTOP for 1, 3 and 5 s), flushed,
killed and restarted, filled to maxmemory, while Triton sequences (tritonclient) and native streams (the SDK with
its own resume) run. Every OK answer must equal the whole-sequence run, and every error's documented recovery
(see drivers.py) must lead to right outputs: no step applied twice, none skipped."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.service.grpc.store.drivers import Driver, NativeDriver, TritonDriver, make_run, wait_for

if TYPE_CHECKING:
    from tests.redis_server import RedisServer
    from tests.service.grpc.helpers import Reference, RunningServer

MODEL = "vowels_gru"
STALLS_S = (1.0, 3.0, 5.0)  # around the store timeout (2 s) and its resolve window (8 s)


def start_drivers(
    server: RunningServer, reference: Reference, each: int = 2
) -> tuple[list[Driver], threading.Condition]:
    progress = threading.Condition()
    rng = np.random.default_rng(23)
    drivers: list[Driver] = []
    for i in range(each):
        drivers.append(TritonDriver(f"triton{i}", make_run(reference, MODEL, rng), server.target, progress))
        drivers.append(NativeDriver(f"native{i}", make_run(reference, MODEL, rng), server.target, progress))
    for driver in drivers:
        driver.start()
    return drivers, progress


def everyone_moves(drivers: list[Driver], progress: threading.Condition, what: str) -> None:
    """Wait until every driver has had a new OK answer (so each is mid-sequence, a step about to go out)."""
    before = [d.oks for d in drivers]
    wait_for(progress, lambda: any(d.failure for d in drivers) or all(
        d.oks > b for d, b in zip(drivers, before, strict=True)), what)
    for d in drivers:
        if d.failure is not None:
            raise d.failure


def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for a real event in the server (a store call sent); a safety net, never a timed assertion."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tick.wait(0.005)


def finish(drivers: list[Driver]) -> None:
    for driver in drivers:
        driver.stop.set()
    for driver in drivers:
        driver.join()
        assert driver.completed >= 1, f"{driver.name} completed no sequence"


@pytest.fixture
def served(start_server: Callable[..., RunningServer], redis_server: RedisServer) -> Iterator[RunningServer]:
    yield start_server(session_store=redis_server.url)


def test_stalls_of_1_3_and_5_s_never_give_a_wrong_answer(
    served: RunningServer, redis_server: RedisServer, reference: Reference
) -> None:
    store = served.registry.store
    assert store is not None and redis_server.process is not None
    drivers, progress = start_drivers(served, reference)
    try:
        for stall in STALLS_S:
            everyone_moves(drivers, progress, f"traffic before the {stall:g} s stall")
            sent = store.round_trips
            redis_server.process.send_signal(signal.SIGSTOP)
            try:
                until(lambda s=sent: store.round_trips > s, "a store call in flight")  # type: ignore[misc]
                threading.Event().wait(stall)  # the fault itself: Redis stays paused this long
            finally:
                redis_server.process.send_signal(signal.SIGCONT)
        everyone_moves(drivers, progress, "traffic after the stalls")
    finally:
        finish(drivers)
    assert store.resolved > 0  # the 3 and 5 s stalls outlast the store timeout: lost commits were read back
    seen = sum((d.seen for d in drivers), start=type(drivers[0].seen)())
    print("answers other than OK:", dict(seen))


def test_flushall_kill_restart_and_maxmemory_never_give_a_wrong_answer(
    served: RunningServer, redis_server: RedisServer, reference: Reference
) -> None:
    drivers, progress = start_drivers(served, reference)
    try:
        everyone_moves(drivers, progress, "traffic before FLUSHALL")
        with redis_server.client() as redis:
            redis.flushall()  # every stored session is gone: NOT_FOUND, then a new sequence
        everyone_moves(drivers, progress, "traffic after FLUSHALL")
        assert redis_server.process is not None
        redis_server.process.kill()
        redis_server.process.wait()
        redis_server.stop()
        redis_server.start()  # back on the same port, empty
        everyone_moves(drivers, progress, "traffic after SIGKILL and restart")
        with redis_server.client() as redis:
            used = int(redis.info("memory")["used_memory"])
            redis.config_set("maxmemory", used + 256 * 1024)  # new sessions refused (> 90 %), open ones go on
            everyone_moves(drivers, progress, "traffic at maxmemory")
            redis.config_set("maxmemory", 0)
        everyone_moves(drivers, progress, "traffic after maxmemory")
    finally:
        finish(drivers)


def test_a_stall_beyond_the_resolve_window_is_an_unknown_outcome_and_clients_recover(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference
) -> None:
    """Redis silent for longer than timeout + resolve window: the step's outcome is unknown. Triton answers ABORTED
    (restart with START) and refuses the sequence until START; the SDK resumes from the stored position."""
    server = start_server(session_store=redis_server.url, session_store_timeout=0.2,
                          session_store_resolve_timeout=0.4)
    store = server.registry.store
    assert store is not None and redis_server.process is not None
    drivers, progress = start_drivers(server, reference, each=1)
    try:
        everyone_moves(drivers, progress, "traffic before the stall")
        redis_server.process.send_signal(signal.SIGSTOP)
        try:  # the fault lasts until a step has had an unknown outcome
            until(lambda: sum(store.unknown.values()) > 0, "an unknown outcome")
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        everyone_moves(drivers, progress, "traffic after the stall")
    finally:
        finish(drivers)
    assert store.resolved > 0
    seen = sum((d.seen for d in drivers), start=type(drivers[0].seen)())
    print("answers other than OK:", dict(seen))
    assert seen["ABORTED"] > 0 or store.unknown["t"] == 0  # Triton: the unknown outcome, restart with START
