"""The `inference.GRPCInferenceService` servicer (KServe v2 / Triton protocol): each RPC converts and delegates.

Same engine as the native API: the registry's models, their sessions, batchers and limits. Sequences (Triton's
sequence extension) live in a `Sequences` table; requests without a sequence_id run statelessly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
import numpy as np

from service.engine.errors import InvalidInput, SeqServeError, Unavailable
from service.engine.sequences import Sequences, StepResult
from service.grpc.cut import CUT_MESSAGE, OpenStreams
from service.grpc.errors import to_status
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.grpc.generated.inference import grpc_service_pb2_grpc as pb_grpc
from service.grpc.native.stream import UNKNOWN_MODEL
from service.grpc.triton.config import model_config, model_metadata, model_statistics, repository_index
from service.grpc.triton.convert import InferCall, outputs_to_response, parse_version, request_to_call
from service.grpc.triton.stream import TritonStream

if TYPE_CHECKING:
    from service.engine.metrics import Metrics
    from service.engine.model import ServedModel
    from service.engine.registry import Registry
    from service.settings import Settings

Context: TypeAlias = grpc.aio.ServicerContext
R = TypeVar("R")
EXTENSIONS = ("model_configuration", "statistics", "parameters", "sequence", "sequence(string_id)")


def add_triton(
    server: grpc.aio.Server, registry: Registry, settings: Settings, metrics: Metrics, streams: OpenStreams
) -> str:
    """Serve the Triton protocol on `server`; returns the service's full name."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(TritonServicer(registry, settings, metrics, streams), server)
    return pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def status_on_error(rpc: Callable[[Any, Any, Context], Awaitable[R]]) -> Callable[[Any, Any, Context], Awaitable[R]]:
    """End a unary RPC with the status code and safe message of whatever it raised (counted for ModelInfer)."""

    @wraps(rpc)
    async def mapped(self: TritonServicer, request: Any, context: Context) -> R:
        try:
            return await rpc(self, request, context)
        except Exception as exc:
            code, message = to_status(exc)
            if isinstance(request, pb.ModelInferRequest):
                self._count(request, code.name)
            await context.abort(code, message)
            raise  # abort() always raises; this line only informs the type checker

    return mapped


class TritonServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics, streams: OpenStreams) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._streams = streams
        self._sequences = Sequences()

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=not self._registry.draining)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        try:
            self._registry.get(request.name, parse_version(request.version))
        except SeqServeError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=not self._registry.draining)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="seqserve", version=version("seqserve"), extensions=EXTENSIONS)

    @status_on_error
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        model = self._model(request.name, request.version)
        versions = sorted(s.version for s in self._registry.statuses() if s.name == model.manifest.name)
        return model_metadata(model.manifest, versions)

    @status_on_error
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        model = self._model(request.name, request.version)
        return pb.ModelConfigResponse(config=model_config(model.manifest, model.provider, self._settings))

    @status_on_error
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        if request.name:
            models = [self._model(request.name, request.version)]
        else:
            models = [self._registry.get(s.name, s.version) for s in self._registry.statuses() if s.ready]
        return pb.ModelStatisticsResponse(model_stats=[model_statistics(m.manifest, m.stats()) for m in models])

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        return repository_index(self._registry.statuses(), request.ready)

    @status_on_error
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        response = await self._start(request)
        self._count(request, "OK")
        return response

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        stream = TritonStream(requests, self._start, self._count, self._settings.stream_queue_size)
        with self._streams.watch(on_cut=stream.stop_reading):
            try:
                async with contextlib.aclosing(stream.answers()) as answers:
                    async for answer in answers:
                        yield answer
            except Exception as exc:  # in-stream errors are answers; this ends the stream (a bug)
                await context.abort(*to_status(exc))
            if stream.stopped:  # cut by a shutdown: every request read was answered; the rest never will be
                await context.abort(*to_status(Unavailable(CUT_MESSAGE)))

    def _start(self, request: pb.ModelInferRequest) -> asyncio.Future[pb.ModelInferResponse]:
        """Start one inference; a sequence request takes its place in its sequence before this returns."""
        model = self._model(request.model_name, request.model_version)
        call = request_to_call(request, model.manifest)
        if call.sequence is None:
            return asyncio.ensure_future(self._stateless(request, model, call))
        if call.x.shape[0] != 1:
            raise InvalidInput(f"a sequence request carries one sequence: batch size 1, got {call.x.shape[0]}")
        state_outputs = {pair.output for pair in model.manifest.state}
        want_state = any(name in state_outputs for name in call.outputs)

        def respond(result: StepResult) -> pb.ModelInferResponse:
            outputs = {name: array[np.newaxis] for name, array in result.outputs.items()}  # (1, time, size)
            state = {name: array[np.newaxis] for name, array in (result.state or {}).items()}
            return self._respond(request, model, call, outputs, state)

        return self._sequences.submit(model, call.sequence, call.x[0], respond, want_state=want_state)

    async def _stateless(self, request: pb.ModelInferRequest, model: ServedModel, call: InferCall
                         ) -> pb.ModelInferResponse:
        outputs, state = await model.infer(call.x)
        return self._respond(request, model, call, outputs, state)

    def _respond(
        self,
        request: pb.ModelInferRequest,
        model: ServedModel,
        call: InferCall,
        outputs: dict[str, np.ndarray],
        state: dict[str, np.ndarray],
    ) -> pb.ModelInferResponse:
        """The requested outputs, in the order asked for; state outputs under their output names."""
        by_output = {pair.output: state[pair.input] for pair in model.manifest.state if pair.input in state}
        arrays = {name: outputs[name] if name in outputs else by_output[name] for name in call.outputs}
        return outputs_to_response(request, model.manifest, arrays)

    def _model(self, name: str, version_text: str) -> ServedModel:
        return self._registry.get(name, parse_version(version_text))

    def _count(self, request: pb.ModelInferRequest, code: str) -> None:
        known = any(s.name == request.model_name for s in self._registry.statuses())
        self._metrics.count_request(request.model_name if known else UNKNOWN_MODEL, code)
