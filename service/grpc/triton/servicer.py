"""The `inference.GRPCInferenceService` servicer (KServe v2 / Triton protocol): each RPC converts and delegates.

Every RPC converts its request, asks the protocol-neutral data plane (`service/dataplane/`: the registry's
models, Triton sequences, stateless runs, request counters) and converts the answer back. Errors propagate to the
error interceptor (`service/grpc/interceptors.py`), which ends the call with the status of the one table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import grpc
import numpy as np

from service.dataplane.kserve import parse_version
from service.engine.errors import InvalidInput, Unavailable
from service.grpc.cut import CUT_MESSAGE, OpenStreams
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.grpc.generated.inference import grpc_service_pb2_grpc as pb_grpc
from service.grpc.idle import IdleStreams
from service.grpc.triton.config import model_config, model_metadata, model_statistics, repository_index
from service.grpc.triton.convert import TritonRequest, fill_response
from service.grpc.triton.stream import TritonStream

if TYPE_CHECKING:
    from service.dataplane import DataPlane
    from service.engine.model import ServedModel
    from service.settings import Settings

Context: TypeAlias = grpc.aio.ServicerContext
R = TypeVar("R", bound=pb.ModelInferResponse)


def add_triton(server: grpc.aio.Server, dataplane: DataPlane, settings: Settings, streams: OpenStreams,
               idle: IdleStreams) -> str:
    """Serve the Triton protocol on `server`; returns the service's full name."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(TritonServicer(dataplane, settings, streams, idle), server)
    return pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class TritonServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, settings: Settings, streams: OpenStreams, idle: IdleStreams) -> None:
        self._dataplane = dataplane
        self._settings = settings
        self._streams = streams
        self._idle = idle  # streams open without a request yet (bounded)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._dataplane.model_ready(request.name, parse_version(request.version)))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        name, release, extensions = self._dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=name, version=release, extensions=extensions)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        model = self._model(request.name, request.version)
        return model_metadata(model.manifest, self._dataplane.versions(model.manifest.name))

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        model = self._model(request.name, request.version)
        config = model_config(model.manifest, model.provider, self._settings, model.tuning)
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        models = [self._model(request.name, request.version)] if request.name else self._dataplane.ready_models()
        return pb.ModelStatisticsResponse(model_stats=[model_statistics(m.manifest, m.stats()) for m in models])

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        return repository_index(self._dataplane.statuses(), request.ready)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        """Load or reload a model from the repository (docs/model-control.md); Triton's "config" and "file:"
        parameters (a model sent with the request) are refused."""
        if request.parameters:
            raise InvalidInput(f"RepositoryModelLoad takes no parameters here (got {', '.join(request.parameters)}): "
                               "put the model into the repository and load it by name")
        await self._dataplane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        """Unload every version; FAILED_PRECONDITION with live sequences unless the parameter `force` is true."""
        unknown = set(request.parameters) - {"force", "unload_dependents"}  # no model depends on another here
        if unknown:
            raise InvalidInput(f"unknown RepositoryModelUnload parameters: {', '.join(sorted(unknown))}")
        force = request.parameters["force"].bool_param if "force" in request.parameters else False
        await self._dataplane.unload_model(request.model_name, force)
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        return await self.start(request, pb.ModelInferResponse())

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        idle = self._idle.enter()
        stream = TritonStream(requests, self.start, self._settings.stream_queue_size, on_first=idle.leave)
        try:
            with self._streams.watch(on_cut=stream.stop_reading) as watch:
                idle.arm(watch)
                async for answer in stream.answers():
                    yield answer
                if stream.stopped:  # cut (a shutdown, no first message): every request read was answered
                    raise watch.error or Unavailable(CUT_MESSAGE)
        finally:
            stream.first_read()  # still idle (no request ever came): leave now

    def start(self, request: pb.ModelInferRequest, response: R) -> asyncio.Future[R]:
        """Start one inference whose answer fills `response` (a `ModelInferResponse`) in place; a sequence request
        takes its place in its sequence before this returns. Errors found at once raise here."""
        def fill(model: ServedModel, outputs: dict[str, np.ndarray]) -> R:
            fill_response(response, request, model.manifest, outputs)
            return response

        return self._dataplane.infer(request.model_name, request.model_version, TritonRequest(request), fill)

    def _model(self, name: str, version_text: str) -> ServedModel:
        return self._dataplane.model(name, parse_version(version_text))
