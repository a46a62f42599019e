"""Triton's sequence extension on the engine: a `sequence_id -> Session` table, no protobuf.

A sequence is addressed by `(namespace, model, version, sequence_id)`: the namespace is the principal's with
authentication (another principal never sees its ids), the id an int or a str (5 and "5" are two different
sequences). START opens the sequence's session, or restarts it from the initial state if it is open; a request
without START needs an open session (else `SequenceNotFound`); END frees the session once its step is done,
whatever the step's outcome. A session that closes (END, idle eviction, shutdown) leaves the table at once. A bad
chunk is refused before the id is looked up, so it answers the same whether the id is open or not (no probing).
Requests of one sequence run strictly in the order they were submitted; sequences run concurrently and
meet in the model's batcher.

With a session store (`--session-store redis://`) the table is a cache: a request for a sequence this process does
not hold (another replica served it, or it was evicted here) loads it from the store, and a step refused because
another replica advanced the sequence meanwhile (compare-and-set on its version, `Aborted`) is redone here from
the stored state, up to `REDO_LIMIT` times, then answered ABORTED. Redone, not refused: a Triton client sends one
sequence's requests in order and waits for each, so the newer stored state is the one its request follows.
START overwrites whatever is stored (a new epoch), END deletes it in the same write. A step whose write the store
never confirmed nor denied (`OutcomeUnknown`) is never redone: the sequence is refused (ABORTED) until START.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import numpy as np

from service.engine.bounded import LRU
from service.engine.done import when_done
from service.engine.errors import Aborted, FailedPrecondition, OutcomeUnknown, SequenceNotFound, clip
from service.engine.inputs import Chunk
from service.engine.state.store import sequence_key

if TYPE_CHECKING:
    from service.engine.model import ServedModel
    from service.engine.sessions import Session

SequenceId = int | str
_Key = tuple[str, str, int, SequenceId]  # (namespace, model, version, sequence_id)
# (model, its key in the session store or None, on_close) -> a new session (the data plane's: quotas apply)
Opener = Callable[["ServedModel", "str | None", Callable[[], None]], "Session"]
ENDED_KEPT = 4096  # sequences ended by an unload whose reason is kept for their next request
REDO_LIMIT = 3  # a step refused because another process advanced the sequence is redone from the store this often
UNKNOWN_KEPT = 65536  # sequences remembered as "last step's outcome unknown" (a bound on memory; oldest forgotten)
UNKNOWN_BEFORE = ("the outcome of this sequence's previous step is unknown (the session store did not answer in "
                  "time); restart the sequence with sequence_start")
T = TypeVar("T")


class SequenceFlags(NamedTuple):  # NamedTuples here: built on every request, and 2-4x cheaper than a dataclass
    """Where one request stands in its sequence."""

    sequence_id: SequenceId
    start: bool = False
    end: bool = False


class StepResult(NamedTuple):
    outputs: dict[str, np.ndarray]  # {name: (time, size)}
    state: dict[str, np.ndarray] | None  # state after the step keyed by state input name, when asked for
    model: ServedModel | None = None  # the version that ran it (a sequence found stored on another one: that one)


class _Request(NamedTuple, Generic[T]):
    key: _Key
    model: ServedModel
    flags: SequenceFlags
    x: Chunk  # (time, features), or every data input by name
    then: Callable[[StepResult], T]
    want_state: bool


class Sequences:
    """The open sequences of every model, each owning one engine `Session`."""

    def __init__(self, opener: Opener | None = None,
                 versions: Callable[[str], list[ServedModel]] | None = None) -> None:
        self._versions = versions  # the loaded copies of a model, newest first (a rollout: the stored one's too)
        self._sessions: dict[_Key, Session] = {}
        self._tails: dict[_Key, asyncio.Future[Any]] = {}  # each sequence's last submitted request
        self._ended: dict[tuple[str, str, SequenceId], str] = {}  # ended by an unload: why (the newest ENDED_KEPT)
        self._open: Opener = opener or (lambda model, key, on_close: model.open_session(key, on_close))
        # sequences whose last step has an unknown outcome (store silent): refused until START, the newest kept
        self._unknown: LRU[_Key] = LRU(UNKNOWN_KEPT)

    def __len__(self) -> int:
        """Open sequences (a session that closes leaves the table at once)."""
        return len(self._sessions)

    def submit(
        self,
        model: ServedModel,
        flags: SequenceFlags,
        x: Chunk,
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
        request = _Request(key, model, flags, x, then, want_state)
        previous = self._tails.get(key)
        if previous is None:
            future = self._start(request)
            if future.done():  # ran inline (an idle model): nothing can queue behind it
                return future
        else:
            future = asyncio.get_running_loop().create_future()
            previous.add_done_callback(lambda _: self._start_after(future, request))
        self._tails[key] = future
        when_done(future, lambda done: self._tails.pop(key) if self._tails.get(key) is done else None)
        return future

    def holder(self, namespace: str, model: str, version: int, sequence_id: SequenceId) -> bool:
        """Whether the sequence is open here on that version (a new version loaded meanwhile: it stays on its own)."""
        session = self._sessions.get((namespace, model, version, sequence_id))
        return session is not None and not session.closed

    def close(self) -> None:
        """End every sequence and free its session."""
        sessions = list(self._sessions.values())  # each close takes its id out of the table
        self._sessions.clear()
        for session in sessions:
            session.close()

    def _start_after(self, future: asyncio.Future[T], request: _Request[T], attempt: int = 0) -> None:
        """Start a request that waited (for the one before it, or to be redone); its outcome goes to `future`."""
        if future.done():  # cancelled by its caller meanwhile: never runs
            return
        try:
            started = self._start(request, attempt)
        except Exception as exc:
            future.set_exception(exc)
            return
        when_done(started, lambda done: _copy_outcome(done, future))
        future.add_done_callback(lambda f: started.cancel() if f.cancelled() else None)

    def _start(self, request: _Request[T], attempt: int = 0) -> asyncio.Future[T]:
        key, model, flags = request.key, request.model, request.flags
        try:  # first: a bad chunk answers the same whether the id is open or not (no probing)
            chunk = model.validate_chunk(request.x)
        except Exception:
            if flags.end and (open_session := self._sessions.get(key)) is not None:
                self._settle(key, open_session, flags)  # END frees the session whatever the outcome
            raise
        if not model.manifest.streamable:
            raise FailedPrecondition(
                f"model {model.manifest.name!r} is not streamable: send whole sequences without sequence_id"
            )
        if key in self._unknown:
            if not flags.start:
                raise OutcomeUnknown(UNKNOWN_BEFORE)
            del self._unknown[key]
        if model.store is not None and not flags.start and not self._holds(key):
            # not held here (another replica served it, or it was evicted locally): continue from the store
            return asyncio.ensure_future(self._resume(request, attempt))
        session = self._session_for(key, model, flags)
        session.ending = flags.end  # with a store, the END step's write deletes the stored session
        try:
            step = session.submit(chunk, validated=True)
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
                    if isinstance(exc, OutcomeUnknown):  # never go on from a guess: START is the way on
                        self._drop(key, session)
                        self._unknown[key] = None
                    elif isinstance(exc, Aborted) and attempt < REDO_LIMIT:  # another replica advanced it: redo
                        self._drop(key, session)
                        self._start_after(result, request, attempt + 1)
                        return
                    result.set_exception(exc)
                else:
                    state = session.state() if request.want_state else None
                    result.set_result(request.then(StepResult(done.result()[0], state, session.model)))
            except Exception as exc:  # e.g. the session closed meanwhile (shutdown): never leave a waiter hanging
                if not result.done():
                    result.set_exception(exc)
            finally:
                self._settle(key, session, flags)

        when_done(step, finish)
        if not result.done():
            result.add_done_callback(lambda r: step.cancel() if r.cancelled() else None)
        return result

    async def _resume(self, request: _Request[T], attempt: int) -> T:
        """Load a sequence this process does not hold from the store, then run the step here."""
        model, key = request.model, request.key
        assert model.store is not None
        stored = await model.store.load(_store_key(key))
        for other in [] if stored is not None or self._versions is None else self._versions(key[1]):
            other_key = (key[0], key[1], other.version, key[3])  # stored on another version that is still loaded
            if other is not model and (stored := await model.store.load(_store_key(other_key))) is not None:
                model, key = other, other_key
                request = _Request(key, model, request.flags, request.x, request.then, request.want_state)
                break
        if stored is None:
            raise _not_found(model, request.flags)
        session = self._sessions[key] if self._holds(key) else self._opened(key, model)
        try:  # enters the table only restored: a half-made session would later overwrite what is stored
            session.restore(stored)
        except BaseException:
            self._drop(key, session)
            raise
        self._sessions[key] = session
        return await self._start(request, attempt)

    def _holds(self, key: _Key) -> bool:
        session = self._sessions.get(key)
        return session is not None and not session.closed

    def _drop(self, key: _Key, session: Session) -> None:
        """Forget a stale local copy (the store holds a newer one)."""
        session.close()
        if self._sessions.get(key) is session:
            del self._sessions[key]

    def _settle(self, key: _Key, session: Session, flags: SequenceFlags) -> None:
        """After a request: END (or an engine-closed session) frees the session, whatever the outcome."""
        if flags.end or session.closed:
            session.close()
            if self._sessions.get(key) is session:
                del self._sessions[key]

    def _session_for(self, key: _Key, model: ServedModel, flags: SequenceFlags) -> Session:
        session = self._sessions.get(key)
        if session is not None and session.closed:  # evicted by the engine for idleness
            del self._sessions[key]
            session = None
        if not flags.start:
            if session is None:
                raise _not_found(model, flags)
            return session
        if session is not None:
            if session.key is not None:
                session.restart()
            else:
                session.reset()
            return session
        session = self._opened(key, model)
        self._sessions[key] = session
        return session

    def _opened(self, key: _Key, model: ServedModel) -> Session:
        """A new session for `key`, which takes it out of the table when it closes."""
        opened: list[Session] = []
        store_key = None if model.store is None else _store_key(key)
        session = self._open(model, store_key, lambda: self._forget(key, opened[0]))
        opened.append(session)
        return session

    def _forget(self, key: _Key, session: Session) -> None:
        """A session closed (END, eviction, shutdown, unload): its id leaves the table at once."""
        if self._sessions.get(key) is session:
            del self._sessions[key]
        if session.model.ended_reason is not None:  # its model was unloaded under it: a later request is told why
            self._ended[(key[0], key[1], key[3])] = session.model.ended_reason
            if len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]

    def ended(self, namespace: str, model: str, sequence_id: SequenceId, start: bool) -> str | None:
        """Why the sequence was ended by an unload (None: it was not); a START forgets it."""
        if start:
            self._ended.pop((namespace, model, sequence_id), None)
            return None
        return self._ended.get((namespace, model, sequence_id))


def _store_key(key: _Key) -> str:
    """The key of a sequence in the session store, namespaced like the table's."""
    namespace, model, version, sequence_id = key
    return sequence_key(model, version, sequence_id, namespace)


def _not_found(model: ServedModel, flags: SequenceFlags) -> SequenceNotFound:
    return SequenceNotFound(
        f"sequence {clip(flags.sequence_id)} of model {model.manifest.name!r} is not open "
        "(never started, ended or expired): its first request must set sequence_start (START)"
    )


def _copy_outcome(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())
