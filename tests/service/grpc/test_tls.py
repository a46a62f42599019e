"""TLS and mTLS through the real server with real certificates (made at test time): the SDK, the CLI, the health
probe, the load generator and `/metrics`; plaintext and untrusted peers are refused."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seqserve_client import AsyncClient, Client, Security, ServerError
from seqserve_client.__main__ import main as cli
from service import healthcheck, memory
from service.engine.errors import ConfigurationError
from service.engine.metrics import Metrics
from service.grpc.tls import metrics_context, server_credentials
from service.loadtest import LoadConfig, run_load
from service.metrics_http import MetricsServer
from service.settings import Settings
from tests.deploy.topology import Replica
from tests.service.grpc.certs import Certs, make_certs
from tests.service.grpc.helpers import RunningServer

MODEL = "vowels_lstm"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_server(start_server: Callable[..., RunningServer], certs: Certs, mtls: bool = False) -> RunningServer:
    return start_server(tls_cert=certs.server_cert, tls_key=certs.server_key,
                        tls_client_ca=certs.ca if mtls else None)


def models_via(server: RunningServer, security: Security) -> list[str]:
    with Client(server.target, security=security) as client:
        return [m.name for m in client.models()]


def test_tls_serves_clients_trusting_the_ca_and_refuses_plaintext_and_strangers(
    start_server: Callable[..., RunningServer], certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    server = tls_server(start_server, certs)
    assert MODEL in models_via(server, Security(ca=certs.ca))
    for refused in (Security(), Security(ca=certs.stranger_ca)):
        with pytest.raises(ServerError) as failure:
            models_via(server, refused)
        assert failure.value.code.name == "UNAVAILABLE"
    assert healthcheck.main(["--target", server.target, "--tls-ca", str(certs.ca)]) == 0
    assert healthcheck.main(["--target", server.target]) == 1
    assert cli(["--target", server.target, "--tls-ca", str(certs.ca), "models"]) == 0
    assert MODEL in capsys.readouterr().out


async def stream_once(target: str, security: Security) -> dict[str, np.ndarray]:
    async with AsyncClient(target, security=security) as client, client.stream(MODEL) as stream:
        return await stream.send(np.zeros((2, 12), np.float32))


def test_mtls_needs_a_client_certificate_from_the_trusted_ca(
    start_server: Callable[..., RunningServer], certs: Certs
) -> None:
    server = tls_server(start_server, certs, mtls=True)
    mine = Security(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    assert MODEL in models_via(server, mine)
    assert asyncio.run(stream_once(server.target, mine))
    for refused in (Security(ca=certs.ca), Security(ca=certs.ca, cert=certs.stranger_cert, key=certs.stranger_key)):
        with pytest.raises(ServerError) as failure:
            models_via(server, refused)
        assert failure.value.code.name == "UNAVAILABLE"
    flags = ["--target", server.target, "--tls-ca", str(certs.ca)]
    assert healthcheck.main([*flags, "--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]) == 0
    assert healthcheck.main(flags) == 1
    report = run_load(LoadConfig(target=server.target, streams=2, chunks=3, progress=False, security=mine))
    assert report.errors == {} and report.chunks == 6


def test_tls_settings_go_together_and_bad_files_stop_the_start(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(tls_cert=certs.server_cert)
    with pytest.raises(ValueError, match="needs --tls-cert"):
        Settings(tls_client_ca=certs.ca)
    with pytest.raises(ConfigurationError, match="cannot use the TLS certificate"):
        server_credentials(Settings(tls_cert=certs.server_cert, tls_key=certs.client_key))  # not its key
    with pytest.raises(ConfigurationError):
        server_credentials(Settings(tls_cert=tmp_path / "missing.pem", tls_key=certs.server_key))


def fetch(url: str, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=10, context=context) as reply:
        return reply.read().decode()


async def test_metrics_over_mtls_and_idle_connections_cost_no_thread_and_are_bounded(certs: Certs) -> None:
    settings = Settings(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    metrics = MetricsServer(Metrics().registry, max_connections=4)
    port = await metrics.start("127.0.0.1", 0, metrics_context(settings))
    try:
        url = f"https://127.0.0.1:{port}/metrics"
        client = ssl.create_default_context(cafile=certs.ca)
        client.load_cert_chain(certs.client_cert, certs.client_key)
        assert "seqserve_" in await asyncio.to_thread(fetch, url, client)
        with pytest.raises(OSError):  # no client certificate
            await asyncio.to_thread(fetch, url, ssl.create_default_context(cafile=certs.ca))
        threads = threading.active_count()
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]  # never send a byte
        while metrics.connections < 4:  # waiting for their handshakes: each is a coroutine, not a thread
            await asyncio.sleep(0.01)
        assert metrics.connections == 4 and threading.active_count() == threads
        for _, writer in idle:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    finally:
        await metrics.close()


def test_python_m_service_serves_metrics_over_tls(models_root: Path, certs: Certs) -> None:
    """The process as deployed: `/metrics` speaks TLS with the gRPC port's certificate; plaintext is refused.
    It carries malloc's account of the heap too (registered by `python -m service`, on glibc)."""
    replica = Replica(models_root, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                      security=Security(ca=certs.ca))
    try:
        https = fetch(f"https://localhost:{replica.metrics_port}/metrics", ssl.create_default_context(cafile=certs.ca))
        assert "seqserve_requests_total" in https
        assert ('seqserve_malloc_bytes{kind="in_use"}' in https) == (memory.glibc() is not None)
        with pytest.raises(OSError):
            fetch(f"http://127.0.0.1:{replica.metrics_port}/metrics")
    finally:
        replica.stop()
