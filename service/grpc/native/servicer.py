"""The `seqserve.v1.SeqServe` servicer: each RPC converts, delegates to the data plane and converts back.

Errors propagate to the error interceptor (`service/grpc/interceptors.py`), which ends the call with the status
of the one table; inside a `Stream`, the errors the stream survives are answers (the data plane's
`StreamSession`, in native messages by `service/streaming.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias

import grpc

from seqserve_client import codec
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.dataplane import InferRequest, StreamSession
from service.engine.errors import ModelNotFound, clip
from service.grpc.cut import OpenStreams
from service.grpc.idle import IdleStreams
from service.grpc.native import convert
from service.grpc.native.control import ModelControlRpcs
from service.streaming import NativeStream, named_inputs

if TYPE_CHECKING:
    from modelrepo.manifest import Manifest
    from service.dataplane import DataPlane
    from service.engine.model import ServedModel
    from service.engine.sequences import SequenceFlags

Context: TypeAlias = grpc.aio.ServicerContext
RESUME_KEY = "seqserve-resume-token"  # trailing metadata of a stream cut by a shutdown: `Open{resume}` elsewhere


def add_native(server: grpc.aio.Server, dataplane: DataPlane, streams: OpenStreams, idle: IdleStreams) -> str:
    """Serve the native API on `server`; returns the service's full name."""
    pb_grpc.add_SeqServeServicer_to_server(NativeServicer(dataplane, streams, idle), server)
    return pb.DESCRIPTOR.services_by_name["SeqServe"].full_name


class NativeServicer(ModelControlRpcs, pb_grpc.SeqServeServicer):
    def __init__(self, dataplane: DataPlane, streams: OpenStreams, idle: IdleStreams) -> None:
        self._dataplane = dataplane
        self._streams = streams
        self._idle = idle  # streams open without a session yet (bounded)

    async def Stream(self, requests: AsyncIterator[pb.StreamRequest], context: Context
                     ) -> AsyncIterator[pb.StreamResponse]:
        waiting = True
        with self._streams.watch() as watch:  # raises for a stream that starts after the shutdown's cut
            idle = self._idle.enter()
            idle.arm(watch)
            stream = NativeStream(StreamSession(self._dataplane, on_expired=watch.end))
            try:  # one generator for the whole stream, one WhichOneof per request, the chunk path first
                async for request in requests:
                    kind = request.WhichOneof("kind")
                    if kind == "chunk" and stream.open:
                        response = await stream.chunk(request)
                    elif kind == "end":
                        await stream.end()  # the session ends everywhere (a cut, broken or half-closed one does not)
                        return
                    else:
                        answer = stream.answer(request, kind)
                        response = answer if isinstance(answer, pb.StreamResponse) else await answer
                        if waiting and stream.open:
                            waiting = False
                            idle.leave()
                    watch.writing = True
                    yield response
                    watch.written()
            except asyncio.CancelledError:
                if (cut := watch.was_cut()) is None:
                    raise
                stream.session.failed(cut)
                self._hand_off(stream, context)
                raise cut from None
            except Exception as exc:
                stream.session.failed(exc)
                if watch.cut:
                    self._hand_off(stream, context)
                raise
            finally:
                if waiting:
                    idle.leave()
                stream.session.close()

    @staticmethod
    def _hand_off(stream: NativeStream, context: Context) -> None:
        """A stream cut by a shutdown: its status carries the resume token (trailing metadata `RESUME_KEY`)."""
        if token := stream.session.resume_token:
            context.set_trailing_metadata(((RESUME_KEY, token),))

    async def Infer(self, request: pb.InferRequest, context: Context) -> pb.InferResponse:
        def answer(model: ServedModel, outputs: codec.Arrays) -> pb.InferResponse:
            manifest = model.manifest
            response = pb.InferResponse(model=manifest.name, version=manifest.version)
            for out in manifest.outputs:
                codec.fill_tensor(response.outputs[out.name], outputs[out.name])
            for pair in manifest.state:  # the final state keyed by state input name: feed it back to continue
                codec.fill_tensor(response.state[pair.input], outputs[pair.output])
            return response

        return await self._dataplane.infer(request.model, request.version or None, WholeRequest(request), answer)

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=convert.model_infos(self._dataplane.statuses()))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        infos = [i for i in convert.model_infos(self._dataplane.statuses()) if i.name == request.name]
        if request.version:
            infos = [i for i in infos if i.version == request.version]
        if not infos:
            wanted = f"{clip(request.name)} version {request.version}" if request.version else clip(request.name)
            raise ModelNotFound(f"no model {wanted}")
        newest_ready = [i for i in infos if i.ready] or infos
        return pb.GetModelResponse(model=newest_ready[-1])


class WholeRequest:
    """A native `InferRequest` as the data plane's `Request`: stateless, every output and the final state."""

    def __init__(self, message: pb.InferRequest) -> None:
        self.message = message

    def sequence(self) -> None:
        return None

    def prepare(self, manifest: Manifest, sequence: SequenceFlags | None) -> InferRequest:
        state = codec.tensors_to_arrays(self.message.state) or None
        outputs = (*(out.name for out in manifest.outputs), *(pair.output for pair in manifest.state))
        message = self.message
        x = named_inputs(manifest, message, message.inputs) if message.inputs else codec.tensor_to_array(message.input)
        return InferRequest(x, None, outputs, state)
