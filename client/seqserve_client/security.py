"""How a client reaches a hardened server: TLS (a CA to trust, a client certificate for mTLS) and a bearer token.

`Security` makes the channel for the SDK (`Client`, `AsyncClient`), the CLI, the load generator and the health
probe. TLS is on when a CA, a client certificate or `tls=True` is given (`tls=True` alone trusts the system's
roots). The token travels as `authorization: Bearer <token>` metadata on every call, with or without TLS (a token
over plaintext is readable by anyone on the path: use it only on loopback or behind a TLS-terminating proxy).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "SEQSERVE_TOKEN"  # the CLI's and probe's default token, so it stays off the command line
ENV_PREFIX = "SEQSERVE_CLIENT_"  # defaults of the TLS flags (the server's own settings are SEQSERVE_TLS_*)


@dataclass(frozen=True)
class Security:
    ca: Path | None = None  # PEM of the CA that signed the server's certificate
    cert: Path | None = None  # PEM client certificate (mTLS) and its key
    key: Path | None = None
    server_name: str | None = None  # the name to check the server's certificate against (default: the target's)
    token: str | None = None
    tls: bool = False

    @property
    def secure(self) -> bool:
        return self.tls or self.ca is not None or self.cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return None if path is None else path.read_bytes()

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))

    def options(self) -> list[tuple[str, Any]]:
        return [] if self.server_name is None else [("grpc.ssl_target_name_override", self.server_name)]

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self.token is None else (("authorization", f"Bearer {self.token}"),)

    def channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A blocking channel to `target` (TLS when asked for; the token on every call)."""
        options = [*options, *self.options()]
        if self.secure:
            channel = grpc.secure_channel(target, self.credentials(), options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        return channel if self.token is None else grpc.intercept_channel(channel, _Metadata(self.metadata()))

    def aio_channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """An asyncio channel to `target` (TLS when asked for; the token on every call)."""
        options = [*options, *self.options()]
        interceptors = None if self.token is None else _aio_interceptors(self.metadata())
        if self.secure:
            return grpc.aio.secure_channel(target, self.credentials(), options=options, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


PLAIN = Security()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The client flags: --tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name, --token (each defaults to its
    `SEQSERVE_CLIENT_*` variable, so a container's health probe needs no arguments)."""
    def env(name: str) -> str | None:
        return os.environ.get(f"{ENV_PREFIX}{name}") or None

    parser.add_argument("--tls", action="store_true", help="speak TLS, trusting the system's CAs (or --tls-ca)")
    parser.add_argument("--tls-ca", type=Path, default=env("TLS_CA"),
                        help=f"PEM CA bundle to trust for the server's certificate (TLS; env {ENV_PREFIX}TLS_CA)")
    parser.add_argument("--tls-cert", type=Path, default=env("TLS_CERT"),
                        help=f"PEM client certificate, for servers requiring one (mTLS; env {ENV_PREFIX}TLS_CERT)")
    parser.add_argument("--tls-key", type=Path, default=env("TLS_KEY"),
                        help=f"PEM private key of --tls-cert (env {ENV_PREFIX}TLS_KEY)")
    parser.add_argument("--tls-server-name", default=env("TLS_SERVER_NAME"),
                        help=f"name to check the server's certificate against (env {ENV_PREFIX}TLS_SERVER_NAME)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"bearer token for servers with authentication (default: env {TOKEN_ENV})")


def from_arguments(args: argparse.Namespace) -> Security:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("--tls-cert and --tls-key go together")
    return Security(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name, args.token or None, args.tls)


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
                grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds fixed metadata (the token) to every call of a blocking channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        return _with_metadata(details, self._metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def _with_metadata(details: Any, metadata: tuple[tuple[str, str], ...]) -> Any:
    return _Details(details.method, details.timeout, (*(details.metadata or ()), *metadata), details.credentials,
                    getattr(details, "wait_for_ready", None), getattr(details, "compression", None))


@dataclass(frozen=True)
class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def _aio_interceptors(metadata: tuple[tuple[str, str], ...]) -> list[grpc.aio.ClientInterceptor]:
    async def add(continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_aio_metadata(details, metadata), request)

    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
        intercept_unary_unary = staticmethod(add)  # type: ignore[assignment]

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
        intercept_unary_stream = staticmethod(add)  # type: ignore[assignment]

    class StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
        intercept_stream_unary = staticmethod(add)  # type: ignore[assignment]

    class StreamStream(grpc.aio.StreamStreamClientInterceptor):
        intercept_stream_stream = staticmethod(add)  # type: ignore[assignment]

    return [UnaryUnary(), UnaryStream(), StreamUnary(), StreamStream()]


def _with_aio_metadata(details: grpc.aio.ClientCallDetails, metadata: tuple[tuple[str, str], ...]
                       ) -> grpc.aio.ClientCallDetails:
    merged = grpc.aio.Metadata(*(tuple(details.metadata or ())), *metadata)
    return grpc.aio.ClientCallDetails(details.method, details.timeout, merged, details.credentials,
                                      details.wait_for_ready)

