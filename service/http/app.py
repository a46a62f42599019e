"""The web front's assembly: one aiohttp application on the running (grpc.aio) loop, on `--http-port`, with the
gRPC port's TLS, authentication, message limit and data plane; `cut` and `close` for the shutdown."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from service.dataplane import DataPlane
from service.engine.access import CLIENT
from service.engine.errors import ConfigurationError, SeqServeError
from service.http.auth import HttpAuth
from service.http.errors import error_body, error_response
from service.http.rest import Rest
from service.http.ws import Streams
from service.settings import Settings
from service.sslcontext import server_context

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
CLOSE_TIMEOUT_S = 2.0  # a socket's close handshake, and the runner's wait for handlers at the end
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class HttpServing:
    runner: web.AppRunner
    port: int
    streams: Streams

    async def cut(self, timeout: float) -> int:
        return await self.streams.cut(timeout)

    async def close(self) -> None:
        await self.runner.cleanup()


def build_app(settings: Settings, dataplane: DataPlane) -> tuple[web.Application, Streams]:
    auth = HttpAuth(settings)
    streams = Streams(dataplane, auth, settings)

    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Sets `CLIENT` for the request (or 401); a domain error becomes its status with `{"error": ...}`."""
        try:
            if request.path.startswith("/v2/") and not request.path.endswith("/stream"):
                client = auth.client(request) if not auth.exempt(request.path) else None
                if isinstance(client, SeqServeError):
                    raise client
                if client is not None:
                    CLIENT.set(client)
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no route (404), a body over the limit (413), ...
            if exc.status < 400:
                raise
            return web.Response(status=exc.status, body=error_body(exc.text or exc.reason),
                                content_type="application/json")
        except Exception as exc:  # the table's code, or 500 with the generic message (logged once)
            return error_response(exc)

    app = web.Application(client_max_size=settings.max_message_bytes, middlewares=[errors_and_auth])
    app.add_routes(Rest(dataplane).routes())
    app.router.add_get("/v2/models/{name}/stream", streams.handle)
    if STATIC.is_dir():
        app.router.add_get("/", _index)
        app.router.add_static("/", STATIC, show_index=False, follow_symlinks=False)
    return app, streams


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def http_context(settings: Settings) -> ssl.SSLContext | None:
    """The gRPC port's certificate (and client CA) for HTTPS / WSS; None for plaintext."""
    return server_context(settings)


async def start_http(settings: Settings, dataplane: DataPlane) -> HttpServing:
    """Serve the web front on `settings.host:settings.http_port` (0: a free port)."""
    app, streams = build_app(settings, dataplane)
    # The shutdown has closed every socket already (with 1001, waiting `CLOSE_TIMEOUT_S` for each answer): the
    # runner's own wait for handlers still running is bounded as short, so a SIGTERM never waits on a client.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_TIMEOUT_S)
    await runner.setup()
    context = http_context(settings)
    site = web.TCPSite(runner, settings.host, settings.http_port, ssl_context=context,
                       reuse_port=settings.reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(f"cannot bind the HTTP port {settings.host}:{settings.http_port}: "
                                 f"{exc.strerror or exc}") from None
    sockets = getattr(site._server, "sockets", None) or ()  # the bound port, for --http-port 0
    port = sockets[0].getsockname()[1] if sockets else settings.http_port
    log.info("HTTP serving on %s:%d (KServe v2 REST, WebSocket streams, the page)%s", settings.host, port,
             "" if context is None else " over TLS")
    return HttpServing(runner, port, streams)
