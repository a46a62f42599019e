"""A served model version: manifest, runtime, state pool, batcher and its open sessions."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from modelrepo import Manifest
from service.engine.batching import Arrays, Batcher, Row
from service.engine.errors import FailedPrecondition, InvalidInput, Unavailable, clip
from service.engine.inputs import Chunk, Inputs, PackedRuntime
from service.engine.metrics import ModelMetrics, ModelStats
from service.engine.runtime import Runtime
from service.engine.sessions import Session
from service.engine.state.device import device_store
from service.engine.state.pool import HostStore, StatePool
from service.engine.state.store import RedisStore
from service.engine.tuning import InlinePolicy, LiveThreads, Tuning, runs_in_flight
from service.settings import Settings


class ServedModel:
    def __init__(
        self,
        manifest: Manifest,
        runtime: Runtime,
        settings: Settings,
        metrics: ModelMetrics,
        executor: Executor,
        tuning: Tuning | None = None,
        store: RedisStore | None = None,
    ) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.provider = runtime.provider
        self.session_idle_timeout = settings.session_idle_timeout
        self.draining = False
        self.ended_reason: str | None = None  # why every session was ended (unloaded, drain timeout): told to them
        self.migrated_to: int | None = None  # the version whose weights its live sessions continue on (migration)
        self.tuning = tuning  # the load-time decisions (None: not tuned); the live one is `self.inline`
        self.state_input_of = {pair.output: pair.input for pair in manifest.state}  # e.g. "hn" -> "h0": askable
        self._reject_nonfinite = settings.reject_nonfinite
        self._max_request_batch = settings.max_request_batch
        self._max_request_steps = settings.max_request_steps
        self._max_run_steps = settings.max_run_steps
        self._inputs = Inputs(manifest, settings.reject_nonfinite)  # built once: `_check` runs on every chunk
        if self._inputs.packed:  # several data inputs travel packed through the batcher (service/engine/inputs.py)
            runtime = PackedRuntime(runtime, self._inputs)  # type: ignore[assignment]
        self._metrics = metrics
        self.store = store  # the session store (None: memory, the pool is the truth)
        pool_store = device_store(runtime.provider) if runtime.io_binding else HostStore  # where the model runs
        self._pool = StatePool(manifest.state, settings.max_sessions, store=pool_store)
        self._batcher = Batcher(
            runtime,
            manifest.input.name,
            self._pool,
            executor,
            metrics,
            max_batch_size=settings.max_batch_size,
            max_queue_delay_us=settings.max_queue_delay_us,
            max_queued=settings.max_sessions,
            inline=InlinePolicy(settings.inline_run_max_us, None if tuning is None else tuning.ns_per_step),
            store=store,
            threads=_live_threads(tuning, f"{self.name} version {self.version}", self._inputs),
            max_runs=runs_in_flight(settings.max_runs_in_flight, tuning),
        )
        self._sessions: dict[int, Session] = {}  # by slot
        self._on_close: dict[int, Callable[[], None]] = {}  # by slot: what the opener wants done at close
        self._no_sessions = asyncio.Event()  # set exactly when `_sessions` is empty
        self._no_sessions.set()
        self._ids = itertools.count(1)

    def start(self) -> None:
        self._batcher.start()

    @property
    def inline(self) -> InlinePolicy:
        """The batcher's live inline-versus-executor policy and its measured costs."""
        return self._batcher.inline

    @property
    def threads(self) -> LiveThreads | None:
        """The live intra-op thread choice of executor batches (None: fixed by --intra-op-threads, or CUDA)."""
        return self._batcher.threads

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    def stats(self) -> ModelStats:
        return self._metrics.snapshot()

    def validate_chunk(self, x: Chunk) -> np.ndarray:
        """A chunk `(time >= 1, features)` of the model's dtype (or every data input by name), finite unless
        allowed, token ids below the vocabulary size; `InvalidInput` otherwise."""
        chunk = self._check(x, ("time", "features"))
        if chunk.shape[0] > self._max_request_steps:
            raise InvalidInput(f"chunk of {chunk.shape[0]} steps; at most {self._max_request_steps} per request")
        return chunk

    def open_session(self, key: str | None = None, on_close: Callable[[], None] | None = None) -> Session:
        """A new session at the initial state; `key`: its key in the session store (with a store); `on_close` runs
        once when it closes (end, eviction, shutdown)."""
        if self.ended_reason is not None:
            raise FailedPrecondition(self.ended_reason)
        if self.draining:
            raise Unavailable("the server is shutting down; no new sessions")
        if not self.manifest.streamable:
            raise FailedPrecondition(f"model {self.name!r} is not streamable; send whole sequences with Infer")
        slot = self._pool.alloc(time.monotonic())
        session = Session(next(self._ids), self, slot, self._pool, self._batcher, self._metrics, self._forget, key)
        self._sessions[slot] = session
        if on_close is not None:
            self._on_close[slot] = on_close
        self._no_sessions.clear()
        self._metrics.active_sessions += 1
        return session

    async def sessions_ended(self) -> None:
        """Return once no session is open (at once if none is)."""
        await self._no_sessions.wait()

    async def infer(self, x: Chunk, state: Arrays | None = None) -> tuple[Arrays, Arrays]:
        """Whole sequences `(batch, time, features)` from `state` (batch-first) or the initial state; stateless.

        Returns `({output: (batch, time, size)}, {state input: (batch, *shape)})`.
        """
        start = time.perf_counter_ns()
        ok = False
        try:
            if self.draining:
                raise Unavailable("the server is shutting down; no new requests")
            packed = self._check(x, ("batch", "time", "features"))
            batch, steps = packed.shape[0], packed.shape[1]
            if batch > self._max_request_batch or steps > self._max_request_steps:
                raise InvalidInput(f"request of {batch} sequences x {steps} steps; at most {self._max_request_batch} "
                                   f"sequences and {self._max_request_steps} steps per request")
            # Long sequences run in segments, the state carried between them: a model run (and onnxruntime's
            # arena, which keeps its peak) stays small, and other streams' batches run in between.
            segment = self._max_run_steps if self.manifest.state else steps  # no state: one whole run
            pieces = []
            for begin in range(0, steps, segment):
                outputs, new_state = await self._run_rows(packed[:, begin:begin + segment], state)
                pieces.append(outputs)
                state = new_state
            if len(pieces) > 1:
                outputs = {name: np.concatenate([p[name] for p in pieces], axis=1) for name in pieces[0]}
            ok = True
            return outputs, new_state
        finally:
            self._metrics.record_request(ok, time.perf_counter_ns() - start)

    async def _run_rows(self, x: np.ndarray, state: Arrays | None) -> tuple[Arrays, Arrays]:
        results = await asyncio.gather(*self._batcher.enqueue(self._rows(x, state)))
        outputs = {name: np.stack([r[0][name] for r in results]) for name in results[0][0]}
        return outputs, {p.input: np.stack([r[1][p.input] for r in results]) for p in self.manifest.state}

    def continue_on(self, newer: ServedModel) -> None:
        """From the next batch on, this copy's sessions run on `newer`'s runtime (compatible tensors, checked by the
        caller); they keep their state, slot and addressing."""
        self._batcher.use_runtime(newer._batcher.runtime)
        self.migrated_to = newer.version

    def end_sessions(self, reason: str) -> int:
        """End every open session (an unload or a drain timeout): later steps, and a native stream, are told
        `reason` (FAILED_PRECONDITION); new sessions are refused. How many were open."""
        self.ended_reason = reason
        self.draining = True
        sessions = list(self._sessions.values())
        for session in sessions:
            session.close()
        return len(sessions)

    def evict_idle(self, now: float) -> int:
        """Expire sessions idle since before `now - session_idle_timeout` (and not busy); how many."""
        evicted = 0
        for slot in self._pool.idle_slots(now - self.session_idle_timeout):
            session = self._sessions.get(slot)
            if session is not None and not session.busy:
                self._metrics.evictions += 1  # counted first: whoever sees the session gone sees it counted
                session.expire()
                evicted += 1
        return evicted

    async def close(self) -> None:
        """Refuse new sessions, finish the queued steps, close every session."""
        self.draining = True
        await self._batcher.close()
        for session in list(self._sessions.values()):
            session.close()

    def _forget(self, session: Session) -> None:
        if self._sessions.pop(session.slot, None) is not None:
            self._metrics.active_sessions -= 1
            on_close = self._on_close.pop(session.slot, None)
            if on_close is not None:
                on_close()
            if not self._sessions:
                self._no_sessions.set()

    def _check(self, x: Chunk, axes: tuple[str, ...]) -> np.ndarray:
        return self._inputs.check(x, axes)

    def _rows(self, x: np.ndarray, state: Arrays | None) -> list[Row]:
        """One batcher row per sequence, each with its explicit state (the initial state when `state` is None)."""
        pairs = self.manifest.state
        batch = x.shape[0]
        if state is None:
            state = {p.input: np.full((batch, *p.shape), p.initial, dtype=p.dtype) for p in pairs}
        elif set(state) != {p.input for p in pairs}:
            raise InvalidInput(f"state must hold exactly {sorted(p.input for p in pairs)}, got {clip(sorted(state))}")
        for p in pairs:
            value = state[p.input]
            want = (batch, *p.shape)
            if not isinstance(value, np.ndarray) or value.dtype != np.dtype(p.dtype) or value.shape != want:
                raise InvalidInput(f"state {p.input!r} must be {p.dtype} of shape {list(want)}")
            if self._reject_nonfinite and not np.isfinite(value).all():
                raise InvalidInput(f"state {p.input!r} holds NaN or Inf values")
        return [(x[i], None, {p.input: state[p.input][i] for p in pairs}) for i in range(batch)]


