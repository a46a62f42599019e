"""Streams that hold nothing yet: a native stream before its session is open, a Triton stream before its first
request. Each costs memory and a call slot but no pool slot, so `--max-sessions` does not bound them; this does:
one count for both fronts (`--max-streams-without-session`), of which each client (its principal, or its peer host
without authentication) holds at most its own share, so one client cannot lock the others out; beyond either, a
new stream gets RESOURCE_EXHAUSTED. A stream still idle after `--first-message-timeout` is ended with
DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio

from service.engine.access import CLIENT
from service.engine.errors import FirstMessageTimeout, ResourceExhausted, clip
from service.grpc.cut import Watch


class Idle:
    """One idle stream's place in the count: `arm` starts its first-message clock, `leave` (idempotent) ends it."""

    def __init__(self, streams: IdleStreams, client: str) -> None:
        self._streams = streams
        self._client = client
        self._timer: asyncio.TimerHandle | None = None
        self._left = False

    def arm(self, watch: Watch) -> None:
        """End the stream (`watch`) with DEADLINE_EXCEEDED unless `leave` comes first."""
        timeout = self._streams.timeout_s
        if not self._left:
            error = FirstMessageTimeout(f"no first message within {timeout:g} s; send it as soon as the stream opens")
            self._timer = asyncio.get_running_loop().call_later(timeout, watch.end, error)

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        if self._timer is not None:
            self._timer.cancel()
        self._streams.left(self._client)


class IdleStreams:
    def __init__(self, limit: int, per_client: int = 0, timeout_s: float = 5.0) -> None:
        self.limit = limit
        self.per_client = per_client or max(1, limit // 4)  # 0: a quarter of the whole count
        self.timeout_s = timeout_s
        self.count = 0
        self._by_client: dict[str, int] = {}

    def enter(self) -> Idle:
        """A stream of the current client starts idle (or `ResourceExhausted`)."""
        client = CLIENT.get().key
        held = self._by_client.get(client, 0)
        if held >= self.per_client:
            raise ResourceExhausted(f"client {clip(client)} has {held} streams open without a session or a request, "
                                    "its share; send the first message at once")
        if self.count >= self.limit:
            raise ResourceExhausted(f"{self.count} streams are open without a session or a request; "
                                    "send the first message at once")
        self.count += 1
        self._by_client[client] = held + 1
        return Idle(self, client)

    def left(self, client: str) -> None:
        self.count -= 1
        held = self._by_client[client] - 1
        if held:
            self._by_client[client] = held
        else:
            del self._by_client[client]
