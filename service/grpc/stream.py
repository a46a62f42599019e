"""One native `Stream` RPC: its session and the answer to each request, in order.

Errors the stream survives (a rejected chunk, a full queue) become an in-stream `Error` echoing the request's
`seq`; anything else propagates and ends the stream with its status (see `service/grpc/errors.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from service.errors import FailedPrecondition, InvalidInput, ResourceExhausted
from service.grpc import convert
from service.grpc.errors import to_status
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb

if TYPE_CHECKING:
    from service.metrics import Metrics
    from service.registry import Registry
    from service.sessions import Session

# Chunk errors the stream survives: nothing was admitted and the session state is unchanged.
SURVIVABLE = (InvalidInput, ResourceExhausted)
UNKNOWN_MODEL = "unknown"


class StreamHandler:
    def __init__(self, registry: Registry, metrics: Metrics) -> None:
        self._registry = registry
        self._metrics = metrics
        self._session: Session | None = None

    @property
    def model_label(self) -> str:
        return self._session.model.manifest.name if self._session is not None else UNKNOWN_MODEL

    async def serve(self, requests: AsyncIterator[pb.StreamRequest]) -> AsyncIterator[pb.StreamResponse]:
        """Answer every request until `end` or half-close; the caller must call `close()` afterwards."""
        async for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "end":
                return
            if kind == "open":
                yield self._open(request)
            elif self._session is None:
                raise FailedPrecondition(f"{kind or 'an empty message'} before open; open a session first")
            elif kind == "reset":
                self._session.reset()
                yield pb.StreamResponse(seq=request.seq, reset=pb.ResetDone())
            else:
                yield await self._step(self._session, request)

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

    async def _step(self, session: Session, request: pb.StreamRequest) -> pb.StreamResponse:
        try:
            if not request.HasField("chunk"):
                raise InvalidInput("empty stream message: set one of open, chunk, reset, end")
            outputs = await session.step(convert.tensor_to_array(request.chunk.input))
        except SURVIVABLE as exc:
            code, message = to_status(exc)
            self._metrics.count_request(self.model_label, code.name)
            return pb.StreamResponse(seq=request.seq, error=pb.Error(code=code.value[0], message=message))
        self._metrics.count_request(self.model_label, "OK")
        result = pb.ChunkResult()
        convert.arrays_to_tensors(outputs, result.outputs)
        return pb.StreamResponse(seq=request.seq, result=result)
