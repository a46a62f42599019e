"""The web front with the gRPC port's TLS: HTTPS and WSS with the same certificate, client certificates required
with --tls-client-ca (mTLS), plaintext refused."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import tritonclient.http as triton_http

from bench.procs import real_server
from tests.service.grpc.certs import Certs, make_certs
from tests.service.grpc.helpers import RunningServer

MODEL = "vowels_lstm"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_https_and_wss_with_client_certificates(models_root: Path, certs: Certs) -> None:
    """A server process of its own: asyncio leaves the server side of a connection whose TLS handshake it refused to
    the garbage collector, which in an in-process server shows up as an unraisable ResourceWarning in a later test."""
    flags = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--tls-client-ca", str(certs.ca)]
    with real_server(models_root, flags) as server:
        assert server.http_target is not None
        _check_mtls(int(server.http_target.rsplit(":", 1)[1]), certs)


def _check_mtls(port: int, certs: Certs) -> None:
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    trusted.load_cert_chain(certs.client_cert, certs.client_key)

    async def session() -> tuple[int, int | None]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://localhost:{port}/v2/models/{MODEL}", ssl=trusted) as reply:
                status = reply.status
            async with http.ws_connect(f"wss://localhost:{port}/v2/models/{MODEL}/stream", ssl=trusted) as ws:
                await ws.send_str(json.dumps({"seq": 0, "open": {}}))
                assert "opened" in json.loads((await ws.receive()).data)
                await ws.send_str(json.dumps({"seq": 1, "end": {}}))
                await ws.receive()
                return status, ws.close_code

    assert asyncio.run(session()) == (200, 1000)
    client = triton_http.InferenceServerClient(f"localhost:{port}", ssl=True, ssl_context_factory=lambda: trusted)
    assert client.is_model_ready(MODEL)

    # Refused at the TLS layer: no HTTP answer comes back (plain sockets, each closed by `with`).
    assert _answer(port, ssl.create_default_context(cafile=str(certs.ca))) is None  # no client certificate
    assert _answer(port, None) is None  # plaintext
    assert (_answer(port, trusted) or b"").startswith(b"HTTP/1.1 200")  # the same request with a certificate


def _answer(port: int, context: ssl.SSLContext | None) -> bytes | None:
    """The first bytes the server answers a GET /v2/health/live with, or None when it refuses the connection (a
    TLS alert, a reset or a close before any HTTP)."""
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("localhost", port), timeout=10) as raw:
        try:
            if context is None:
                raw.sendall(request)
                reply = raw.recv(64)
            else:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(request)  # TLS 1.3: a missing client certificate is refused after the handshake
                    reply = tls.recv(64)
        except (ssl.SSLError, ConnectionError):
            return None
    return reply if reply.startswith(b"HTTP/") else None


def test_a_server_without_client_ca_serves_https_to_anyone_trusting_it(
    start_server: Callable[..., RunningServer], certs: Certs, tmp_path: Path
) -> None:
    server = start_server(tls_cert=certs.server_cert, tls_key=certs.server_key)
    client = triton_http.InferenceServerClient(
        f"localhost:{server.serving.http_port}", ssl=True,
        ssl_context_factory=lambda: ssl.create_default_context(cafile=str(certs.ca)))
    assert client.is_server_ready()
