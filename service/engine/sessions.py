"""A session: one sequence being served, its state in one slot of the model's state pool.

Steps of one session run in the order they were called, one at a time: `step` queues at once (no await before
`enqueue`) and the batcher takes each session's queued steps in queue order, one per batch. A chunk that fails
validation never reaches the pool, so the state is untouched. `generation` changes on reset and becomes
-1 on close or expiry, which tells the batcher not to write back a step that was in flight meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from service.engine.batching import Batcher, StepResult
from service.engine.done import when_done
from service.engine.errors import FailedPrecondition
from service.engine.inputs import Chunk
from service.engine.metrics import ModelMetrics
from service.engine.state.codec import decode
from service.engine.state.pool import StatePool
from service.engine.state.scripts import ANY
from service.engine.state.store import Stored, new_epoch
from service.engine.state.through import reset_through

if TYPE_CHECKING:
    from service.engine.model import ServedModel


class Session:
    __slots__ = (
        "_batcher", "_inflight", "_metrics", "_on_close", "_pool", "answers", "ending", "epoch", "expected", "expired",
        "generation", "id", "key", "model", "position", "slot", "writes",
    )

    def __init__(
        self,
        session_id: int,
        model: ServedModel,
        slot: int,
        pool: StatePool,
        batcher: Batcher,
        metrics: ModelMetrics,
        on_close: Callable[[Session], None],
        key: str | None = None,
    ) -> None:
        self.id = session_id
        self.model = model
        self.slot = slot
        self.generation = 0
        self.expired = False
        self._pool = pool
        self._batcher = batcher
        self._metrics = metrics
        self._on_close = on_close
        self._inflight = 0  # steps queued or running
        # in the session store (None: memory): the version stored, the epoch and count of writes that make the
        # next one, the steps applied, whether the step in flight ends the session (see state/through.py)
        self.key = key
        self.expected = ANY
        self.epoch = "" if key is None else new_epoch()
        self.writes = 0
        self.position = 0
        self.ending = False
        self.answers = False  # keep each step's answer in the store for a resuming client (native streams)

    @property
    def closed(self) -> bool:
        return self.generation < 0

    @property
    def busy(self) -> bool:
        """A step is queued or running."""
        return self._inflight > 0

    async def step(self, x: Chunk) -> dict[str, np.ndarray]:
        """Run one chunk `(time, features)`; outputs `{name: (time, size)}`; the state advances."""
        outputs, _ = await self.submit(x)
        return outputs

    def submit(self, x: Chunk, *, validated: bool = False) -> asyncio.Future[StepResult]:
        """Queue one chunk `(time, features)` at once (no task): a future of `(outputs, {})`.

        Validation errors and a closed session raise here, before anything is queued. `validated`: `x` is what the
        model's `validate_chunk` returned (the caller checked it first), so it is not checked twice.
        """
        start = time.perf_counter_ns()
        try:
            chunk = x if validated and isinstance(x, np.ndarray) else self.model.validate_chunk(x)
            self._check_open()
            (future,) = self._batcher.enqueue([(chunk, self, None)])
        except Exception:
            self._metrics.record_request(False, time.perf_counter_ns() - start, chunk=True)
            raise
        self._inflight += 1  # busy: the idle reaper leaves the session alone until the step is done
        when_done(future, functools.partial(self._stepped, start))  # runs before the caller's callbacks
        return future

    def _stepped(self, start: int, future: asyncio.Future[StepResult]) -> None:
        self._inflight -= 1
        self._pool.touch(self.slot, time.monotonic())
        ok = not future.cancelled() and future.exception() is None
        self._metrics.record_request(ok, time.perf_counter_ns() - start, chunk=True)

    def reset(self) -> None:
        """Back to the manifest's initial state (a step in flight still answers, but its state is dropped)."""
        self._check_open()
        self.generation += 1
        self._pool.reset(self.slot)

    async def reset_through(self) -> None:
        """`reset`, written to the session store first when the session has a key (a resumable native stream)."""
        self._check_open()
        if self.key is not None and self.model.store is not None:
            await reset_through(self.model.store, self._pool.pairs, self, self._pool.initial)
        self.reset()

    def restart(self) -> None:
        """A new life of the same key (Triton START): initial state, position 0, overwriting what is stored."""
        self.reset()
        self.expected, self.epoch, self.writes, self.position = ANY, new_epoch(), 0, 0

    def restore(self, stored: Stored) -> None:
        """Continue from the store's copy (this process did not hold it, or held a stale one)."""
        self._check_open()
        self.generation += 1
        self._pool.load(self.slot, decode(self._pool.pairs, stored.state))
        self.expected, self.position = stored.version, stored.position
        # an epoch of its own: two processes restoring the same version never write the same one (exactly once)
        self.epoch, self.writes = new_epoch(), int(stored.version.rpartition(":")[2])

    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current state, keyed by state input name (shape without the batch axis)."""
        self._check_open()
        return self._pool.read(self.slot)

    def close(self) -> None:
        """Free the slot at once; idempotent."""
        if not self.closed:
            self.generation = -1
            self._pool.free(self.slot)
            self._batcher.forget(self)
            self._on_close(self)

    def expire(self) -> None:
        """Idle eviction: close, and say so to a later step."""
        if not self.closed:
            self.expired = True
            self.close()

    def _check_open(self) -> None:
        if self.expired:
            timeout = self.model.session_idle_timeout
            raise FailedPrecondition(f"session expired after {timeout:g} s without a step; open a new one")
        if self.closed:
            raise FailedPrecondition(self.model.ended_reason or "the session is closed")
