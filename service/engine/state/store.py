"""The session store behind the state pools: `memory` (no store: the pool is the truth) or Redis (`redis://`).

With Redis, every session's state lives in one hash `seqserve:<model>:<version>:<kind>:<id>` (fields and scripts:
`service/engine/state/scripts.py`). A batch's new state goes through in ONE round trip, `COMMIT`, a compare-and-set
of each row on its session's version that is idempotent: every step writes a version of its own, so a commit that
is sent again or arrives late is recognised as applied and never applied twice. Keys expire after
`session_idle_timeout` without a write (TTL refreshed by every write).

A commit's outcome is known or resolved before anyone is answered. redis-py never retries it blindly: a commit
that could not be sent (no connection) was not applied; one whose answer did not come back within
`timeout_s` (a stalled or dying Redis) has an unknown outcome, and `RESOLVE` is sent (again, on fresh
connections, until `resolve_s` has passed) until Redis says per row whether it was applied, and if not, fences it
off so that the lost copy can never apply later. Only when Redis stays silent for all that time is a row's
outcome reported as unknown (`UNKNOWN`): the callers then never continue from a guess.

Redis errors become `Unavailable` (UNAVAILABLE, nothing applied) with a clear message, the URL logged without
its password; nothing else here knows about gRPC.
"""

from __future__ import annotations

import logging
import select
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from service.engine.errors import ConfigurationError, Unavailable
from service.engine.state.keys import (  # noqa: F401 (re-exported: the keys' one home for the callers)
    KEY_PREFIX,
    new_epoch,
    new_token,
    sequence_key,
    stream_key,
    token_of,
    valid_token,
)
from service.engine.state.scripts import APPLIED, COMMIT, FENCE_MS, FENCED, RESOLVE
from service.engine.state.secret import redact

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0  # default --session-store-timeout: a store call that takes longer has failed
RESOLVE_S = 8.0  # default --session-store-resolve-timeout: how long a lost commit's outcome is sought
RECENT = 16  # answers kept per native stream (hash fields o0..o15 by position) for a client that lost them
UNKNOWN = "?"  # a commit whose outcome could not be learned in time (see `RedisStore.commit`)
RETRY_PAUSE_S = 0.2  # between two tries to reach a store that refused the connection (one log line each)


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
    expected: str  # ANY: unconditional (unless fenced)
    version: str  # this step's own version, `<epoch>:<writes>`
    position: int
    state: bytes
    answer: bytes | None = None  # the step's answer kept for a resuming client (`encode_answers`, never empty)
    ending: bool = False  # the session ends: a tombstone replaces it


