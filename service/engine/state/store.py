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

from service.engine.errors import ConfigurationError, Unavailable

log = logging.getLogger(__name__)

ANY = "*"  # expected version of a write that overwrites whatever is stored (open, START)
ABSENT = "-"  # stored version reported for a key that does not exist (ended, expired, never written)
KEY_PREFIX = "seqserve"
TIMEOUT_S = 2.0  # a store call that takes longer fails with UNAVAILABLE (the answer is held meanwhile)

RECENT = 16  # answers kept per native stream (hash fields o0..o15 by position) for a client that lost them
FULL = "!"  # what COMMIT answers for a new session refused because the store holds its limit of sessions

# KEYS: one per row. ARGV[1]: TTL in ms, ARGV[2]: answers kept, ARGV[3]: the most sessions stored (0: no limit;
# counted with DBSIZE, so the store's database holds sessions only); ARGV[4]: one line per row, "expected version
# position state-length answer-length" ("-" as the version deletes the key; answer length 0: no answer kept);
# ARGV[5] and ARGV[6]: every row's state bytes, and every kept answer's bytes, one after the other. A handful of
# arguments for the whole batch, small fields parsed by one pattern: Lua's per-call and per-argument costs, not
# the data, are what a commit spends (measured on Redis 7.0: a 64-row commit of 1 KiB states takes ~0.6 ms of Redis
# CPU, of which the six arguments are ~0.15 ms). Per row: HGET, then HSET (state and answer together) and PEXPIRE,
# or DEL. Returns the refused rows only, as pairs (row number from 1, what is stored: FULL for a new session beyond
# the limit, else the stored version, ABSENT when missing): an empty list when every row was written. An
# expected version of ANY (open, START) clears the key first, so no answer of an earlier life of it survives.
COMMIT = """
local ttl, keep, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local states, answers = ARGV[5], ARGV[6]
local out, i, s_at, a_at = {}, 0, 1, 1
for expected, version, position, slen, alen in string.gmatch(ARGV[4], '(%S+) (%S+) (%d+) (%d+) (%d+)\\n') do
  i = i + 1
  local key = KEYS[i]
  local state = string.sub(states, s_at, s_at + slen - 1)
  s_at = s_at + slen
  local answer = nil
  if alen ~= '0' then
    answer = string.sub(answers, a_at, a_at + alen - 1)
    a_at = a_at + alen
  end
  local current = redis.call('HGET', key, 'v')
  if expected == '*' and not current and cap > 0 and redis.call('DBSIZE') >= cap then
    out[#out + 1] = i
    out[#out + 1] = '!'
  elseif expected == '*' or current == expected then
    if version == '-' or expected == '*' then
      redis.call('DEL', key)
    end
    if version ~= '-' then
      if answer then
        local slot = 'o' .. ((tonumber(position) - 1) % keep)
        redis.call('HSET', key, 'v', version, 'n', position, 's', state, slot, answer)
      else
        redis.call('HSET', key, 'v', version, 'n', position, 's', state)
      end
      redis.call('PEXPIRE', key, ttl)
    end
  else
    out[#out + 1] = i
    out[#out + 1] = current or '-'
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
    recent: tuple[bytes, ...] = ()  # the last answers (`encode_answers`), oldest first, when asked for


@dataclass(frozen=True)
class Write:
    """One row of a batch's commit: write `state` as `version` if the stored version is `expected`."""

    key: str
    expected: str  # ANY: unconditional
    version: str  # "" deletes the key (the session ended)
    position: int
    state: bytes
    answer: bytes | None = None  # the step's answer kept for a resuming client (`encode_answers`, never empty)


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


class RedisStore:
    """Sessions in Redis through redis-py's asyncio client; one connection pool per process."""

    shared = True

    def __init__(self, url: str, ttl_s: float, max_sessions: int = 0) -> None:
        import redis.asyncio as aioredis  # the memory store never imports redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self.max_sessions = max_sessions  # 0: no limit
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
        self.failures = 0  # of them, those that could not reach Redis
        self.conflicts = 0  # rows refused by the compare-and-set (counted by write-through)

    async def ping(self) -> bool:
        try:
            await self._client.ping()
        except self._errors:
            return False
        return True

    async def load(self, key: str, recent: bool = False) -> Stored | None:
        """The stored session (None: ended, expired or never written); with its last answers if `recent`."""
        self.round_trips += 1
        fields = ["v", "n", "s", *(f"o{k}" for k in range(RECENT if recent else 0))]
        try:
            found: list[bytes | None] = await self._client.hmget(key, fields)  # type: ignore[assignment]
        except self._errors as exc:
            raise self._unavailable(exc) from None
        version, position, state, *ring = found
        if version is None or position is None or state is None:
            return None
        n = int(position)  # the answer of the step that made position p is in o((p - 1) % RECENT)
        answers = [ring[(p - 1) % RECENT] for p in range(max(1, n - RECENT + 1), n + 1)] if recent else []
        return Stored(version.decode(), n, state, tuple(a for a in answers if a is not None))

    async def commit(self, writes: Sequence[Write]) -> list[str]:
        """Compare-and-set every write in one round trip: "" for each row written, FULL for a new session beyond
        `max_sessions`, else the stored version."""
        self.round_trips += 1
        meta = "".join(f"{w.expected} {w.version or '-'} {w.position} {len(w.state)} {len(w.answer or b'')}\n"
                       for w in writes)
        args: list[bytes | int | str] = [self._ttl_ms, RECENT, self.max_sessions, meta,
                                         b"".join(w.state for w in writes), b"".join(w.answer or b"" for w in writes)]
        try:
            refused = await self._commit(keys=[w.key for w in writes], args=args)
        except self._errors as exc:
            raise self._unavailable(exc) from None
        results = [""] * len(writes)
        for row, stored in zip(refused[::2], refused[1::2], strict=True):
            results[int(row) - 1] = stored.decode() if isinstance(stored, bytes) else str(stored)
        return results

    async def delete(self, key: str) -> None:
        self.round_trips += 1
        try:
            await self._client.delete(key)
        except self._errors as exc:
            raise self._unavailable(exc) from None

    async def close(self) -> None:
        await self._client.aclose()

    def _unavailable(self, exc: BaseException) -> Unavailable:
        self.failures += 1
        log.warning("session store %s: %s: %s", self.url, type(exc).__name__, exc)
        return Unavailable(f"the session store is unreachable ({type(exc).__name__}); retry shortly")


def open_store(url: str, ttl_s: float, max_sessions: int = 0) -> RedisStore | None:
    """The store `--session-store` names: None for `memory` (the local pools are the truth)."""
    if url == "memory":
        return None
    return RedisStore(url, ttl_s, max_sessions)
