"""Stateless batches cannot starve streams: they hold at most half the model's queue (the rest is kept for
streams), and after a batch that held any, the oldest waiting stream step leads the next batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.engine.errors import ResourceExhausted
from tests.service.engine.test_batching import MANIFEST, make, owners
from tests.service.helpers import sequence


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def initial() -> dict[str, np.ndarray]:
    return {p.input: np.full(p.shape, p.initial, p.dtype) for p in MANIFEST.state}


async def test_a_stream_step_runs_right_after_the_first_stateless_batch(executor: ThreadPoolExecutor) -> None:
    made = make(executor, max_batch_size=4, max_queued=64)
    (stream,) = owners(made.pool, 1)
    done: list[str] = []
    whole = sequence(MANIFEST, 12, 5)
    for i, future in enumerate(made.batcher.enqueue([(row, None, initial()) for row in whole])):
        future.add_done_callback(lambda _, i=i: done.append(f"stateless {i}"))
    (step,) = made.batcher.enqueue([(sequence(MANIFEST, 1, 3)[0], stream, None)])
    step.add_done_callback(lambda _: done.append("stream"))
    await step
    await made.batcher.close()
    assert done.index("stream") == 4  # after one batch of 4 stateless rows, not after all 12


async def test_stateless_rows_hold_at_most_half_the_queue(executor: ThreadPoolExecutor) -> None:
    made = make(executor, max_batch_size=4, max_queued=8)
    try:
        rows = [(row, None, initial()) for row in sequence(MANIFEST, 5, 2)]
        with pytest.raises(ResourceExhausted, match="kept for streams"):
            made.batcher.enqueue(rows)
        held = made.batcher.enqueue(rows[:4])
        streams = owners(made.pool, 4)
        steps = made.batcher.enqueue([(sequence(MANIFEST, 1, 2, seed=i)[0], o, None) for i, o in enumerate(streams)])
        await asyncio.gather(*held, *steps)
    finally:
        await made.batcher.close()
