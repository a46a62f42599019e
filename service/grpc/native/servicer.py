"""The `seqserve.v1.SeqServe` servicer: each RPC converts, delegates to the data plane and converts back.

Errors propagate to the error interceptor (`service/grpc/interceptors.py`), which ends the call with the status
of the one table; inside a `Stream`, the errors the stream survives are answers (`stream.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias

import grpc

from service.engine.errors import ModelNotFound, clip
from service.grpc.cut import OpenStreams
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb
from service.grpc.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.grpc.idle import IdleStreams
from service.grpc.interceptors import REQUEST_MODEL
from service.grpc.native import convert
from service.grpc.native.control import ModelControlRpcs
from service.grpc.native.stream import StreamHandler

if TYPE_CHECKING:
    from service.dataplane import DataPlane

Context: TypeAlias = grpc.aio.ServicerContext


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
            self._idle.enter()
            handler = StreamHandler(self._dataplane, watch)
            try:  # one generator for the whole stream, one WhichOneof per request, the chunk path first
                async for request in requests:
                    kind = request.WhichOneof("kind")
                    session = handler.session
                    if kind == "chunk" and session is not None:
                        response = await handler.step(session, request)
                    elif kind == "end":
                        await handler.end()  # the session ends everywhere (a cut, broken or half-closed one does not)
                        return
                    else:
                        answer = handler.control(request, kind)
                        response = answer if isinstance(answer, pb.StreamResponse) else await answer
                        if waiting and handler.session is not None:
                            waiting = False
                            self._idle.leave()
                    watch.writing = True
                    yield response
                    watch.written()
            except asyncio.CancelledError:
                if (cut := watch.was_cut()) is None:
                    raise
                handler.count_failure(cut)
                handler.hand_off(context)
                raise cut from None
            except Exception as exc:
                handler.count_failure(exc)
                if watch.cut:
                    handler.hand_off(context)
                raise
            finally:
                if waiting:
                    self._idle.leave()
                handler.close()

    async def Infer(self, request: pb.InferRequest, context: Context) -> pb.InferResponse:
        REQUEST_MODEL.set(request.model)  # a failure is counted under it by the error interceptor
        model = self._dataplane.model(request.model, request.version or None)
        state = convert.tensors_to_arrays(request.state) or None
        outputs, final = await self._dataplane.infer_with_state(model, convert.tensor_to_array(request.input), state)
        self._dataplane.count(request.model, "OK")
        response = pb.InferResponse(model=model.manifest.name, version=model.manifest.version)
        convert.arrays_to_tensors(outputs, response.outputs)
        convert.arrays_to_tensors(final, response.state)
        return response

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
