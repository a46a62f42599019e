"""The batcher of one model: gathers ready steps from many sessions into model runs (what is queued and taken:
service/engine/steps.py; one step per session per batch, equal chunk lengths, at most `max_batch_size`).

- Natural batching when busy: steps that queued while a run was in flight form the next batch at once; only steps
  reaching an idle model wait for company (service/engine/company.py, `max_queue_delay_us`). A step reaching an
  idle model that expects nobody else runs inside `enqueue` when it runs inline (its future is done on return: no
  batcher wake-up, no task switch; the cost of a batch of one, e.g. one stream). When an executor run ends, the
  next batch starts before its answers go out (`_start_next`): the model does not wait for the transport.
- Runs go to worker threads (onnxruntime releases the GIL) while the loop keeps reading and answering; a batch runs
  on the loop only when predicted cheaper than serving one message (`InlinePolicy`; executor batches on the live
  thread count, `LiveThreads`, service/engine/tuning.py). Up to `max_runs` runs in flight (a further one only for
  half a full batch or more), at most one step per session in flight, so each session's order holds.
- Every future is resolved on every path: success, model error, cancellation (skipped), close (drained).
- With a session store (one run in flight): stateless rows are answered once the model ran; while a batch's write
  is in flight only whole-sequence batches run, and the sessions wait for their own writes.

Queue, futures and the state pool are only touched on the event loop thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor

from service.engine.company import Company
from service.engine.errors import Unavailable
from service.engine.metrics import ModelMetrics
from service.engine.runs import batch_inputs, commit, refuse, timed_run
from service.engine.runtime import Runtime, StateValue
from service.engine.state.batch import StateOwner
from service.engine.state.pool import Arrays, StatePool
from service.engine.state.store import RedisStore
from service.engine.steps import Row, Step, StepQueue, StepResult, answer_stateless, fail, finish
from service.engine.tuning import InlinePolicy, LiveThreads

LOOP_SAMPLE_MESSAGES = 16  # the loop's CPU per message is sampled over at least this many messages

__all__ = ["Arrays", "Batcher", "Row", "StepResult"]


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
        threads: LiveThreads | None = None,
        max_runs: int = 1,
    ) -> None:
        self._runtime = runtime
        self._input_name = input_name
        self._pool = pool
        self._executor = executor
        self._metrics = metrics
        self._max_batch = max_batch_size
        self._delay_ns = max_queue_delay_us * 1000
        self._store = store  # None (memory): the pool is the truth, nothing is written through
        self.inline = InlinePolicy(0) if inline is None else inline  # default: every run in the executor
        self._queue = StepQueue(max_batch_size, max_queued)
        self._company = Company(self._delay_ns)  # the sessions a batch waits for, and for how long
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.threads = threads  # None: every run on `runtime`
        self._max_runs = max_runs if store is None else 1  # a store's write keeps the sessions of one batch
        self._committing: asyncio.Task[None] | None = None  # a batch's write to the session store, in flight
        self._runs: set[asyncio.Task[None]] = set()  # executor runs in flight
        self._busy: set[int] = set()  # owners with a step in flight
        self._idle_since = 0  # when the last run ended (perf_counter_ns); steps queued after it wait for company
        self._messages = 0  # steps queued since the loop's CPU was last sampled
        self._loop_cpu_ns = time.thread_time_ns()
        self._inline_cpu_ns = 0  # of that, spent in inline runs

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def use_runtime(self, runtime: Runtime) -> None:
        """Run the next batches on `runtime` (a batch in flight finishes on the one it started with): how a
        draining version's live sessions continue on a newer version's weights (service/engine/control.py)."""
        self._runtime = runtime

    @property
    def queued(self) -> int:
        """Steps waiting for a batch (not counting the batches in flight)."""
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
        now = time.perf_counter_ns()
        steps = self._queue.admit(rows, now)
        for step in steps:
            self._company.arrived(None if step.owner is None else step.owner.id, now)
        self._messages += len(rows)
        if self._idle_now(len(steps), now):  # run it here and now: no batcher wake-up, the futures are done
            self._dispatch_inline(self._queue.take(self._busy))
        if self._queue:  # (what did not run at once: the batcher takes it)
            self._wake.set()
        return [step.future for step in steps]

    def _idle_now(self, queued: int, now: int) -> bool:
        """Whether the steps just queued form the next batch at once and it runs inline: nothing in flight or
        queued before them, nobody else expected, and a run this short is cheaper on the loop than a hop."""
        return (not self._runs and self._committing is None and self._store is None and len(self._queue) == queued
                and queued <= self._max_batch and self._company.deadline(now, now) is None
                and self.inline.inline(queued * self._queue.oldest_steps()))

    async def close(self) -> None:
        """Stop admitting steps, run what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        try:
            while self._queue or self._runs or self._committing is not None or not self._closing:
                if self._committing is not None:
                    if self._committing.done():
                        self._committing = None
                    elif self._queue.stateless and (stateless := self._queue.take(self._busy, stateless_only=True)):
                        self._dispatch(stateless)
                    else:
                        await self._sleep()  # woken by enqueue and by the write's end
                    continue
                if not self._queue or len(self._runs) >= self._max_runs:
                    await self._sleep()
                    continue
                if not self._runs and self._queue.oldest_ns() >= self._idle_since:
                    await self._wait_for_company()  # idle: the sessions just served may send their next step
                if self._runs and len(self._queue) < self._max_batch // 2:
                    await self._sleep()  # a further run in flight only for at least half a full batch
                    continue
                batch = self._queue.take(self._busy)
                if not batch:
                    if self._queue:  # every queued step waits for its session's step in flight: woken as it ends
                        await self._sleep()
                    continue  # or take() dropped cancelled steps and emptied the queue: a close may be waiting
                self._dispatch(batch)
        finally:  # also when the loop dies of a bug: nothing may wait for it forever
            self._closing = True
            fail(self._queue.drain(), Unavailable("the model is shutting down"))

    async def _sleep(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    def _dispatch(self, batch: list[Step]) -> None:
        """Run `batch` inline (now) or in the executor (a task; the loop goes on reading and batching)."""
        steps = len(batch) * batch[0].x.shape[0]
        if self.inline.inline(steps):
            self._dispatch_inline(batch)
            return
        self._sample_loop_cost()
        threads = self.threads.pick(len(batch)) if self.threads is not None else None
        owners = [s.owner.id for s in batch if s.owner is not None]
        self._busy.update(owners)
        task = asyncio.get_running_loop().create_task(self._run(batch, threads), name="model-run")
        self._runs.add(task)

        def ran(_: asyncio.Task[None]) -> None:
            self._runs.discard(task)
            self._busy.difference_update(owners)
            if not self._runs:
                self._idle_since = time.perf_counter_ns()
            self._wake.set()

        task.add_done_callback(ran)

    def _dispatch_inline(self, batch: list[Step]) -> None:
        """Run `batch` on the loop, now (its futures are resolved when this returns)."""
        if not batch:
            return
        self._sample_loop_cost()
        began = time.thread_time_ns()
        self._run_inline(batch)
        self._inline_cpu_ns += time.thread_time_ns() - began
        self._idle_since = time.perf_counter_ns()

    def _sample_loop_cost(self) -> None:
        """The loop thread's CPU per message queued since the last sample, inline runs left out."""
        if self._messages < LOOP_SAMPLE_MESSAGES:
            return
        now = time.thread_time_ns()
        self.inline.observe_loop((now - self._loop_cpu_ns - self._inline_cpu_ns) / self._messages)
        self._loop_cpu_ns, self._inline_cpu_ns, self._messages = now, 0, 0

    async def _wait_for_company(self) -> None:
        """Until the expected sessions are back, the batch is full, or its patience ends (a loop timer that sets the
        wake event: no task per wait, as `asyncio.wait_for` would make)."""
        loop = asyncio.get_running_loop()
        while len(self._queue) < self._max_batch and not self._closing:
            now = time.perf_counter_ns()
            deadline = self._company.deadline(self._queue.oldest_ns(), now)
            if deadline is None or deadline <= now:
                return
            timer = loop.call_later((deadline - now) / 1e9, self._wake.set)
            try:
                await self._sleep()
            finally:
                timer.cancel()

    def _run_inline(self, batch: list[Step]) -> None:
        """One model run on the loop, on `runtime` (or the live threads' 1-thread copy)."""
        start = time.perf_counter_ns()
        try:
            x, state = batch_inputs(self._pool, batch, self._max_runs > 1)
            ready = time.perf_counter_ns()
            outputs, new_state, run_ns = timed_run(self._runtime_for(None), self._input_name, x, state)
            self._settle(batch, outputs, new_state, None, run_ns, (start, ready, time.perf_counter_ns()))
        except Exception as exc:
            refuse(batch, exc)

    async def _run(self, batch: list[Step], threads: int | None) -> None:
        """One model run in the executor, on `threads` intra-op threads (None: `runtime`)."""
        start = time.perf_counter_ns()
        try:
            x, state = batch_inputs(self._pool, batch, self._max_runs > 1)
            ready = time.perf_counter_ns()
            outputs, new_state, run_ns = await asyncio.get_running_loop().run_in_executor(
                self._executor, timed_run, self._runtime_for(threads), self._input_name, x, state
            )
            ran = time.perf_counter_ns()
            self._start_next()
            self._settle(batch, outputs, new_state, threads, run_ns, (start, ready, ran))
        except asyncio.CancelledError:
            fail(batch, Unavailable("the model is shutting down"))
            raise
        except Exception as exc:
            refuse(batch, exc)

    def _start_next(self) -> None:
        """A run just ended (its sessions still busy): start the next batch of what queued meanwhile before this
        one's answers go out. Resolving its futures wakes every one of its callers, and the batcher's own wake-up
        would come after all of them: the model would wait for the transport (one batch of answers built and
        written) between any two runs. Not with a session store, whose write of this batch comes first."""
        self._runs.discard(asyncio.current_task())  # type: ignore[arg-type]
        if self._store is not None or self._closing or not self._queue or len(self._runs) >= self._max_runs:
            return
        if self._runs and len(self._queue) < self._max_batch // 2:
            return  # a further run in flight only for at least half a full batch
        if batch := self._queue.take(self._busy):
            try:
                self._dispatch(batch)
            except Exception as exc:  # the batch just run still gets its answers; this one is refused
                refuse(batch, exc)

    def _runtime_for(self, threads: int | None) -> Runtime:
        live = self.threads
        return self._runtime if live is None else live.runtimes[1 if threads is None else threads]

    def _settle(self, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue], threads: int | None,
                run_ns: int, times: tuple[int, int, int]) -> None:
        """After a run: learn its cost, answer (after the session store's write, with one), record the batch."""
        start, ready, ran = times
        steps = len(batch) * batch[0].x.shape[0]
        live = self.threads
        if live is not None and threads is not None:
            live.observe(threads, len(batch), steps, run_ns)
        if live is None or threads in (None, 1):
            self.inline.observe(steps, run_ns)  # what an inline run costs
        if self._store is not None and any(s.owner is not None for s in batch):
            answer_stateless(batch, outputs, new_state)
            self._committing = asyncio.get_running_loop().create_task(
                self._commit(batch, outputs, new_state, (start, ready - start, ran - ready)))
            self._committing.add_done_callback(lambda _: self._wake.set())
            return
        self._finish(batch, outputs, new_state)
        self._metrics.record_batch([start - s.enqueued_ns for s in batch], ready - start, ran - ready,
                                   time.perf_counter_ns() - ran)

    async def _commit(self, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue],
                      timing: tuple[int, int, int]) -> None:
        """The batch's write to the session store, then its answers and its record."""
        if await commit(self._store, self._pool, batch, outputs, new_state, self._finish):  # type: ignore[arg-type]
            start, input_ns, infer_ns = timing
            self._metrics.record_batch([start - s.enqueued_ns for s in batch], input_ns, infer_ns,
                                       time.perf_counter_ns() - start - input_ns - infer_ns)

    def _finish(self, batch: list[Step], outputs: Arrays, new_state: dict[str, StateValue],
                refused: dict[int, Exception] | None = None) -> None:
        """Write back the new state of live unchanged sessions; resolve the futures (refused rows with why)."""
        finish(self._pool, batch, outputs, new_state, refused, self._company.served)
