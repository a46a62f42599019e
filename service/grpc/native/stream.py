"""One native `Stream` RPC: its session and the answer to each request (the servicer drives the loop).

Errors the stream survives (a rejected chunk, a full queue, a failed model run: nothing was admitted or written
back, the session state is unchanged) become an in-stream `Error` echoing the request's `seq`; anything else
propagates and ends the stream with its status (see `service/grpc/errors.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import grpc

from service.dataplane import UNKNOWN_MODEL
from service.engine.errors import FailedPrecondition, InvalidInput, ModelRunFailed, ResourceExhausted
from service.engine.state.store import token_of
from service.grpc.errors import to_status
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb
from service.grpc.native import convert

if TYPE_CHECKING:
    from service.dataplane import DataPlane
    from service.engine.sessions import Session
    from service.grpc.cut import Watch

SURVIVABLE = (InvalidInput, ResourceExhausted, ModelRunFailed)
RESUME_KEY = "seqserve-resume-token"  # trailing metadata of a stream cut by a shutdown: `Open{resume}` elsewhere


class StreamHandler:
    def __init__(self, dataplane: DataPlane, watch: Watch) -> None:
        self._dataplane = dataplane
        self._watch = watch  # ended from outside when the session is evicted: the stream does not linger
        self._session: Session | None = None
        self._label = UNKNOWN_MODEL  # the metrics label: the session's model once open

    @property
    def session(self) -> Session | None:
        return self._session

    async def step(self, session: Session, request: pb.StreamRequest) -> pb.StreamResponse:
        """The answer to a `chunk` request once the session is open: a result, or an in-stream error."""
        try:
            outputs = await session.step(convert.tensor_to_array(request.chunk.input))
        except SURVIVABLE as exc:
            return self._error(request, exc)
        self._dataplane.count(self._label, "OK")
        response = pb.StreamResponse(seq=request.seq)
        convert.arrays_to_tensors(outputs, response.result.outputs)  # built in place
        return response

    def control(self, request: pb.StreamRequest, kind: str | None) -> pb.StreamResponse | Awaitable[pb.StreamResponse]:
        """The answer to any other request but `end`: `open`, `reset`, a chunk before open, an empty message; an
        awaitable for those that go to the session store first (resume, a resumable session's reset)."""
        if kind == "open":
            return self._resume(request) if request.open.resume and self._session is None else self._open(request)
        if self._session is None:
            raise FailedPrecondition(f"{kind or 'an empty message'} before open; open a session first")
        if kind == "reset":
            if self._session.key is not None:
                return self._reset_through(self._session, request)
            self._session.reset()
            return pb.StreamResponse(seq=request.seq, reset=pb.ResetDone())
        return self._error(request, InvalidInput("empty stream message: set one of open, chunk, reset, end"))

    def count_failure(self, exc: BaseException) -> None:
        """The request that ends the stream, counted under the session's model (or as unknown)."""
        self._dataplane.count(self._label, to_status(exc)[0].name)

    async def end(self) -> None:
        """The client sent END: its session ends everywhere. Not on a half-close alone: to the server a broken
        connection can look like one, and the stored session must then stay for a resume (it expires when idle)."""
        if self._session is not None:
            await self._dataplane.end_session(self._session)

    def hand_off(self, context: grpc.aio.ServicerContext) -> None:
        """A stream cut by a shutdown: its status carries the resume token (trailing metadata `RESUME_KEY`)."""
        if self._session is not None and self._session.key is not None:
            context.set_trailing_metadata(((RESUME_KEY, token_of(self._session.key)),))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def _open(self, request: pb.StreamRequest) -> pb.StreamResponse:
        if self._session is not None:
            raise FailedPrecondition("the stream already has a session; open once per stream")
        self._session = self._dataplane.open_session(request.open.model, request.open.version or None,
                                                     self._session_closed)
        return self._opened(request, self._session)

    async def _resume(self, request: pb.StreamRequest) -> pb.StreamResponse:
        self._session, recent = await self._dataplane.resume_session(
            request.open.model, request.open.version or None, request.open.resume, self._session_closed
        )
        response = self._opened(request, self._session)
        for answer in recent:
            convert.arrays_to_tensors(answer, response.opened.recent.add().outputs)
        return response

    async def _reset_through(self, session: Session, request: pb.StreamRequest) -> pb.StreamResponse:
        await session.reset_through()
        return pb.StreamResponse(seq=request.seq, reset=pb.ResetDone())

    def _opened(self, request: pb.StreamRequest, session: Session) -> pb.StreamResponse:
        manifest = session.model.manifest
        self._label = manifest.name
        self._dataplane.count(self._label, "OK")
        response = pb.StreamResponse(seq=request.seq)
        opened = response.opened
        opened.model, opened.version, opened.session_id = manifest.name, manifest.version, session.id
        opened.provider = session.model.provider
        if session.key is not None:
            opened.resume_token, opened.position = token_of(session.key), session.position
        return response

    def _session_closed(self) -> None:
        session = self._session
        if session is not None and session.model.ended_reason is not None:  # unloaded, or its drain timed out
            self._watch.end(FailedPrecondition(session.model.ended_reason))
        elif session is not None and session.expired:
            timeout = session.model.session_idle_timeout
            self._watch.end(FailedPrecondition(f"session expired after {timeout:g} s without a step; stream ended"))

    def _error(self, request: pb.StreamRequest, exc: Exception) -> pb.StreamResponse:
        code, message = to_status(exc)
        self._dataplane.count(self._label, code.name)
        return pb.StreamResponse(seq=request.seq, error=pb.Error(code=code.value[0], message=message))
