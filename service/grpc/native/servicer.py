"""The `seqserve.v1.SeqServe` servicer: each RPC converts, delegates to the engine and converts back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn, TypeAlias

import grpc

from service.engine.errors import ModelNotFound
from service.grpc.cut import OpenStreams
from service.grpc.errors import to_status
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb
from service.grpc.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.grpc.native import convert
from service.grpc.native.stream import UNKNOWN_MODEL, StreamHandler

if TYPE_CHECKING:
    from service.engine.metrics import Metrics
    from service.engine.registry import Registry

Context: TypeAlias = grpc.aio.ServicerContext


class NativeServicer(pb_grpc.SeqServeServicer):
    def __init__(self, registry: Registry, metrics: Metrics, streams: OpenStreams) -> None:
        self._registry = registry
        self._metrics = metrics
        self._streams = streams

    async def Stream(self, requests: AsyncIterator[pb.StreamRequest], context: Context
                     ) -> AsyncIterator[pb.StreamResponse]:
        handler = StreamHandler(self._registry, self._metrics)
        with self._streams.watch() as watch:
            try:  # one generator for the whole stream, one WhichOneof per request, the chunk path first
                async for request in requests:
                    kind = request.WhichOneof("kind")
                    session = handler.session
                    if kind == "chunk" and session is not None:
                        response = await handler.step(session, request)
                    elif kind == "end":
                        return
                    else:
                        response = handler.control(request, kind)
                    watch.writing = True
                    yield response
                    watch.written()
            except asyncio.CancelledError:
                if (cut := watch.was_cut()) is None:
                    raise
                await self._abort(context, handler.model_label, cut)
            except Exception as exc:
                await self._abort(context, handler.model_label, exc)
            finally:
                handler.close()

    async def Infer(self, request: pb.InferRequest, context: Context) -> pb.InferResponse:
        try:
            model = self._registry.get(request.model, request.version or None)
            state = convert.tensors_to_arrays(request.state) or None
            outputs, final = await model.infer(convert.tensor_to_array(request.input), state)
        except Exception as exc:
            await self._abort(context, self._label(request.model), exc)
        self._metrics.count_request(model.manifest.name, "OK")
        response = pb.InferResponse(model=model.manifest.name, version=model.manifest.version)
        convert.arrays_to_tensors(outputs, response.outputs)
        convert.arrays_to_tensors(final, response.state)
        return response

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=convert.model_infos(self._registry.statuses()))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        infos = [i for i in convert.model_infos(self._registry.statuses()) if i.name == request.name]
        if request.version:
            infos = [i for i in infos if i.version == request.version]
        if not infos:
            wanted = f"{request.name!r} version {request.version}" if request.version else repr(request.name)
            await self._abort(context, UNKNOWN_MODEL, ModelNotFound(f"no model {wanted}"), count=False)
        newest_ready = [i for i in infos if i.ready] or infos
        return pb.GetModelResponse(model=newest_ready[-1])

    async def _abort(self, context: Context, model: str, exc: Exception, count: bool = True) -> NoReturn:
        code, message = to_status(exc)
        if count:
            self._metrics.count_request(model, code.name)
        await context.abort(code, message)
        raise AssertionError("context.abort() always raises")

    def _label(self, name: str) -> str:
        """The metrics label for a requested model name: clients cannot mint new label values."""
        return name if any(s.name == name for s in self._registry.statuses()) else UNKNOWN_MODEL
