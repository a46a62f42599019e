"""Authentication for every RPC of every service, in one interceptor beside the error interceptor.

With `--auth-tokens` (a JSON file, or the JSON itself) each call must carry `authorization: Bearer <token>`; the
token names a principal, the models it may use and its session quota:

    {"<token>": {"principal": "alice", "models": ["vowels_lstm"], "max_sessions": 64},
     "sha256:<hex of the token's SHA-256>": {"principal": "bob"},          # models: every one; quota: the default
     "<scraper's token>": {"principal": "prometheus", "models": [], "metrics": true},
     "<operator's token>": {"principal": "ops", "control": true}}   # may load and unload models

A call without a known token ends with UNAUTHENTICATED; a model the principal may not use with PERMISSION_DENIED
(`service/engine/access.py`). With authentication, `/metrics` answers only requests carrying a token whose grant
has `"metrics": true` (`metrics_tokens`; 401 otherwise). Services named in `--auth-exempt` (default: health, so
probes need no token) answer without one. The principal's Triton sequence ids live in its own namespace. Without
authentication every call is the client of its peer's host, for the per-client session quota
(`--max-sessions-per-client`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc

from service.engine.access import CLIENT, Client
from service.engine.errors import ConfigurationError, Unauthenticated
from service.grpc.interceptors import HandlerInterceptor
from service.settings import Settings
from service.tokens import load_tokens, sha256_hex

SERVICES = {"health": "grpc.health.v1.Health", "reflection": "grpc.reflection.v1alpha.ServerReflection"}


def exempt_services(spec: str) -> frozenset[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise ConfigurationError(f"--auth-exempt: unknown {unknown}; choose from {sorted(SERVICES)}")
    return frozenset(SERVICES[name] for name in names)


class AuthInterceptor(HandlerInterceptor):
    """Sets `CLIENT` for each call: the token's principal (or UNAUTHENTICATED), or the peer's host without auth."""

    def __init__(self, tokens: Mapping[str, Client] | None, exempt: frozenset[str], max_sessions: int) -> None:
        self._tokens = tokens
        self._exempt = exempt
        self._max_sessions = max_sessions

    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        if self._tokens is None:
            return _before(handler, self._by_peer)
        if details.method.split("/")[1:2] and details.method.split("/")[1] in self._exempt:
            return handler
        client = self._authenticate(details.invocation_metadata)
        return _before(handler, lambda _: client)

    def _authenticate(self, metadata: Any) -> Client | Unauthenticated:
        assert self._tokens is not None
        values = [value for key, value in (metadata or ()) if key == "authorization"]
        if not values:
            return Unauthenticated("this server requires a bearer token: metadata 'authorization: Bearer <token>'")
        scheme, _, token = str(values[0]).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Unauthenticated("the authorization metadata must be 'Bearer <token>'")
        client = self._tokens.get(sha256_hex(token.strip()))
        return client if client is not None else Unauthenticated("unknown bearer token")

    def _by_peer(self, context: grpc.aio.ServicerContext) -> Client:
        return Client(peer_host(context.peer()), max_sessions=self._max_sessions)


def _before(handler: grpc.RpcMethodHandler, identify: Callable[[Any], Client | Unauthenticated]
            ) -> grpc.RpcMethodHandler:
    """`handler` whose behaviour first sets `CLIENT` (or raises `Unauthenticated`, which the error interceptor
    outside this one turns into the status). The behaviour is called the same way for all four kinds of RPC."""
    def wrap(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def identified(request: Any, context: grpc.aio.ServicerContext) -> Any:
            client = identify(context)
            if isinstance(client, Unauthenticated):
                raise client
            CLIENT.set(client)
            return behavior(request, context)

        return identified

    return handler._replace(**{kind: wrap(getattr(handler, kind)) for kind in
                               ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
                               if getattr(handler, kind) is not None})


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string ("ipv4:10.0.0.1:5000" -> "10.0.0.1", "ipv6:[::1]:5000" -> "::1")."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer[5:].rsplit(":", 1)[0].strip("[]")
    return peer  # unix sockets and the like: the whole address


def interceptor(settings: Settings) -> AuthInterceptor | None:
    """The auth interceptor the settings ask for (None: neither tokens nor a per-client quota)."""
    tokens = None if settings.auth_tokens is None else load_tokens(settings.auth_tokens,
                                                                   settings.max_sessions_per_client)
    if tokens is None and settings.max_sessions_per_client == 0:
        return None
    return AuthInterceptor(tokens, exempt_services(settings.auth_exempt), settings.max_sessions_per_client)
