"""The `--auth-tokens` file, read once for every front and `/metrics`: bearer token (or its SHA-256) -> the grant of
its principal (the models it may use, its session quota, `/metrics`, model control), as `service/engine/access.py`
clients keyed by the token's SHA-256 hex (tokens are looked up by hash: no timing on the token itself). The format
and what each front does with a token: `service/grpc/auth.py` (gRPC) and `service/http/auth.py` (HTTP).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.engine.access import Client
from service.engine.errors import ConfigurationError
from service.settings import Settings

HASHED = "sha256:"


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    principal: str = Field(min_length=1, max_length=128)
    models: list[str] | None = None  # None: every model
    max_sessions: int | None = Field(None, ge=0)  # None: --max-sessions-per-client; 0: no limit
    metrics: bool = False  # may read /metrics
    control: bool = False  # may load and unload models (docs/model-control.md)


def load_tokens(spec: str, default_max_sessions: int) -> dict[str, Client]:
    """SHA-256 hex of each token -> its client."""
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
        digest = token.removeprefix(HASHED).lower() if token.startswith(HASHED) else sha256_hex(token)
        models = None if grant.models is None else frozenset(grant.models)
        quota = default_max_sessions if grant.max_sessions is None else grant.max_sessions
        clients[digest] = Client(grant.principal, grant.principal, models, quota, grant.metrics, grant.control)
    return clients


WORKER_METRICS_TOKEN = "SEQSERVE_WORKER_METRICS_TOKEN"  # --workers: the parent's own token for its children's /metrics


def metrics_tokens(settings: Settings) -> frozenset[str] | None:
    """SHA-256 hex of the tokens that may read /metrics; None: no authentication, anyone may."""
    if settings.auth_tokens is None:
        return None
    granted = {digest for digest, client in load_tokens(settings.auth_tokens, 0).items() if client.metrics}
    if worker := os.environ.get(WORKER_METRICS_TOKEN):
        granted.add(sha256_hex(worker))
    return frozenset(granted)


def token_digest(authorization: str) -> str | None:
    """The SHA-256 hex of a `Bearer <token>` header's token (None: no bearer token)."""
    scheme, _, token = authorization.strip().partition(" ")
    return sha256_hex(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


def sha256_hex(token: str) -> str:
    """The key a token is looked up by."""
    return hashlib.sha256(token.encode()).hexdigest()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"--auth-tokens: cannot read {path}: {exc.strerror or exc}") from None