class RedisStore:
    """Sessions in Redis through redis-py's asyncio client; one connection pool per process."""

    shared = True

    def __init__(self, url: str, ttl_s: float, max_sessions: int = 0, *, timeout_s: float = TIMEOUT_S,
                 resolve_s: float = RESOLVE_S, memory_fraction: float = 0.0) -> None:
        import redis.asyncio as aioredis  # the memory store never imports redis
        import redis.exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.safe_url = redact(url)  # what the log shows
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self.max_sessions = max_sessions  # 0: no limit
        self.memory_fraction = memory_fraction  # a new session is refused beyond this share of maxmemory (0: never)
        self.resolve_s = resolve_s
        self._errors: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError)
        self._response_error: type[BaseException] = aioredis.ResponseError
        self._noscript: type[BaseException] = redis.exceptions.NoScriptError
        try:  # no blind retries: reads retry here, a commit is resolved (`commit`)
            self._client = aioredis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0), health_check_interval=0,
            )
        except ValueError as exc:
            raise ConfigurationError(f"--session-store {self.safe_url!r}: {redact(str(exc))}") from None
        self._scripts = {script: _sha(script) for script in (COMMIT, RESOLVE)}
        self.round_trips = 0  # commits, loads and deletes sent (one per batch on the write-through path)
        self.failures = 0  # of them, those that could not reach Redis
        self.conflicts = 0  # rows refused by the compare-and-set (counted by write-through)
        self.resolved = 0  # commits whose answer was lost and whose outcome was then read back
        self.unknown: Counter[str] = Counter()  # rows whose outcome stayed unknown, by key kind (t: Triton, n: native)

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
        found: list[bytes | None] = await self._read(self._client.hmget, key, fields)
        version, position, state, *ring = found
        if version is None or position is None or state is None:
            return None
        n = int(position)  # the answer of the step that made position p is in o((p - 1) % RECENT)
        answers = [ring[(p - 1) % RECENT] for p in range(max(1, n - RECENT + 1), n + 1)] if recent else []
        return Stored(version.decode(), n, state, tuple(a for a in answers if a is not None))

    async def commit(self, writes: Sequence[Write]) -> list[str]:
        """Compare-and-set every write in one round trip. Per row: "" written (now or by an earlier copy of this
        commit), FULL / MEMORY for a new session beyond a limit, FENCED + the fence version for a row not applied
        (its answer was lost; the lost copy can never apply now), UNKNOWN when Redis could not be asked in time,
        else the stored version (ABSENT: missing or ended). Raises `Unavailable` when nothing was applied."""
        self.round_trips += 1
        meta = "".join(f"{w.expected} {w.version} {int(w.ending)} {w.position} {len(w.state)} {len(w.answer or b'')}\n"
                       for w in writes)
        args: list[bytes | int | str | float] = [
            self._ttl_ms, RECENT, self.max_sessions, meta, b"".join(w.state for w in writes),
            b"".join(w.answer or b"" for w in writes), FENCE_MS, self.memory_fraction,
        ]
        keys = [w.key for w in writes]
        try:
            refused = await self._script(COMMIT, keys, args, connected_only=True)
        except _Lost:
            return await self._resolve(writes)
        results = [""] * len(writes)
        for row, stored in zip(refused[::2], refused[1::2], strict=True):
            results[int(row) - 1] = stored.decode() if isinstance(stored, bytes) else str(stored)
        return results

    async def holds_version(self, model: str, version: int) -> bool:
        """Whether any session of `model` `version` is stored (a draining version stays loaded while one is)."""
        self.round_trips += 1
        pattern = "".join(f"[{c}]" if c in "*?[]\\" else c for c in f"{KEY_PREFIX}:{model}:{version}:") + "*"
        return bool(await self._read(self._any_key, pattern))

    async def _any_key(self, pattern: str) -> bool:
        cursor = 0
        while True:  # SCAN may answer empty pages before the end: go on until a key or the end
            cursor, keys = await self._client.scan(cursor, match=pattern, count=1000)
            if keys or not cursor:
                return bool(keys)

    async def delete(self, key: str) -> None:
        self.round_trips += 1
        await self._read(self._client.delete, key)  # idempotent: safe to send twice

    async def close(self) -> None:
        await self._client.aclose()

    async def _resolve(self, writes: Sequence[Write]) -> list[str]:
        """The outcome of a commit whose answer was lost, made final (see scripts.RESOLVE)."""
        import asyncio

        self.resolved += 1
        fences = [f"{new_epoch()}:{int(w.version.rpartition(':')[2]) - 1}" for w in writes]  # same position
        meta = "".join(f"{w.expected} {w.version} {int(w.ending)} {fence}\n"
                       for w, fence in zip(writes, fences, strict=True))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resolve_s
        while True:
            try:
                found = await self._script(RESOLVE, [w.key for w in writes], [meta, FENCE_MS])
                break
            except (_Lost, Unavailable):
                if loop.time() + RETRY_PAUSE_S >= deadline:
                    log.warning("session store %s: a commit of %d rows has an unknown outcome (no answer in %g s)",
                                self.safe_url, len(writes), self.resolve_s)
                    self.unknown.update(w.key.split(":")[3] for w in writes)
                    return [UNKNOWN] * len(writes)
                await asyncio.sleep(RETRY_PAUSE_S)  # a retry pause, not a synchronisation
        outcomes = []
        for stored, fence in zip(found, fences, strict=True):
            text = stored.decode() if isinstance(stored, bytes) else str(stored)
            outcomes.append("" if text == APPLIED else FENCED + fence if text == FENCED else text)
        return outcomes

    async def _script(self, script: str, keys: list[str], args: list[bytes | int | str | float],
                      connected_only: bool = False) -> list[bytes | str | int]:
        """Run one script on its own connection. `Unavailable` when it was not sent or Redis refused it (nothing
        applied); `_Lost` when it was sent and no answer came back (its outcome is unknown)."""
        pool = self._client.connection_pool
        try:
            conn = await pool.get_connection()
        except self._errors as exc:
            raise self._unavailable(exc) from None
        try:
            if _closed_by_peer(conn):  # a restarted or dead Redis: what is sent on it is never read
                await conn.disconnect()
                try:
                    await conn.connect()
                except self._errors as exc:
                    raise self._unavailable(exc) from None
            try:
                await conn.send_command("EVALSHA", self._scripts[script], len(keys), *keys, *args)
                result = await conn.read_response()
            except self._noscript:  # a restarted Redis: load it in the same call
                await conn.send_command("EVAL", script, len(keys), *keys, *args)
                result = await conn.read_response()
        except self._response_error as exc:  # refused before any write (e.g. OOM): nothing applied
            raise self._unavailable(exc) from None
        except self._errors as exc:
            self.failures += 1
            log.warning("session store %s: no answer to a write (%s: %s); reading its outcome back", self.safe_url,
                        type(exc).__name__, redact(str(exc)))
            await conn.disconnect()
            raise _Lost from None
        finally:
            await pool.release(conn)
        return list(result)

    async def _read(self, call, *args):  # type: ignore[no-untyped-def]
        """A read (or an idempotent delete), tried once more on a fresh connection (a restarted Redis)."""
        for attempt in (0, 1):
            try:
                return await call(*args)
            except self._errors as exc:
                if attempt:
                    raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    def _unavailable(self, exc: BaseException) -> Unavailable:
        self.failures += 1
        log.warning("session store %s: %s: %s", self.safe_url, type(exc).__name__, redact(str(exc)))
        if "OOM" in str(exc):
            return Unavailable("the session store is full (Redis maxmemory); nothing of this step was applied")
        return Unavailable(f"the session store is unreachable ({type(exc).__name__}); nothing of this step was "
                           "applied; retry shortly")


def _closed_by_peer(conn: object) -> bool:
    """Whether the other end closed the connection (or sent something unasked), asked of the kernel at once: a
    pooled connection to a Redis that went away is replaced before a write is sent on it, not after."""
    writer = getattr(conn, "_writer", None)  # redis-py's asyncio StreamWriter (None: not connected)
    sock = None if writer is None else writer.get_extra_info("socket")
    if sock is None:
        return False
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN | getattr(select, "POLLRDHUP", 0))
    return bool(poll.poll(0))


class _Lost(Exception):
    """A script was sent and its answer did not come back."""


def _sha(script: str) -> str:
    import hashlib

    return hashlib.sha1(script.encode()).hexdigest()


def open_store(url: str, ttl_s: float, max_sessions: int = 0, *, timeout_s: float = TIMEOUT_S,
               resolve_s: float = RESOLVE_S, memory_fraction: float = 0.0) -> RedisStore | None:
    """The store `--session-store` names: None for `memory` (the local pools are the truth)."""
    if url == "memory":
        return None
    return RedisStore(url, ttl_s, max_sessions, timeout_s=timeout_s, resolve_s=resolve_s,
                      memory_fraction=memory_fraction)
