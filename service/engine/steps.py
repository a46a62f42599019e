"""The queue of one model's batcher: admission bounds, and which queued steps form the next batch.

- at most `max_queued` steps; stateless rows (no session) may hold at most half of it, so they never lock the
  streams out, and after a batch that held any, a waiting stream step leads the next batch (no starvation);
- a batch is the oldest live step and up to `max_batch - 1` more of the same chunk length, at most one step per
  session, never a step of a session that has one in flight (`busy`): a session's steps run in queue order.

Event loop thread only.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.engine.errors import FailedPrecondition, ResourceExhausted
from service.engine.runtime import StateValue, to_host
from service.engine.state import batch as batch_state
from service.engine.state.batch import StateOwner
from service.engine.state.pool import Arrays, StatePool

StepResult = tuple[Arrays, Arrays]  # (outputs {name: (T, size)}, new state rows {name: shape}; empty for sessions)
Row = tuple[np.ndarray, StateOwner | None, Arrays | None]  # (x (T, F), owner, explicit state rows)


@dataclass(eq=False, slots=True)
class Step:
    x: np.ndarray  # (T, F)
    owner: StateOwner | None  # state from the owner's pool slot, written back after the run
    state: Arrays | None  # or explicit state rows {name: shape} (stateless whole-sequence requests)
    future: asyncio.Future[StepResult]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    generation: int = 0


class StepQueue:
    def __init__(self, max_batch: int, max_queued: int) -> None:
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._max_stateless = max(1, max_queued // 2)
        self._stateless = 0  # stateless rows queued
        self._streams_turn = False
        self._queue: deque[Step] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def oldest_ns(self) -> int:
        return self._queue[0].enqueued_ns

    def oldest_steps(self) -> int:
        """The chunk length of the oldest queued step."""
        return self._queue[0].x.shape[0]

    def admit(self, rows: Sequence[Row], now: int) -> list[Step]:
        """Queue `rows`, all or none (`ResourceExhausted` beyond the bounds)."""
        if len(self._queue) + len(rows) > self._max_queued:
            raise ResourceExhausted(f"the model's queue is full ({self._max_queued} steps)")
        stateless = sum(1 for row in rows if row[1] is None)
        if stateless and self._stateless + stateless > self._max_stateless:
            raise ResourceExhausted(f"the model's queue for whole-sequence requests is full ({self._max_stateless} "
                                    "sequences; the rest is kept for streams)")
        self._stateless += stateless
        loop = asyncio.get_running_loop()
        steps = [Step(x, owner, state, loop.create_future(), now) for x, owner, state in rows]
        self._queue.extend(steps)
        return steps

    def drain(self) -> list[Step]:
        steps = list(self._queue)
        self._queue.clear()
        return steps

    @property
    def stateless(self) -> int:
        """Rows without a session queued."""
        return self._stateless

    def take(self, busy: set[int], stateless_only: bool = False) -> list[Step]:
        """The oldest live step and up to `max_batch - 1` more of the same length from other sessions, none of a
        session in `busy` (on the streams' turn the oldest stream step leads; `stateless_only`: rows without a
        session only)."""
        lead = self._lead(busy, stateless_only)
        if lead is None:
            if not stateless_only:  # cancelled steps must not keep the queue looking full (a shutdown waits on it)
                self._queue = deque(step for step in self._queue if not step.future.done())
                self._stateless = sum(1 for step in self._queue if step.owner is None)
            return []
        length = lead.x.shape[0]
        batch: list[Step] = []
        owners: set[int] = set()
        rest: deque[Step] = deque()
        for step in self._queue:
            if step.future.done():  # cancelled by its caller: dropped, its state untouched
                continue
            owner = step.owner
            if owner is not None:
                if stateless_only or owner.id in owners or owner.id in busy:  # its older step goes first
                    owners.add(owner.id)
                    rest.append(step)
                    continue
                owners.add(owner.id)
            if len(batch) >= self._max_batch or step.x.shape[0] != length:
                rest.append(step)
                continue
            if owner is not None:
                if owner.generation < 0:
                    step.future.set_exception(FailedPrecondition("the session is closed"))
                    continue
                step.generation = owner.generation
            batch.append(step)
        self._queue = rest
        if self._stateless:  # (the streaming-only path pays nothing for this)
            self._stateless = sum(1 for step in rest if step.owner is None)
            self._streams_turn = any(step.owner is None for step in batch)
        else:
            self._streams_turn = False
        return batch

    def _lead(self, busy: set[int], stateless_only: bool) -> Step | None:
        live = (s for s in self._queue if not s.future.done() and (s.owner is None or s.owner.id not in busy))
        if stateless_only:
            return next((s for s in live if s.owner is None), None)
        first = next(live, None)
        if self._streams_turn and first is not None and first.owner is None:
            return next((s for s in live if s.owner is not None), first)
        return first


def fail(steps: list[Step], exc: Exception, cause: BaseException | None = None) -> None:
    """Every unresolved future of `steps` fails with its own copy of `exc`."""
    for step in steps:
        if not step.future.done():
            err = copy.copy(exc)  # one exception object per waiter: each gets its own traceback
            err.__cause__ = cause
            step.future.set_exception(err)


def advancing(batch: list[Step], refused: dict[int, Exception] | None = None) -> list[StateOwner | None]:
    """The owner of each row whose new state is written back (live, unchanged, not cancelled, not refused)."""
    return [
        s.owner if s.owner is not None and s.owner.generation == s.generation and not s.future.cancelled()
        and not (refused and i in refused) else None
        for i, s in enumerate(batch)
    ]


def answer_stateless(batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue]) -> None:
    """Answer the rows without a session at once: their results need no store."""
    rows = [i for i, s in enumerate(batch) if s.owner is None and not s.future.done()]
    if rows:
        host = {name: to_host(v) for name, v in new_state.items()}
        for i in rows:
            batch[i].future.set_result(({n: v[i] for n, v in outputs.items()}, {n: v[i] for n, v in host.items()}))


def finish(pool: StatePool, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue],
           refused: dict[int, Exception] | None, served: Callable[[int, int], None]) -> None:
    """Write back the new state of live unchanged sessions; resolve the futures (refused rows with why); tell
    `served(owner id, now)` of every session row."""
    host = batch_state.settle(pool, advancing(batch, refused), new_state, host=any(s.owner is None for s in batch))
    now = time.perf_counter_ns()
    for i, step in enumerate(batch):
        if step.owner is not None:
            served(step.owner.id, now)
        if refused and i in refused:
            fail([step], refused[i])
        elif not step.future.done():
            rows = {} if step.owner is not None else {name: v[i] for name, v in host.items()}
            step.future.set_result(({name: v[i] for name, v in outputs.items()}, rows))
