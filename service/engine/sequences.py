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
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from service.engine.errors import FailedPrecondition, SequenceNotFound, clip

if TYPE_CHECKING:
    from service.engine.model import ServedModel
    from service.engine.sessions import Session

SequenceId = int | str
_Key = tuple[str, str, int, SequenceId]  # (namespace, model, version, sequence_id)
Opener = Callable[["ServedModel", Callable[[], None]], "Session"]  # (model, on_close) -> a new session
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

    def __init__(self, opener: Opener | None = None) -> None:
        self._sessions: dict[_Key, Session] = {}
        self._tails: dict[_Key, asyncio.Future[Any]] = {}  # each sequence's last submitted request
        self._open: Opener = opener or (lambda model, on_close: model.open_session(on_close))

    def __len__(self) -> int:
        """Open sequences (a session the engine evicts leaves the table at once)."""
        return len(self._sessions)

    def submit(
        self,
        model: ServedModel,
        flags: SequenceFlags,
        x: np.ndarray,
        then: Callable[[StepResult], T],
        *,
        want_state: bool = False,
        namespace: str = "",
    ) -> asyncio.Future[T]:
        """Run one step `x: (time, features)` of a sequence: a future of `then(result)`, no task.

        The request takes its place in its sequence at once. When the one before it is done (the common case: a
        client waits for each answer) it is queued in the model's batcher before this returns, and errors found
        on the way (unknown sequence, bad chunk) raise here. Otherwise it starts when the one before it is done
        (whatever that one's outcome) and errors come through the future. The futures of one sequence complete
        in submission order, so done-callbacks added to them right away also run in submission order.
        Ids live in `namespace` (the principal's, with authentication): other namespaces never see them.
        """
        key = (namespace, model.manifest.name, model.manifest.version, flags.sequence_id)
        previous = self._tails.get(key)
        if previous is None:
            future = self._start(key, model, flags, x, then, want_state)
        else:
            future = asyncio.get_running_loop().create_future()
            previous.add_done_callback(lambda _: self._start_after(future, key, model, flags, x, then, want_state))
        self._tails[key] = future
        future.add_done_callback(lambda done: self._tails.pop(key) if self._tails.get(key) is done else None)
        return future

    def close(self) -> None:
        """End every sequence and free its session."""
        sessions = list(self._sessions.values())  # each close takes its id out of the table
        self._sessions.clear()
        for session in sessions:
            session.close()

    def _start_after(
        self,
        future: asyncio.Future[T],
        key: _Key,
        model: ServedModel,
        flags: SequenceFlags,
        x: np.ndarray,
        then: Callable[[StepResult], T],
        want_state: bool,
    ) -> None:
        """Start a request that waited for the one before it; its outcome goes to `future`."""
        if future.done():  # cancelled by its caller meanwhile: never runs
            return
        try:
            started = self._start(key, model, flags, x, then, want_state)
        except Exception as exc:
            future.set_exception(exc)
            return
        started.add_done_callback(lambda done: _copy_outcome(done, future))
        future.add_done_callback(lambda f: started.cancel() if f.cancelled() else None)

    def _start(
        self,
        key: _Key,
        model: ServedModel,
        flags: SequenceFlags,
        x: np.ndarray,
        then: Callable[[StepResult], T],
        want_state: bool,
    ) -> asyncio.Future[T]:
        try:  # first: a bad chunk answers the same whether the id is open or not (no probing)
            model.validate_chunk(x)
        except Exception:
            if flags.end and (open_session := self._sessions.get(key)) is not None:
                self._settle(key, open_session, flags)  # END frees the session whatever the outcome
            raise
        session = self._session_for(key, model, flags)
        try:
            step = session.submit(x)
        except BaseException:
            self._settle(key, session, flags)
            raise
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def finish(done: asyncio.Future[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]) -> None:
            try:
                if result.cancelled():
                    return
                if done.cancelled():
                    result.cancel()
                elif (exc := done.exception()) is not None:
                    result.set_exception(exc)
                else:
                    result.set_result(then(StepResult(done.result()[0], session.state() if want_state else None)))
            finally:
                self._settle(key, session, flags)

        step.add_done_callback(finish)
        result.add_done_callback(lambda r: step.cancel() if r.cancelled() else None)
        return result

    def _settle(self, key: _Key, session: Session, flags: SequenceFlags) -> None:
        """After a request: END (or an engine-closed session) frees the session, whatever the outcome."""
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
                    f"sequence {clip(flags.sequence_id)} of model {model.manifest.name!r} is not open "
                    "(never started, ended or expired): its first request must set sequence_start (START)"
                )
            return session
        if session is not None:
            session.reset()
            return session
        opened: list[Session] = []
        session = self._open(model, lambda: self._forget(key, opened[0]))
        opened.append(session)
        self._sessions[key] = session
        return session

    def _forget(self, key: _Key, session: Session) -> None:
        """A session closed (END, eviction, shutdown): its id leaves the table at once."""
        if self._sessions.get(key) is session:
            del self._sessions[key]


def _copy_outcome(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())
