"""The native model-control RPCs (`LoadModel`, `UnloadModel`, `RepositoryIndex`): convert and delegate to the data
plane, as every other RPC does (docs/model-control.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeAlias

import grpc

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

if TYPE_CHECKING:
    from service.dataplane import DataPlane
    from service.engine.registry import ModelStatus

Context: TypeAlias = grpc.aio.ServicerContext
STATES = {"READY": pb.VERSION_STATE_READY, "LOADING": pb.VERSION_STATE_LOADING,
          "UNLOADING": pb.VERSION_STATE_UNLOADING, "UNAVAILABLE": pb.VERSION_STATE_UNAVAILABLE}


def version_statuses(statuses: Iterable[ModelStatus]) -> list[pb.VersionStatus]:
    return [pb.VersionStatus(name=s.name, version=s.version, state=STATES[s.state], reason=s.reason,
                             sessions=s.sessions, newest=s.newest) for s in statuses]


class ModelControlRpcs:
    """Mixed into the native servicer, which sets `_dataplane`."""

    _dataplane: DataPlane

    async def LoadModel(self, request: pb.LoadModelRequest, context: Context) -> pb.LoadModelResponse:
        statuses = await self._dataplane.load_model(request.model)
        return pb.LoadModelResponse(versions=version_statuses(statuses))

    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Context) -> pb.UnloadModelResponse:
        ended, statuses = await self._dataplane.unload_model(request.model, request.force)
        return pb.UnloadModelResponse(versions=version_statuses(statuses), sessions_ended=ended)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context
                              ) -> pb.RepositoryIndexResponse:
        statuses = [s for s in self._dataplane.statuses() if s.ready or not request.ready_only]
        return pb.RepositoryIndexResponse(versions=version_statuses(statuses))
