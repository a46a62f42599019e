"""Streams that hold nothing yet: a native stream before its session is open, a Triton stream before its first
request. Each costs memory and a call slot but no pool slot, so `--max-sessions` does not bound them; this does
(one count for both fronts; beyond it a new stream gets RESOURCE_EXHAUSTED)."""

from __future__ import annotations

from service.engine.errors import ResourceExhausted


class IdleStreams:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> None:
        """A stream starts idle (or `ResourceExhausted`); call `leave` exactly once when it stops being idle."""
        if self.count >= self.limit:
            raise ResourceExhausted(f"{self.count} streams are open without a session or a request; "
                                    "send the first message at once")
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
