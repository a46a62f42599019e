"""Triton's sequence extension on the engine: a `sequence_id -> Session` table, no protobuf.

A sequence is addressed by `(model, version, sequence_id)`; the id is an int or a str (5 and "5" are two different
sequences). START opens the sequence's session, or restarts it from the initial state if it is open; a request
without START needs an open session (else `SequenceNotFound`); END frees the session once its step is done,
whatever the step's outcome. Sessions the engine evicts for idleness are closed there and vanish from the table
here. Requests of one sequence run strictly in the order they were submitted; sequences run concurrently and
meet in the model's batcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from service.engine.errors import FailedPrecondition, SequenceNotFound

if TYPE_CHECKING:
    from service.engine.model import ServedModel
    from service.engine.sessions import Session

SequenceId = int | str
_Key = tuple[str, int, SequenceId]
_MIN_SWEEP = 64
T = TypeVar("T")


@dataclass(frozen=True)
class SequenceFlags:
    """Where one request stands in its sequence."""

    sequence_id: SequenceId
    start: bool = False
    end: bool = False


@dataclass(frozen=True)
class StepResult:
    outputs: dict[str, np.ndarray]  # {name: (time, size)}
    state: dict[str, np.ndarray] | None  # state after the step keyed by state input name, when asked for


class Sequences:
    """The open sequences of every model, each owning one engine `Session`."""

    def __init__(self) -> None:
        self._sessions: dict[_Key, Session] = {}
        self._tails: dict[_Key, asyncio.Future[None]] = {}  # completion of each sequence's last submitted request
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        """Open sequences (some may have been evicted by the engine since the last sweep)."""
        return len(self._sessions)

    def submit(
        self,
        model: ServedModel,
        flags: SequenceFlags,
        x: np.ndarray,
        then: Callable[[StepResult], T],
        *,
        want_state: bool = False,
    ) -> asyncio.Task[T]:
        """Run one step `x: (time, features)` of a sequence, then `then(result)`, in a task.

        The request takes its place in its sequence at once: the tasks of one sequence run, and complete,
        in submission order, each in a later event-loop iteration than the one before, so done-callbacks
        added to them right away also run in submission order.
        """
        key = (model.manifest.name, model.manifest.version, flags.sequence_id)
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        task = asyncio.create_task(self._run(previous, key, model, flags, x, then, want_state))
        task.add_done_callback(lambda _: self._finish(key, previous, done))  # also when cancelled before starting
        return task

    def close(self) -> None:
        """End every sequence and free its session."""
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    async def _run(
        self,
        previous: asyncio.Future[None] | None,
        key: _Key,
        model: ServedModel,
        flags: SequenceFlags,
        x: np.ndarray,
        then: Callable[[StepResult], T],
        want_state: bool,
    ) -> T:
        if previous is not None:
            await asyncio.wait([previous])  # never cancels `previous`, unlike awaiting it
        return then(await self._step(key, model, flags, x, want_state))

    async def _step(
        self, key: _Key, model: ServedModel, flags: SequenceFlags, x: np.ndarray, want_state: bool
    ) -> StepResult:
        session = self._session_for(key, model, flags)
        try:
            outputs = await session.step(x)
            return StepResult(outputs, session.state() if want_state else None)
        finally:
            if flags.end or session.closed:
                session.close()
                if self._sessions.get(key) is session:
                    del self._sessions[key]

    def _session_for(self, key: _Key, model: ServedModel, flags: SequenceFlags) -> Session:
        if not model.manifest.streamable:
            raise FailedPrecondition(
                f"model {model.manifest.name!r} is not streamable: send whole sequences without sequence_id"
            )
        session = self._sessions.get(key)
        if session is not None and session.closed:  # evicted by the engine for idleness
            del self._sessions[key]
            session = None
        if not flags.start:
            if session is None:
                raise SequenceNotFound(
                    f"sequence {flags.sequence_id!r} of model {model.manifest.name!r} is not open "
                    "(never started, ended or expired): its first request must set sequence_start (START)"
                )
            return session
        if session is not None:
            session.reset()
            return session
        self._sweep()
        session = model.open_session()
        self._sessions[key] = session
        return session

    def _sweep(self) -> None:
        """Drop the sessions the engine evicted; amortised over the table's growth."""
        if len(self._sessions) < self._sweep_at:
            return
        for key in [k for k, s in self._sessions.items() if s.closed]:
            del self._sessions[key]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._sessions))

    def _finish(self, key: _Key, previous: asyncio.Future[None] | None, done: asyncio.Future[None]) -> None:
        """Mark this request done, but never before the one ahead of it (a cancelled request may overtake it)."""

        def resolve(_: object = None) -> None:
            done.set_result(None)
            if self._tails.get(key) is done:
                del self._tails[key]

        if previous is None or previous.done():
            resolve()
        else:
            previous.add_done_callback(resolve)
