"""The web front with the gRPC port's TLS: HTTPS and WSS with the same certificate, client certificates required
with --tls-client-ca (mTLS), plaintext refused."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import tritonclient.http as triton_http

from tests.service.grpc.certs import Certs, make_certs
from tests.service.grpc.helpers import RunningServer

MODEL = "vowels_lstm"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_https_and_wss_with_client_certificates(start_server: Callable[..., RunningServer], certs: Certs) -> None:
    server = start_server(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    port = server.serving.http_port
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

    async def refused(context: ssl.SSLContext | None, scheme: str) -> None:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"{scheme}://localhost:{port}/v2/health/live", ssl=context or False):
                    pass

    asyncio.run(refused(ssl.create_default_context(cafile=str(certs.ca)), "https"))  # no client certificate
    asyncio.run(refused(None, "http"))  # plaintext


def test_a_server_without_client_ca_serves_https_to_anyone_trusting_it(
    start_server: Callable[..., RunningServer], certs: Certs, tmp_path: Path
) -> None:
    server = start_server(tls_cert=certs.server_cert, tls_key=certs.server_key)
    client = triton_http.InferenceServerClient(
        f"localhost:{server.serving.http_port}", ssl=True,
        ssl_context_factory=lambda: ssl.create_default_context(cafile=str(certs.ca)))
    assert client.is_server_ready()
