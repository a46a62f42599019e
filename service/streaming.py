"""The native `Stream` protocol's messages over a data plane `StreamSession`, for every transport that carries
them: the gRPC `Stream` RPC and the WebSocket front (`StreamRequest` / `StreamResponse` as protobuf or JSON).

`NativeStream.answer(request)` is the response to one request (`end` excepted: see `end`); the stream rules live
in the session (`service/dataplane/stream.py`), the tensors go through the one codec. A transport drives the loop,
owns its own flow control and closing, and counts the request that ends it (`session.failed`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

import numpy as np

from modelrepo import Manifest
from seqserve_client import codec
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from service.dataplane import Opened, Rejected, StreamSession
from service.engine.inputs import Chunk


class NativeStream:
    def __init__(self, session: StreamSession) -> None:
        self.session = session

    @property
    def open(self) -> bool:
        return self.session.session is not None

    async def chunk(self, request: pb.StreamRequest) -> pb.StreamResponse:
        """The answer to a chunk: its result, or an in-stream error."""
        outputs = await self.session.step(self._inputs, request.chunk)
        response = pb.StreamResponse(seq=request.seq)
        if type(outputs) is Rejected:
            response.error.code, response.error.message = outputs.code.value, outputs.message
        else:
            codec.arrays_to_tensors(outputs, response.result.outputs)  # type: ignore[arg-type]  # built in place
        return response

    def _inputs(self, chunk: pb.Chunk) -> Chunk:
        """The chunk's `input`, or every input by name for a model with several (`inputs`, `input` the first)."""
        if not chunk.inputs:
            return codec.tensor_to_array(chunk.input)
        session = self.session.session
        assert session is not None  # `StreamSession.step` decodes after its open check
        return named_inputs(session.model.manifest, chunk, chunk.inputs)

    def answer(self, request: pb.StreamRequest, kind: str | None) -> pb.StreamResponse | Awaitable[pb.StreamResponse]:
        """The answer to any request but `end`: `open`, `chunk`, `reset`, an empty message; an awaitable for those
        that wait (a chunk, a resume, a reset)."""
        if kind == "chunk":
            return self.chunk(request)
        if kind == "open":
            if request.open.resume and not self.open:
                return self._resume(request)
            return opened_response(request.seq, self.session.open(request.open.model, request.open.version or None))
        if kind == "reset":
            return self._reset(request)
        return error_response(request.seq, self.session.empty(kind or "an empty message"))

    async def end(self) -> None:
        await self.session.end()

    async def _resume(self, request: pb.StreamRequest) -> pb.StreamResponse:
        opened = await self.session.resume(request.open.model, request.open.version or None, request.open.resume)
        return opened_response(request.seq, opened)

    async def _reset(self, request: pb.StreamRequest) -> pb.StreamResponse:
        await self.session.reset()
        return pb.StreamResponse(seq=request.seq, reset=pb.ResetDone())


def opened_response(seq: int, opened: Opened) -> pb.StreamResponse:
    response = pb.StreamResponse(seq=seq)
    message = response.opened
    message.model, message.version, message.session_id = opened.model, opened.version, opened.session_id
    message.provider = opened.provider
    if opened.resume_token:
        message.resume_token, message.position = opened.resume_token, opened.position
    for answer in opened.recent:
        codec.arrays_to_tensors(answer, message.recent.add().outputs)
    return response


def error_response(seq: int, rejected: Rejected) -> pb.StreamResponse:
    return pb.StreamResponse(seq=seq, error=pb.Error(code=rejected.code.value, message=rejected.message))


def named_inputs(manifest: Manifest, message: pb.Chunk | pb.InferRequest, others: Mapping[str, pb.Tensor]
                 ) -> dict[str, np.ndarray]:
    """A native message's inputs by name: `inputs` (the further ones, or all), and `input` (when set) under the
    name of the model's first input."""
    arrays = codec.tensors_to_arrays(others)
    if message.HasField("input"):
        arrays[manifest.input.name] = codec.tensor_to_array(message.input)
    return arrays
