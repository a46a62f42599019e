"""`/metrics` over HTTP(S) on the server's event loop: no thread per connection, a bounded number of them.

prometheus_client's own server spends a thread per connection, idle or half-open ones included. This one is an
`asyncio` server: a connection costs a coroutine, at most `max_connections` are open (more are closed at once),
at most `per_peer` from one peer host (so one client cannot hold every connection and block the scrapes), a request
must arrive within `READ_TIMEOUT_S` and fit `MAX_REQUEST_BYTES`, and TLS (with client certificates for mTLS) comes
from the same `ssl.SSLContext` as the gRPC port's certificate. With authentication on (`tokens`), a scrape must
carry `Authorization: Bearer <token>` of a grant with `"metrics": true`, else 401. A scrape renders the families on the
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
    def __init__(self, registry: CollectorRegistry, max_connections: int, per_peer: int = 0,
                 tokens: frozenset[str] | None = None) -> None:
        self._registry = registry
        self._max_connections = max_connections
        self._per_peer = per_peer or max_connections  # 0: no limit of its own
        self._tokens = tokens  # SHA-256 hex of the tokens that may scrape; None: anyone may
        self._by_peer: dict[str, int] = {}
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
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if len(self._open) >= self._max_connections or self._by_peer.get(host, 0) >= self._per_peer:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._open.add(task)
        self._by_peer[host] = self._by_peer.get(host, 0) + 1
        try:
            if self._context is not None:
                await writer.start_tls(self._context, ssl_handshake_timeout=READ_TIMEOUT_S)
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            self._open.discard(task)
            if left := self._by_peer[host] - 1:
                self._by_peer[host] = left
            else:
                del self._by_peer[host]
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
        elif self._tokens is not None and not self._authorized(head):
            status, body, kind = "401 Unauthorized", b"a token with the metrics permission is needed\n", "text/plain"
        else:
            status, body, kind = "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST
        header = (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n").encode()
        if status.startswith("401"):
            header = header.replace(b"\r\n\r\n", b"\r\nWWW-Authenticate: Bearer\r\n\r\n", 1)
        writer.write(header if method == b"HEAD" else header + body)
        await writer.drain()

    def _authorized(self, head: bytes) -> bool:
        from service.tokens import token_digest  # (tokens imports the settings; this module stays light)

        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                digest = token_digest(value.decode("latin-1"))
                return digest is not None and digest in self._tokens  # type: ignore[operator]
        return False
