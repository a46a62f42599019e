"""One native `Stream` RPC: its session and the answer to each request (the servicer drives the loop).

Errors the stream survives (a rejected chunk, a full queue) become an in-stream `Error` echoing the request's
`seq`; anything else propagates and ends the stream with its status (see `service/grpc/errors.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.engine.errors import FailedPrecondition, InvalidInput, ResourceExhausted
from service.grpc.errors import to_status
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb
from service.grpc.native import convert

if TYPE_CHECKING:
    from service.engine.metrics import Metrics
    from service.engine.registry import Registry
    from service.engine.sessions import Session

# Chunk errors the stream survives: nothing was admitted and the session state is unchanged.
SURVIVABLE = (InvalidInput, ResourceExhausted)
UNKNOWN_MODEL = "unknown"


class StreamHandler:
    def __init__(self, registry: Registry, metrics: Metrics) -> None:
        self._registry = registry
        self._metrics = metrics
        self._session: Session | None = None

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def model_label(self) -> str:
        return self._session.model.manifest.name if self._session is not None else UNKNOWN_MODEL

    async def step(self, session: Session, request: pb.StreamRequest) -> pb.StreamResponse:
        """The answer to a `chunk` request once the session is open: a result, or an in-stream error."""
        try:
            outputs = await session.step(convert.tensor_to_array(request.chunk.input))
        except SURVIVABLE as exc:
            return self._error(request, exc)
        self._metrics.count_request(self.model_label, "OK")
        result = pb.ChunkResult()
        convert.arrays_to_tensors(outputs, result.outputs)
        return pb.StreamResponse(seq=request.seq, result=result)

    def control(self, request: pb.StreamRequest, kind: str | None) -> pb.StreamResponse:
        """The answer to any other request but `end`: `open`, `reset`, a chunk before open, an empty message."""
        if kind == "open":
            return self._open(request)
        if self._session is None:
            raise FailedPrecondition(f"{kind or 'an empty message'} before open; open a session first")
        if kind == "reset":
            self._session.reset()
            return pb.StreamResponse(seq=request.seq, reset=pb.ResetDone())
        return self._error(request, InvalidInput("empty stream message: set one of open, chunk, reset, end"))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def _open(self, request: pb.StreamRequest) -> pb.StreamResponse:
        if self._session is not None:
            raise FailedPrecondition("the stream already has a session; open once per stream")
        self._session = self._registry.get(request.open.model, request.open.version or None).open_session()
        self._metrics.count_request(self.model_label, "OK")
        manifest = self._session.model.manifest
        opened = pb.Opened(model=manifest.name, version=manifest.version, session_id=self._session.id,
                           provider=self._session.model.provider)
        return pb.StreamResponse(seq=request.seq, opened=opened)

    def _error(self, request: pb.StreamRequest, exc: Exception) -> pb.StreamResponse:
        code, message = to_status(exc)
        self._metrics.count_request(self.model_label, code.name)
        return pb.StreamResponse(seq=request.seq, error=pb.Error(code=code.value[0], message=message))
