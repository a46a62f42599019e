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

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.engine.access import CLIENT, Client
from service.engine.errors import ConfigurationError, Unauthenticated
from service.grpc.interceptors import HandlerInterceptor
from service.settings import Settings

SERVICES = {"health": "grpc.health.v1.Health", "reflection": "grpc.reflection.v1alpha.ServerReflection"}
HASHED = "sha256:"


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    principal: str = Field(min_length=1, max_length=128)
    models: list[str] | None = None  # None: every model
    max_sessions: int | None = Field(None, ge=0)  # None: --max-sessions-per-client; 0: no limit
    metrics: bool = False  # may read /metrics
    control: bool = False  # may load and unload models (docs/model-control.md)


def load_tokens(spec: str, default_max_sessions: int) -> dict[str, Client]:
    """SHA-256 hex of each token -> its client (tokens are looked up by hash: no timing on the token itself)."""
    text = spec if spec.lstrip().startswith("{") else _read(Path(spec))
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or not raw:
            raise ValueError("expected a non-empty JSON object of token -> grant")
        grants = {token: Grant.model_validate(grant) for token, grant in raw.items()}
    except (ValueError, ValidationError) as exc:
        raise ConfigurationError(f"--auth-tokens: {exc}") from None
    clients = {}
    for token, grant in grants.items():
        digest = token.removeprefix(HASHED).lower() if token.startswith(HASHED) else _digest(token)
        models = None if grant.models is None else frozenset(grant.models)
        quota = default_max_sessions if grant.max_sessions is None else grant.max_sessions
        clients[digest] = Client(grant.principal, grant.principal, models, quota, grant.metrics, grant.control)
    return clients


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
        client = self._tokens.get(_digest(token.strip()))
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


WORKER_METRICS_TOKEN = "SEQSERVE_WORKER_METRICS_TOKEN"  # --workers: the parent's own token for its children's /metrics


def metrics_tokens(settings: Settings) -> frozenset[str] | None:
    """SHA-256 hex of the tokens that may read /metrics; None: no authentication, anyone may."""
    if settings.auth_tokens is None:
        return None
    granted = {digest for digest, client in load_tokens(settings.auth_tokens, 0).items() if client.metrics}
    if worker := os.environ.get(WORKER_METRICS_TOKEN):
        granted.add(_digest(worker))
    return frozenset(granted)


def token_digest(authorization: str) -> str | None:
    """The SHA-256 hex of a `Bearer <token>` header's token (None: no bearer token)."""
    scheme, _, token = authorization.strip().partition(" ")
    return _digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"--auth-tokens: cannot read {path}: {exc.strerror or exc}") from None
