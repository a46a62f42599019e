"""One stream session, protocol-neutral: what a native `Stream` RPC and a WebSocket do with their requests.

The rules live here once: the first request opens the session (or resumes it from the shared store by its
token); a chunk or reset before that, or a second open, is a protocol violation (`FailedPrecondition`: it ends
the stream); `end` ends the session everywhere (a cut or broken stream keeps a stored one for a resume). Errors a
stream survives (a rejected chunk, a full queue, a failed model run: nothing was admitted or written back, the
session state is unchanged) come back as a `Rejected` answer, which the front sends in-stream with the request's
sequence number; anything else raises and ends the stream with its status (count it with `failed`). Every
request answered is counted under the session's model (as unknown before the open), once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from seqserve_client.codec import Arrays, TensorError
from service.dataplane.plane import UNKNOWN_MODEL
from service.dataplane.status import Code, code_of, status_of
from service.engine.access import CLIENT
from service.engine.errors import (
    FailedPrecondition,
    InvalidInput,
    ModelRunFailed,
    ResourceExhausted,
    SeqServeError,
    SequenceNotFound,
    clip,
)
from service.engine.inputs import Chunk
from service.engine.state.codec import decode_answer
from service.engine.state.store import new_token, stream_key, token_of, valid_token

if TYPE_CHECKING:
    from service.dataplane.plane import DataPlane
    from service.engine.model import ServedModel
    from service.engine.sessions import Session

SURVIVABLE = (InvalidInput, TensorError, ResourceExhausted, ModelRunFailed)
P = TypeVar("P")


@dataclass(frozen=True)
class Rejected:
    """A request the stream survives: its code and safe message (the front echoes the request's `seq`)."""

    code: Code
    message: str


@dataclass(frozen=True)
class Opened:
    """The answer to an open or a resume."""

    model: str
    version: int
    session_id: int
    provider: str
    resume_token: str = ""  # with a shared session store: resumes this session on any replica
    position: int = 0  # chunks and resets applied so far
    recent: list[Arrays] = field(default_factory=list)  # on resume: the last answers the store kept, oldest first


class StreamSession:
    """The session of one stream. `model` (a WebSocket's path) fixes the model an open may name; `on_expired`
    ends the stream from outside when the engine evicts its idle session."""

    def __init__(self, dataplane: DataPlane, model: str | None = None,
                 on_expired: Callable[[SeqServeError], None] | None = None) -> None:
        self._dataplane = dataplane
        self._fixed = model
        self._on_expired = on_expired
        self._session: Session | None = None
        self._label = UNKNOWN_MODEL  # the counters' label: the session's model once open

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def resume_token(self) -> str:
        """The token that resumes this session elsewhere ("" without a shared store or before the open)."""
        session = self._session
        return token_of(session.key) if session is not None and session.key is not None else ""

    def open(self, model: str, version: int | None) -> Opened:
        self._check_open(model)
        self._session = open_session(self._dataplane, self._model(model), version, self._session_closed)
        return self._opened(self._session, [])

    async def resume(self, model: str, version: int | None, token: str) -> Opened:
        self._check_open(model)
        self._session, recent = await resume_session(self._dataplane, self._model(model), version, token,
                                                    self._session_closed)
        return self._opened(self._session, recent)

    async def step(self, decode: Callable[[P], Chunk], payload: P) -> Arrays | Rejected:
        """One chunk: `decode(payload)` is its `(time, features)` input; its outputs `{name: (time, size)}`."""
        session = self._session
        if session is None:
            raise FailedPrecondition("chunk before open; open a session first")
        try:
            outputs = await session.step(decode(payload))
        except SURVIVABLE as exc:
            return self.reject(exc)
        self._dataplane.count(self._label, "OK")
        return outputs

    async def reset(self) -> None:
        """Back to the model's initial state (through the store first for a resumable session)."""
        session = self._session
        if session is None:
            raise FailedPrecondition("reset before open; open a session first")
        if session.key is not None:
            await session.reset_through()
        else:
            session.reset()

    def reject(self, exc: Exception) -> Rejected:
        """An error the stream survives, counted; e.g. an empty request (`InvalidInput`)."""
        code, message = status_of(exc)
        self._dataplane.count(self._label, code.name)
        return Rejected(code, message)

    def empty(self, what: str = "an empty message") -> Rejected:
        """The answer to a request that sets nothing (before the open it is a protocol violation)."""
        if self._session is None:
            raise FailedPrecondition(f"{what} before open; open a session first")
        return self.reject(InvalidInput("empty stream message: set one of open, chunk, reset, end"))

    def failed(self, exc: BaseException) -> None:
        """The request that ends the stream (a protocol violation, a cut), counted under the session's model."""
        self._dataplane.count(self._label, code_of(exc).name)

    async def end(self) -> None:
        """The client ended the session: it ends everywhere. Not on a half-close alone: to the server a broken
        connection can look like one, and the stored session must then stay for a resume (it expires when idle)."""
        if self._session is not None:
            await end_session(self._session)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def _check_open(self, model: str) -> None:
        if self._session is not None:
            raise FailedPrecondition("the stream already has a session; open once per stream")
        if self._fixed is not None and model and model != self._fixed:
            raise FailedPrecondition(f"this stream serves model {clip(self._fixed)} (its path); "
                                     f"open names {clip(model)}")

    def _model(self, model: str) -> str:
        return model or self._fixed or ""

    def _opened(self, session: Session, recent: list[Arrays]) -> Opened:
        manifest = session.model.manifest
        self._label = manifest.name
        self._dataplane.count(self._label, "OK")
        token = token_of(session.key) if session.key is not None else ""
        return Opened(manifest.name, manifest.version, session.id, session.model.provider, token,
                      session.position if token else 0, recent)

    def _session_closed(self) -> None:
        session = self._session
        if session is None or self._on_expired is None:
            return
        if session.model.ended_reason is not None:  # unloaded, or its drain timed out
            self._on_expired(FailedPrecondition(session.model.ended_reason))
        elif session.expired:
            timeout = session.model.session_idle_timeout
            self._on_expired(FailedPrecondition(f"session expired after {timeout:g} s without a step; stream ended"))


def open_session(dataplane: DataPlane, name: str, version: int | None, on_close: Callable[[], None] | None = None
                 ) -> Session:
    """A native stream's session, counted against the client's session quota; `on_close` runs once it closes.

    With a session store it is resumable by its token (`store.token_of(session.key)`)."""
    model = dataplane.model(name, version)
    if model.store is None:
        return dataplane.open_for_client(model, None, on_close)
    key = stream_key(model.name, model.version, new_token(), CLIENT.get().namespace)
    session = dataplane.open_for_client(model, key, on_close)
    session.answers = True
    return session


async def resume_session(dataplane: DataPlane, name: str, version: int | None, token: str,
                         on_close: Callable[[], None] | None = None) -> tuple[Session, list[Arrays]]:
    """Continue a native stream's session from the store: the session and the last answers it kept."""
    model = await _resumed_version(dataplane, name, version, token)
    if model.store is None:
        raise FailedPrecondition("resuming needs a shared session store (--session-store redis://...); "
                                 "this server keeps sessions in memory, so they end with their stream")
    if not valid_token(token):
        raise InvalidInput("malformed resume token")
    key = stream_key(model.name, model.version, token, CLIENT.get().namespace)
    stored = await model.store.load(key, recent=True)
    if stored is None:
        raise SequenceNotFound(f"no session of model {model.name!r} to resume for this token "
                               "(ended, expired or never opened)")
    session = dataplane.open_for_client(model, key, on_close)
    session.answers = True
    try:
        session.restore(stored)
        recent = [decode_answer(answer) for answer in stored.recent]
    except BaseException:
        session.close()
        raise
    return session, recent


async def _resumed_version(dataplane: DataPlane, name: str, version: int | None, token: str) -> ServedModel:
    """Without a version, a stored session resumes on the version it started on, if it is still loaded."""
    newest = dataplane.model(name, version)
    if version is not None or newest.store is None or not valid_token(token):
        return newest
    for copy in dataplane.registry.instances(name):
        if copy is not newest and await newest.store.load(
                stream_key(name, copy.version, token, CLIENT.get().namespace)) is not None:
            return copy
    return newest


async def end_session(session: Session) -> None:
    """A native stream ended by its client: the stored session goes too (a cut or broken stream keeps it)."""
    store = session.model.store
    if session.key is not None and store is not None and not session.closed:
        await store.delete(session.key)
