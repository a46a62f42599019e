"""Server assembly: the registry, the servicers, health, reflection and message limits on one grpc.aio server,
and the web front (`service/http/`) on the same loop and data plane."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from service.dataplane import DataPlane
from service.engine.errors import ConfigurationError
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.grpc.auth import interceptor as auth_interceptor
from service.grpc.cut import OpenStreams
from service.grpc.idle import IdleStreams
from service.grpc.interceptors import ErrorInterceptor
from service.grpc.native.servicer import add_native
from service.grpc.tls import server_credentials
from service.grpc.triton.servicer import add_triton
from service.http.app import HttpServing, start_http
from service.settings import Settings
from service.startup import check_port_free

log = logging.getLogger(__name__)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
CUT_TIMEOUT_S = 2.0  # for the handlers of cut streams to send their status (they do at once unless stuck)
# grpc's own stop, once our streams are ended: with a grace it says GOAWAY and lets the connections close in order,
# returning as soon as no call is left (unary calls finishing; streams that are not ours, such as a health Watch,
# are cancelled when it runs out); with 0 it cancels and drops them at once, and a proxy may then reset a stream
# whose status it had not read yet (clients see INTERNAL).
STOP_GRACE_S = 1.0


@dataclass
class Serving:
    """A started server and the parts a runner needs: health to flip, the registry to drain, metrics to serve."""

    server: grpc.aio.Server
    port: int
    registry: Registry
    metrics: Metrics
    health: health_aio.HealthServicer
    streams: OpenStreams
    dataplane: DataPlane
    http: HttpServing | None = None  # the web front (KServe v2 REST, WebSocket streams, the page)

    @property
    def http_port(self) -> int:
        return 0 if self.http is None else self.http.port

    async def shutdown(self, grace: float) -> None:
        """Refuse new sessions, health NOT_SERVING, let open sessions finish within `grace`, free everything.

        Every refusal and every cut is ours, UNAVAILABLE with a message, never grpc core's, whose status depends on
        timing (CANCELLED or UNAVAILABLE for a call racing its shutdown; a reset through a proxy for a call it
        cancels). So: drain first (health flips after it, so a client that sees NOT_SERVING is sure to be refused),
        wait until every session has ended or the grace is used up, end the stream RPCs still open ourselves, and
        only then stop the gRPC server, giving the calls left (unary ones, a health Watch) `STOP_GRACE_S`. With a
        shared session store nothing waits: streams are cut at once (their clients resume elsewhere with the
        token in the status's trailing metadata) and Triton sequences simply continue on another replica.
        """
        self.registry.begin_drain()
        await self.health.enter_graceful_shutdown()
        if self.registry.store is not None:  # every session is in the shared store: hand them all off at once
            log.info("handing off every open session to the other replicas (session store %s)",
                     self.registry.store.safe_url)
        elif not await self.registry.sessions_ended(grace):
            log.warning("shutdown grace of %.1f s used up with sessions still open; cutting them", grace)
        if cut := await self.streams.cut(CUT_TIMEOUT_S):
            log.info("ended %d open streams with UNAVAILABLE", cut)
        if self.http is not None and (cut := await self.http.cut(CUT_TIMEOUT_S)):
            log.info("ended %d open WebSocket streams with 1001 (going away)", cut)
        await self.server.stop(STOP_GRACE_S)
        if self.http is not None:
            await self.http.close()
        self.dataplane.close()
        await self.registry.close()


async def serve(settings: Settings) -> Serving:
    """Load and warm up every model, then start serving on `settings.host:settings.port` (0 = any free port)."""
    if not settings.reuse_port:  # --workers binds one port several times, on purpose
        check_port_free(settings.host, settings.port, "gRPC")
        check_port_free(settings.host, settings.http_port, "HTTP")
    metrics = Metrics()
    registry = await Registry.load(settings, metrics)
    dataplane = DataPlane(registry, metrics, settings.require_models)
    limits = settings.max_message_bytes
    try:
        auth = auth_interceptor(settings)  # after the error interceptor: what it raises becomes a status there
    except ConfigurationError:
        await registry.close()
        raise
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(), *([auth] if auth is not None else [])],
        options=[("grpc.max_send_message_length", limits), ("grpc.max_receive_message_length", limits),
                 # explicit (grpc's default is on): only --workers shares the port; otherwise a second server on a
                 # port in use fails instead of silently sharing it
                 ("grpc.so_reuseport", int(settings.reuse_port))],
    )
    streams = OpenStreams()
    idle = IdleStreams(settings.max_streams_without_session, settings.max_streams_without_session_per_client,
                       settings.first_message_timeout)  # shared by both fronts
    services = [add_native(server, dataplane, streams, idle)]
    services.append(add_triton(server, dataplane, settings, streams, idle))  # Triton/KServe v2
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection([*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    address = f"{settings.host}:{settings.port}"
    try:
        credentials = server_credentials(settings)
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except ConfigurationError:
        await registry.close()
        raise
    except RuntimeError:
        port = 0
    if port == 0:
        await registry.close()
        raise ConfigurationError(f"cannot bind the gRPC port {settings.host}:{settings.port}")
    try:
        http = await start_http(settings, dataplane)
    except ConfigurationError:
        await registry.close()
        raise
    await server.start()
    if dataplane.unready is not None:
        log.warning("not ready (--require-models %s): %s; health NOT_SERVING", settings.require_models,
                    dataplane.unready)
    status = health_pb2.HealthCheckResponse.SERVING if dataplane.ready() else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *services):
        await health.set(name, status)
    registry.control.on_change = follow_readiness(health, dataplane, services)
    log.info("gRPC serving on %s:%d (%s)%s", settings.host, port, ", ".join(services),
             "" if credentials is None else " over TLS" + (" (client certificates required)" if settings.tls_client_ca
                                                           else ""))
    return Serving(server, port, registry, metrics, health, streams, dataplane, http)


def follow_readiness(health: health_aio.HealthServicer, dataplane: DataPlane, services: list[str]
                     ) -> Callable[[], None]:
    """What to call when models came or went: health follows readiness (never back to SERVING once draining)."""
    tasks: set[asyncio.Task[None]] = set()

    async def update() -> None:
        status = health_pb2.HealthCheckResponse.SERVING if dataplane.ready() else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *services):
            await health.set(name, status)

    def changed() -> None:
        task = asyncio.get_running_loop().create_task(update())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return changed


async def create_server(settings: Settings) -> tuple[grpc.aio.Server, int, Registry]:
    """The started server, its bound port and its registry (see `serve` for the parts a runner needs)."""
    serving = await serve(settings)
    return serving.server, serving.port, serving.registry
