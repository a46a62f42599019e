"""The session store behind the state pools: `memory` (no store: the pool is the truth) or Redis (`redis://`).

With Redis, every session's state lives in one hash `seqserve:<model>:<version>:<kind>:<id>` holding `v` (its
version: `<epoch>:<writes>`, the compare-and-set token), `n` (its position: steps applied) and `s` (the state
tensors' bytes, in manifest order). A batch's new state goes through in ONE round trip: `COMMIT` (a Lua script,
atomic on the server) compares each row's expected version with the stored one and writes (or, for a row that
ends its session, deletes) only the rows that match; the others come back with the stored version. An epoch is
minted by every open and START, so a process holding a stale copy of an older life of a key never matches.
Keys expire after `session_idle_timeout` without a write (TTL refreshed by every write).

Redis errors become `Unavailable` (UNAVAILABLE) with a clear message; nothing else here knows about gRPC.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelrepo import StatePair
from service.engine.errors import ConfigurationError, Unavailable

log = logging.getLogger(__name__)

ANY = "*"  # expected version of a write that overwrites whatever is stored (open, START)
ABSENT = "-"  # stored version reported for a key that does not exist (ended, expired, never written)
KEY_PREFIX = "seqserve"
TIMEOUT_S = 2.0  # a store call that takes longer fails with UNAVAILABLE (the answer is held meanwhile)

# KEYS: one per row; ARGV[1]: TTL in ms; then 4 per row: expected version, new version ("" = delete), position,
# state bytes. Returns one string per row: "" when written, else the stored version (ABSENT when missing).
COMMIT = """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local b = 2 + (i - 1) * 4
  local expected = ARGV[b]
  local current = redis.call('HGET', key, 'v')
  if expected == '*' or current == expected then
    if ARGV[b + 1] == '' then
      redis.call('DEL', key)
    else
      redis.call('HSET', key, 'v', ARGV[b + 1], 'n', ARGV[b + 2], 's', ARGV[b + 3])
      redis.call('PEXPIRE', key, ttl)
    end
    out[i] = ''
  else
    out[i] = current or '-'
  end
end
return out
"""


@dataclass(frozen=True)
class Stored:
    """One session as the store holds it."""

    version: str
    position: int
    state: bytes


@dataclass(frozen=True)
class Write:
    """One row of a batch's commit: write `state` as `version` if the stored version is `expected`."""

    key: str
    expected: str  # ANY: unconditional
    version: str  # "" deletes the key (the session ended)
    position: int
    state: bytes


def new_epoch() -> str:
    return secrets.token_hex(6)


def sequence_key(model: str, version: int, sequence_id: int | str) -> str:
    """A Triton sequence's key (5 and "5" are different sequences)."""
    kind = "i" if isinstance(sequence_id, int) else "s"
    return f"{KEY_PREFIX}:{model}:{version}:t:{kind}{sequence_id}"


def stream_key(model: str, version: int, token: str) -> str:
    """A native stream's key, addressed by its resume token."""
    return f"{KEY_PREFIX}:{model}:{version}:n:{token}"


def encode(pairs: Sequence[StatePair], rows: dict[str, np.ndarray], i: int) -> bytes:
    """Row `i` of batch-first host arrays `rows` as bytes, in manifest order."""
    return b"".join(np.ascontiguousarray(rows[p.input][i], dtype=p.dtype).tobytes() for p in pairs)


def decode(pairs: Sequence[StatePair], data: bytes) -> dict[str, np.ndarray]:
    """The state of one session (shapes without the batch axis) from `encode`'s bytes."""
    state, offset = {}, 0
    for p in pairs:
        count = int(np.prod(p.shape))
        value = np.frombuffer(data, dtype=p.dtype, count=count, offset=offset).reshape(p.shape)
        state[p.input] = value.copy()
        offset += value.nbytes
    if offset != len(data):
        raise Unavailable("the session store holds state of another shape for this session")
    return state


class RedisStore:
    """Sessions in Redis through redis-py's asyncio client; one connection pool per process."""

    shared = True

    def __init__(self, url: str, ttl_s: float) -> None:
        import redis.asyncio as aioredis  # the memory store never imports redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._errors: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError)
        try:  # one retry on a fresh connection: a restarted Redis is back at once, a dead one fails fast
            self._client = aioredis.from_url(
                url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                retry=Retry(NoBackoff(), 1), health_check_interval=0,
            )
        except ValueError as exc:
            raise ConfigurationError(f"--session-store {url!r}: {exc}") from None
        self._commit = self._client.register_script(COMMIT)
        self.round_trips = 0  # commits, loads and deletes sent (one per batch on the write-through path)

    async def ping(self) -> bool:
        try:
            await self._client.ping()
        except self._errors:
            return False
        return True

    async def load(self, key: str) -> Stored | None:
        self.round_trips += 1
        try:
            found: list[bytes | None] = await self._client.hmget(key, ["v", "n", "s"])  # type: ignore[assignment]
        except self._errors as exc:
            raise self._unavailable(exc) from None
        version, position, state = found
        if version is None or position is None or state is None:
            return None
        return Stored(version.decode(), int(position), state)

    async def commit(self, writes: Sequence[Write]) -> list[str]:
        """Compare-and-set every write in one round trip: "" for each row written, else the stored version."""
        self.round_trips += 1
        args: list[str | bytes | int] = [self._ttl_ms]
        for w in writes:
            args += [w.expected, w.version, w.position, w.state]
        try:
            results = await self._commit(keys=[w.key for w in writes], args=args)
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return [r.decode() if isinstance(r, bytes) else str(r) for r in results]

    async def delete(self, key: str) -> None:
        self.round_trips += 1
        try:
            await self._client.delete(key)
        except self._errors as exc:
            raise self._unavailable(exc) from None

    async def close(self) -> None:
        await self._client.aclose()

    def _unavailable(self, exc: BaseException) -> Unavailable:
        log.warning("session store %s: %s: %s", self.url, type(exc).__name__, exc)
        return Unavailable(f"the session store is unreachable ({type(exc).__name__}); retry shortly")


def open_store(url: str, ttl_s: float) -> RedisStore | None:
    """The store `--session-store` names: None for `memory` (the local pools are the truth)."""
    if url == "memory":
        return None
    return RedisStore(url, ttl_s)
