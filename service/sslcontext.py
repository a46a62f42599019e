"""The one server-side `ssl.SSLContext` built from the gRPC port's certificate (and client CA), for every listener
that speaks TLS through Python's ssl module: `/metrics` and the HTTP front."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS 1.2+ with `--tls-cert`/`--tls-key`, client certificates required with `--tls-client-ca`; None without a
    certificate (plaintext)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(settings.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
