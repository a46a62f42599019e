"""/metrics with authentication needs a token with the metrics permission, and one peer host cannot hold every
connection (the scrapes of others go on)."""

from __future__ import annotations

import asyncio
import hashlib
import socket

from service.engine.metrics import Metrics
from service.metrics_http import MetricsServer

TOKEN = "scraper-token"


def scrape(port: int, token: str | None = None, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """Status and body of GET /metrics, sent from `source` (another loopback address is another peer host)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as sock:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_with_authentication_a_scrape_needs_a_metrics_token() -> None:
    metrics = MetricsServer(Metrics().registry, 8, tokens=frozenset({hashlib.sha256(TOKEN.encode()).hexdigest()}))
    port = await metrics.start("127.0.0.1", 0, None)
    try:
        for token in (None, "another-token"):
            status, body = await asyncio.to_thread(scrape, port, token)
            assert status == 401 and b"seqserve" not in body
        status, body = await asyncio.to_thread(scrape, port, TOKEN)
        assert status == 200 and b"# HELP" in body
    finally:
        await metrics.close()


async def test_one_peer_cannot_hold_every_connection() -> None:
    metrics = MetricsServer(Metrics().registry, max_connections=8, per_peer=2)
    port = await metrics.start("127.0.0.1", 0, None)
    held = []
    try:
        for _ in range(2):  # idle connections of one peer host: its share
            held.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        while metrics.connections < 2:  # until the server has accepted them (a real event, not a sleep)
            await asyncio.sleep(0)
        extra = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert await asyncio.to_thread(extra.recv, 1) == b""  # closed at once: beyond its peer's share
        extra.close()
        status, _ = await asyncio.to_thread(scrape, port, None, "127.0.0.2")  # another peer still scrapes
        assert status == 200
    finally:
        for sock in held:
            sock.close()
        await metrics.close()


def test_the_metrics_permission_is_read_from_the_tokens_file() -> None:
    from service.settings import Settings
    from service.tokens import metrics_tokens

    tokens = '{"a": {"principal": "alice"}, "' + TOKEN + '": {"principal": "prom", "models": [], "metrics": true}}'
    assert metrics_tokens(Settings(auth_tokens=tokens)) == {hashlib.sha256(TOKEN.encode()).hexdigest()}
    assert metrics_tokens(Settings()) is None  # no authentication: anyone may scrape
