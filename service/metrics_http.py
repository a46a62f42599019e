"""`/metrics` over HTTP(S) on the server's event loop: no thread per connection, a bounded number of them.

prometheus_client's own server spends a thread per connection, idle or half-open ones included. This one is an
`asyncio` server: a connection costs a coroutine, at most `max_connections` are open (more are closed at once),
a request must arrive within `READ_TIMEOUT_S` and fit `MAX_REQUEST_BYTES`, and TLS (with client certificates for
mTLS) comes from the same `ssl.SSLContext` as the gRPC port's certificate. A scrape renders the families on the
loop; the collector only reads plain counters (see `service/engine/metrics.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 8192


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, max_connections: int) -> None:
        self._registry = registry
        self._max_connections = max_connections
        self._open: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._context: ssl.SSLContext | None = None
        self.port = 0

    @property
    def connections(self) -> int:
        return len(self._open)

    async def start(self, host: str, port: int, context: ssl.SSLContext | None) -> int:
        """Listen on `host:port` (0 = any free port); the port bound. OSError if it cannot bind."""
        self._context = context  # the handshake happens in `_accept`, so a connection counts from its first byte
        self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_REQUEST_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._open):
            task.cancel()
        if self._open:
            await asyncio.wait(list(self._open))
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._open) >= self._max_connections:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._open.add(task)
        try:
            if self._context is not None:
                await writer.start_tls(self._context, ssl_handshake_timeout=READ_TIMEOUT_S)
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            self._open.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (`Connection: close`): GET /metrics, or 404 / 405."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        if len(head) > MAX_REQUEST_BYTES:
            return
        method, _, rest = head.split(b"\r\n", 1)[0].partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            status, body, kind = "405 Method Not Allowed", b"only GET\n", "text/plain"
        elif path != b"/metrics":
            status, body, kind = "404 Not Found", b"try /metrics\n", "text/plain"
        else:
            status, body, kind = "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST
        header = (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n").encode()
        writer.write(header if method == b"HEAD" else header + body)
        await writer.drain()
