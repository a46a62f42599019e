"""Write-through in flight: with a session store, a batch's write overlaps the next batch's run.

A batch's answers wait for its write to the store (an acknowledged chunk is never lost), and the batcher waits
for nobody meanwhile: it runs the next batch from the other sessions while the write is in flight.

- A session whose write is in flight is *held*: none of its steps runs until that write has answered (its state
  is not settled until then, and a refused write leaves it unchanged).
- At most `DEPTH` writes are in flight; the batcher waits for the oldest before it starts another.
- Streaming clients send their next chunk once they have the answer, so without help every session would be in
  one batch and there would be nothing to overlap with. When no write is in flight, a batch therefore takes at
  most half of the queued steps (`share`): two groups form, and each one's run overlaps the other's write. With
  a write in flight, a batch takes every step it may.

Everything runs on the event loop thread; the memory store never comes here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any

DEPTH = 2  # writes in flight at once (the store answers them in order, on one connection)
SPLIT_MIN = 4  # the smallest group that is split off: a few steps are not worth a second run


class Writes:
    def __init__(self, released: Callable[[], None]) -> None:
        self.held: set[int] = set()  # owner ids whose write is in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._released = released  # called when a write is done and its sessions are no longer held

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def share(self, queued: int, max_batch: int) -> int:
        """The most steps the next batch may take."""
        if self._tasks or queued < 2 * SPLIT_MIN:
            return max_batch
        return min(max_batch, (queued + 1) // 2)

    async def start(self, owners: Collection[int], write: Coroutine[Any, Any, None]) -> None:
        """Run `write` (which answers its batch) with `owners` held until it is done; returns once the write is in
        flight and there is room for another."""
        self.held.update(owners)
        task = asyncio.get_running_loop().create_task(write, name="write-through")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(done, owners))
        while len(self._tasks) >= DEPTH:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    async def drain(self) -> None:
        """Wait for every write in flight (their batches are answered by then)."""
        while self._tasks:
            await asyncio.wait(self._tasks)

    def _done(self, task: asyncio.Task[None], owners: Collection[int]) -> None:
        self._tasks.discard(task)
        self.held.difference_update(owners)
        self._released()
