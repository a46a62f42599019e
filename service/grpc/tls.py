"""TLS for the gRPC port: server credentials from `--tls-cert`/`--tls-key`, client certificates required when
`--tls-client-ca` is given (mTLS). Unreadable or mismatched files stop the start (`ConfigurationError`)."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from service.engine.errors import ConfigurationError
from service.settings import Settings
from service.sslcontext import server_context


def read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The gRPC server's credentials, or None for plaintext (no `--tls-cert`)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    check_pair(settings.tls_cert, settings.tls_key)
    pair = (read_pem(settings.tls_key, "TLS key"), read_pem(settings.tls_cert, "TLS certificate"))
    client_ca = None if settings.tls_client_ca is None else read_pem(settings.tls_client_ca, "TLS client CA")
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def metrics_context(settings: Settings) -> ssl.SSLContext | None:
    """`/metrics`' TLS: the gRPC port's certificate (and client CA), or None for plaintext (no certificate, or
    `--no-metrics-tls`)."""
    return server_context(settings) if settings.metrics_tls else None


def check_pair(cert: Path, key: Path) -> None:
    """`ConfigurationError` unless `cert` and `key` are readable PEM files that belong together (grpc core would
    only fail later, at the first handshake)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot use the TLS certificate {cert} with key {key}: {exc}") from None