def incompatible(old: Manifest, new: Manifest) -> str | None:
    """Why sessions of `old` cannot continue on `new`'s weights (None: the same inputs, outputs and state)."""
    def inputs(m: Manifest) -> list[tuple[object, ...]]:
        return [(i.name, i.features, i.dtype, i.vocab_size, i.frame) for i in m.inputs]

    if inputs(old) != inputs(new):
        return "the inputs differ"
    if [(o.name, o.size, o.dtype) for o in old.outputs] != [(o.name, o.size, o.dtype) for o in new.outputs]:
        return "the outputs differ"
    if old.state != new.state:
        return "the state tensors differ (names, shapes, dtypes or initial values)"
    if not (old.streamable and new.streamable):
        return "not streamable"
    return None


def _live_threads(tuning: Tuning | None, label: str, inputs: Inputs) -> LiveThreads | None:
    """The live thread choice, when the count was measured over more than one runtime (each packed like the
    served one when the model has several data inputs)."""
    if tuning is None or not tuning.threads_auto or len(tuning.runtimes) < 2:
        return None
    runtimes = {n: PackedRuntime(rt, inputs) if inputs.packed else rt for n, rt in tuning.runtimes.items()}
    return LiveThreads(runtimes, tuning.intra_op_threads, label)  # type: ignore[arg-type]
