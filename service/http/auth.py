"""Who is asking over HTTP: the bearer token's principal (`Authorization: Bearer`, or, for a browser's WebSocket,
the subprotocol `seqserve.token.<base64url>`), else the peer's host, exactly as on gRPC: the same `--auth-tokens`
file read by the same `load_tokens` (`service/tokens.py`), the same clients, quotas and messages. A token in the
URL is never read."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from aiohttp import web

from service.engine.access import Client
from service.engine.errors import ConfigurationError, Unauthenticated
from service.settings import Settings
from service.tokens import load_tokens, sha256_hex

TOKEN_PROTOCOL = "seqserve.token."
EXEMPT = {"health": ("/v2/health/",)}  # --auth-exempt names -> the paths they free here


class HttpAuth:
    def __init__(self, settings: Settings) -> None:
        self._tokens = None if settings.auth_tokens is None else load_tokens(settings.auth_tokens,
                                                                             settings.max_sessions_per_client)
        self._max_sessions = settings.max_sessions_per_client
        names = [name.strip() for name in settings.auth_exempt.split(",") if name.strip()]
        if unknown := [name for name in names if name not in (*EXEMPT, "reflection")]:
            raise ConfigurationError(f"--auth-exempt: unknown {unknown}")
        self._exempt = tuple(path for name in names for path in EXEMPT.get(name, ()))

    def exempt(self, path: str) -> bool:
        return self._tokens is None or path.startswith(self._exempt)

    def client(self, request: web.Request, protocols: list[str] | None = None) -> Client | Unauthenticated:
        """The request's client; `protocols` (a WebSocket's offered subprotocols) may carry the token."""
        if self._tokens is None:
            return Client(request.remote or "", max_sessions=self._max_sessions)
        for protocol in protocols or ():
            if protocol.startswith(TOKEN_PROTOCOL):
                token = _unbase64url(protocol[len(TOKEN_PROTOCOL):])
                return Unauthenticated("malformed token subprotocol") if token is None else _client(
                    self._tokens, token)
        authorization = request.headers.get("Authorization")
        if authorization is None:
            also = "" if protocols is None else " (a browser: the subprotocol seqserve.token.<base64url>)"
            return Unauthenticated(f"this server requires a bearer token: header 'Authorization: Bearer <token>'"
                                   f"{also}")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return _client(self._tokens, token.strip())


def _client(tokens: Mapping[str, Client], token: str) -> Client | Unauthenticated:
    client = tokens.get(sha256_hex(token))
    return client if client is not None else Unauthenticated("unknown bearer token")


def _unbase64url(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
