"""The allocator knobs (`service/memory.py`): applied on glibc, and the periodic trim runs until cancelled."""

from __future__ import annotations

import asyncio
import gc

import pytest
from prometheus_client import CollectorRegistry

from service import memory
from service.settings import Settings

needs_glibc = pytest.mark.skipif(memory.glibc() is None, reason="the C library is not glibc")


@needs_glibc
def test_the_arena_limit_and_the_trim_are_applied_on_glibc() -> None:
    assert memory.limit_arenas(Settings().malloc_arena_max)  # the default, 2: mallopt accepts it
    memory.trim()  # whether pages came back depends on the heap; it must simply run


def test_no_limit_asked_is_not_applied() -> None:
    assert not memory.limit_arenas(0)


@needs_glibc
async def test_the_trim_repeats_until_cancelled() -> None:
    trims = 0
    third = asyncio.Event()

    def counted() -> None:
        nonlocal trims
        trims += 1
        if trims == 3:
            third.set()

    task = asyncio.get_running_loop().create_task(memory.trim_forever(0.001, counted))
    await third.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_trim_task_for_interval_zero() -> None:
    assert memory.start_trimming(0) is None


@needs_glibc
def test_the_heap_account_sees_an_allocation_and_its_release() -> None:
    registry = CollectorRegistry()
    registry.register(memory.MallocCollector())

    def mmapped() -> float:
        value = registry.get_sample_value("seqserve_malloc_bytes", {"kind": "mmapped"})
        assert value is not None
        return value

    before = mmapped()
    block = bytearray(64 << 20)  # far above malloc's mmap threshold: a chunk of its own
    assert mmapped() - before >= 64 << 20
    del block
    assert mmapped() - before < 64 << 20
    assert registry.get_sample_value("seqserve_malloc_bytes", {"kind": "in_use"}) > 0


def test_the_startup_heap_is_frozen_out_of_the_collectors_way() -> None:
    """What is alive when serving starts moves to the permanent generation (full collections no longer walk it),
    and the young generation waits for `YOUNG_THRESHOLD` allocations."""
    marker: list[object] = [object()]  # a container the collector tracks, alive across the freeze
    before = gc.get_threshold()
    try:
        frozen = memory.tune_collector()
        assert frozen > 0 and gc.get_freeze_count() == frozen
        assert not any(o is marker for o in gc.get_objects())
        assert gc.get_threshold() == (memory.YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert any(o is marker for o in gc.get_objects())
