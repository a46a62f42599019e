"""Where sessions live in the session store: their keys, resume tokens and epochs."""

from __future__ import annotations

import secrets

KEY_PREFIX = "seqserve"


def new_epoch() -> str:
    return secrets.token_hex(6)


def sequence_key(model: str, version: int, sequence_id: int | str, namespace: str = "") -> str:
    """A Triton sequence's key (5 and "5" are different sequences), in its principal's namespace ("" without auth).

    The namespace is length-prefixed, so no namespace and id can spell another pair's key."""
    kind = "i" if isinstance(sequence_id, int) else "s"
    return f"{KEY_PREFIX}:{model}:{version}:t:{len(namespace)}:{namespace}:{kind}{sequence_id}"


def stream_key(model: str, version: int, token: str, namespace: str = "") -> str:
    """A native stream's key, addressed by its resume token, in its principal's namespace ("" without auth): a
    token presented by another principal names no session."""
    return f"{KEY_PREFIX}:{model}:{version}:n:{len(namespace)}:{namespace}:{token}"


def new_token() -> str:
    """A resume token: 128 random bits, URL-safe (what `stream_key` and `token_of` expect)."""
    return secrets.token_urlsafe(16)


def token_of(key: str) -> str:
    """The resume token in a native stream's key."""
    return key.rsplit(":", 1)[1]


def valid_token(token: str) -> bool:
    return 0 < len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)
