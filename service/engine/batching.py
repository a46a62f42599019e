"""The batcher of one model: gathers ready steps from many sessions into one model run.

- at most one step per session per batch (a session's steps in queue order), at most `max_batch_size` steps,
  all of the same chunk length (so a batched run equals the unbatched ones; other lengths go in the next
  batches, oldest first);
- a step that arrives while no session is expected back runs at once; after a batch, the batcher waits up
  to `max_queue_delay_us` (from the oldest queued step) for the sessions it just served to send their next step;
- the model runs off the event loop in the shared, bounded executor, or on the loop itself when its predicted
  cost is below the measured executor hop (`InlinePolicy`, service/engine/tuning.py; `inline_run_max_us` >= 0
  is a fixed limit instead); one batch in flight per model;
- every future is resolved on every path: success, model error, cancellation (skipped), close (drained);
- with a session store, stateless rows are answered as soon as the model ran, and while a batch's write to the
  store is in flight only whole-sequence (stateless) batches run: no store round trip holds them back, and the
  sessions wait for their own writes as before.

Queue, futures and the state pool are only touched on the event loop thread.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from service.engine.company import Company
from service.engine.errors import FailedPrecondition, ModelRunFailed, ResourceExhausted, Unavailable
from service.engine.metrics import ModelMetrics
from service.engine.runtime import Runtime, StateValue, to_host
from service.engine.state import batch as batch_state
from service.engine.state.batch import StateOwner
from service.engine.state.pool import Arrays, StatePool
from service.engine.state.store import RedisStore
from service.engine.state.through import write_through
from service.engine.tuning import InlinePolicy

log = logging.getLogger(__name__)

StepResult = tuple[Arrays, Arrays]  # (outputs {name: (T, size)}, new state rows {name: shape}; empty for sessions)
Row = tuple[np.ndarray, StateOwner | None, Arrays | None]  # (x (T, F), owner, explicit state rows)


@dataclass(eq=False)
class Step:
    x: np.ndarray  # (T, F)
    owner: StateOwner | None  # state from the owner's pool slot, written back after the run
    state: Arrays | None  # or explicit state rows {name: shape} (stateless whole-sequence requests)
    future: asyncio.Future[StepResult]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    generation: int = 0


class Batcher:
    def __init__(
        self,
        runtime: Runtime,
        input_name: str,
        pool: StatePool,
        executor: Executor,
        metrics: ModelMetrics,
        max_batch_size: int,
        max_queue_delay_us: int,
        max_queued: int,
        inline: InlinePolicy | None = None,
        store: RedisStore | None = None,
    ) -> None:
        self._runtime = runtime
        self._input_name = input_name
        self._pool = pool
        self._executor = executor
        self._metrics = metrics
        self._max_batch = max_batch_size
        self._delay_ns = max_queue_delay_us * 1000
        self._max_queued = max_queued
        self._store = store  # None (memory): the pool is the truth, nothing is written through
        # Stateless rows (no session) may hold at most half the queue, so they never lock the streams out, and
        # after a batch that held any, a waiting stream step leads the next batch (streams are not starved).
        self._max_stateless = max(1, max_queued // 2)
        self._stateless = 0  # stateless rows queued
        self._streams_turn = False
        self.inline = InlinePolicy(0) if inline is None else inline  # default: every run in the executor
        self._queue: deque[Step] = deque()
        self._company = Company(self._delay_ns)  # the sessions a batch waits for, and for how long
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None  # a batch's write to the session store, in flight

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def use_runtime(self, runtime: Runtime) -> None:
        """Run the next batches on `runtime` (a batch in flight finishes on the one it started with): how a
        draining version's live sessions continue on a newer version's weights (service/engine/control.py)."""
        self._runtime = runtime

    @property
    def queued(self) -> int:
        """Steps waiting for a batch (not counting the batch in flight)."""
        return len(self._queue)

    def forget(self, owner: StateOwner) -> None:
        """A closed session will send no more steps: do not wait for it."""
        if self._company.forget(owner.id):
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    def enqueue(self, rows: Sequence[Row]) -> list[asyncio.Future[StepResult]]:
        """Queue `(x, owner, explicit state)` rows, all or none; each future resolves to that row's result."""
        if self._closing:
            raise Unavailable("the model is shutting down")
        if len(self._queue) + len(rows) > self._max_queued:
            raise ResourceExhausted(f"the model's queue is full ({self._max_queued} steps)")
        stateless = sum(1 for row in rows if row[1] is None)
        if stateless and self._stateless + stateless > self._max_stateless:
            raise ResourceExhausted(f"the model's queue for whole-sequence requests is full ({self._max_stateless} "
                                    "sequences; the rest is kept for streams)")
        self._stateless += stateless
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[StepResult]] = []
        now = time.perf_counter_ns()
        for x, owner, state in rows:
            step = Step(x, owner, state, loop.create_future(), now)
            self._company.arrived(None if owner is None else owner.id, now)
            self._queue.append(step)
            futures.append(step.future)
        self._wake.set()
        return futures

    async def close(self) -> None:
        """Stop admitting steps, run what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        try:
            while self._queue or not self._closing or self._committing is not None:
                if self._committing is not None:
                    if self._committing.done():
                        self._committing = None
                    elif self._stateless and (stateless := self._take_batch(stateless_only=True)):
                        await self._run(stateless)
                    else:
                        self._wake.clear()  # set by enqueue and by the write's end
                        await self._wake.wait()
                    continue
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._wait_for_company()
                batch = self._take_batch()
                if batch:
                    await self._run(batch)
        finally:  # also when the loop dies of a bug: nothing may wait for it forever
            self._closing = True
            self._fail(list(self._queue), Unavailable("the model is shutting down"))
            self._queue.clear()

    async def _wait_for_company(self) -> None:
        while len(self._queue) < self._max_batch and not self._closing:
            now = time.perf_counter_ns()
            deadline = self._company.deadline(self._queue[0].enqueued_ns, now)
            if deadline is None or deadline <= now:
                return
            remaining = deadline - now
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining / 1e9)
            except TimeoutError:
                return

    def _take_batch(self, stateless_only: bool = False) -> list[Step]:
        """The oldest live step and up to `max_batch_size - 1` more of the same length from other sessions (on the
        streams' turn, the oldest stream step leads; `stateless_only`: rows without a session only)."""
        lead = self._lead(stateless_only)
        if lead is None:
            return []
        length = lead.x.shape[0]
        batch: list[Step] = []
        owners: set[int] = set()
        rest: deque[Step] = deque()
        for step in self._queue:
            if step.future.done():  # cancelled by its caller: dropped, its state untouched
                continue
            owner = step.owner
            if owner is not None and stateless_only:
                rest.append(step)
                continue
            if owner is not None:
                if owner.id in owners:  # an older step of the same session goes first (taken now or deferred)
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

    def _lead(self, stateless_only: bool = False) -> Step | None:
        if stateless_only:
            return next((s for s in self._queue if s.owner is None and not s.future.done()), None)
        first = self._queue[0]
        if self._streams_turn and first.owner is None:
            for step in self._queue:
                if step.owner is not None and not step.future.done():
                    return step
        return first

    async def _run(self, batch: list[Step]) -> None:
        start = time.perf_counter_ns()
        try:
            state = batch_state.gather(self._pool, [(s.owner, s.state) for s in batch])
            x = np.stack([s.x for s in batch])  # (B, T, F)
            ready = time.perf_counter_ns()
            steps = x.shape[0] * x.shape[1]
            hop_ns: int | None = None
            if self.inline.inline(steps):
                outputs, new_state, run_ns = self._timed_run(x, state)
            else:
                outputs, new_state, run_ns = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._timed_run, x, state
                )
                hop_ns = time.perf_counter_ns() - ready - run_ns
            ran = time.perf_counter_ns()
            self.inline.observe(steps, run_ns, hop_ns)
            if self._store is not None and any(s.owner is not None for s in batch):
                self._answer_stateless(batch, outputs, new_state)
                self._committing = asyncio.get_running_loop().create_task(
                    self._commit(batch, outputs, new_state, (start, ready - start, ran - ready)))
                self._committing.add_done_callback(lambda _: self._wake.set())
                return
            self._finish(batch, outputs, new_state)
        except asyncio.CancelledError:
            self._fail(batch, Unavailable("the model is shutting down"))
            raise
        except Exception as exc:
            log.exception("model run failed (batch of %d); every step of it is refused, no state changed", len(batch))
            self._fail(batch, ModelRunFailed(), cause=exc)
            return
        done = time.perf_counter_ns()
        self._record(batch, start, ready - start, ran - ready, done - ran)

    def _timed_run(self, x: np.ndarray, state: dict[str, StateValue]) -> tuple[Arrays, dict[str, StateValue], int]:
        """The model run and its own duration (without the executor hop), on whichever thread calls it."""
        start = time.perf_counter_ns()
        outputs, new_state = self._runtime.run({self._input_name: x}, state)
        return outputs, new_state, time.perf_counter_ns() - start

    async def _commit(self, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue],
                      timing: tuple[int, int, int]) -> None:
        """One round trip to the session store for the whole batch, then its answers (refused rows with why)."""
        try:
            advancing = self._advancing(batch)
            refused = await write_through(self._store, self._pool.pairs, advancing, new_state, outputs)  # type: ignore
            self._finish(batch, outputs, new_state, refused)
        except asyncio.CancelledError:
            self._fail(batch, Unavailable("the model is shutting down"))
            raise
        except Exception as exc:
            log.exception("write-through failed (batch of %d); every step of it is refused", len(batch))
            self._fail(batch, ModelRunFailed(), cause=exc)
            return
        start, input_ns, infer_ns = timing
        self._record(batch, start, input_ns, infer_ns, time.perf_counter_ns() - start - input_ns - infer_ns)

    def _answer_stateless(self, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue]) -> None:
        """Answer the rows without a session at once: their results need no store."""
        rows = [i for i, s in enumerate(batch) if s.owner is None and not s.future.done()]
        if rows:
            host = {name: to_host(v) for name, v in new_state.items()}
            for i in rows:
                batch[i].future.set_result(({n: v[i] for n, v in outputs.items()}, {n: v[i] for n, v in host.items()}))

    @staticmethod
    def _advancing(batch: list[Step], refused: dict[int, Exception] | None = None) -> list[StateOwner | None]:
        """The owner of each row whose new state is written back (live, unchanged, not cancelled, not refused)."""
        return [
            s.owner if s.owner is not None and s.owner.generation == s.generation and not s.future.cancelled()
            and not (refused and i in refused) else None
            for i, s in enumerate(batch)
        ]

    def _finish(
        self, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue],
        refused: dict[int, Exception] | None = None,
    ) -> None:
        """Write back the new state of live unchanged sessions; resolve the futures (refused rows with why)."""
        host = batch_state.settle(
            self._pool, self._advancing(batch, refused), new_state, host=any(s.owner is None for s in batch)
        )
        now = time.perf_counter_ns()
        for i, step in enumerate(batch):
            if step.owner is not None:
                self._company.served(step.owner.id, now)
            if refused and i in refused:
                self._fail([step], refused[i])
            elif not step.future.done():
                rows = {} if step.owner is not None else {name: v[i] for name, v in host.items()}
                step.future.set_result(({name: v[i] for name, v in outputs.items()}, rows))

    def _record(self, batch: list[Step], start: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        self._metrics.record_batch([start - s.enqueued_ns for s in batch], input_ns, infer_ns, output_ns)

    @staticmethod
    def _fail(steps: list[Step], exc: Exception, cause: BaseException | None = None) -> None:
        for step in steps:
            if not step.future.done():
                err = copy.copy(exc)  # one exception object per waiter: each gets its own traceback
                err.__cause__ = cause
                step.future.set_exception(err)
