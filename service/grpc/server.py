"""Server assembly: the registry, the servicers, health, reflection and message limits on one grpc.aio server."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb
from service.grpc.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.grpc.native import NativeServicer
from service.grpc.triton import add_triton
from service.metrics import Metrics
from service.registry import Registry
from service.settings import Settings

log = logging.getLogger(__name__)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass
class Serving:
    """A started server and the parts a runner needs: health to flip, the registry to drain, metrics to serve."""

    server: grpc.aio.Server
    port: int
    registry: Registry
    metrics: Metrics
    health: health_aio.HealthServicer

    async def shutdown(self, grace: float) -> None:
        """Refuse new sessions, health NOT_SERVING, let open sessions finish within `grace`, free everything.

        Draining starts before health flips, so a client that sees NOT_SERVING is sure to be refused, and refused by
        us (UNAVAILABLE, with a message): the gRPC server keeps accepting calls until every session has ended or the
        grace is used up. Only then does `server.stop` run with what is left of the grace, because grpc core refuses
        calls that race its shutdown with a status that depends on timing (CANCELLED or UNAVAILABLE).
        """
        deadline = time.monotonic() + grace
        self.registry.begin_drain()
        await self.health.enter_graceful_shutdown()
        if not await self.registry.sessions_ended(grace):
            log.warning("shutdown grace of %.1f s used up with sessions still open; cutting them", grace)
        await self.server.stop(max(0.0, deadline - time.monotonic()))
        await self.registry.close()


def add_native(server: grpc.aio.Server, registry: Registry, metrics: Metrics) -> str:
    pb_grpc.add_SeqServeServicer_to_server(NativeServicer(registry, metrics), server)
    return pb.DESCRIPTOR.services_by_name["SeqServe"].full_name


async def serve(settings: Settings) -> Serving:
    """Load and warm up every model, then start serving on `settings.host:settings.port` (0 = any free port)."""
    metrics = Metrics()
    registry = await Registry.load(settings, metrics)
    limits = settings.max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_send_message_length", limits), ("grpc.max_receive_message_length", limits)]
    )
    services = [add_native(server, registry, metrics)]
    services.append(add_triton(server, registry, settings, metrics))  # Triton/KServe v2: inference.GRPCInferenceService
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection([*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        await registry.close()
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    await server.start()
    for name in ("", *services):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC serving on %s:%d (%s)", settings.host, port, ", ".join(services))
    return Serving(server, port, registry, metrics, health)


async def create_server(settings: Settings) -> tuple[grpc.aio.Server, int, Registry]:
    """The started server, its bound port and its registry (see `serve` for the parts a runner needs)."""
    serving = await serve(settings)
    return serving.server, serving.port, serving.registry
