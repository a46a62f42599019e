"""Memory per open idle session: the server's RSS growth from a warmed-up idle state to N open, idle sessions,
against the target of the model's state bytes + 2 KiB per session.
"""

from __future__ import annotations

import asyncio
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from bench import procs
from modelrepo import Manifest, latest_versions
from service.loadtest import protocol

STREAMS_PER_CHANNEL = 500
OPEN_CONCURRENCY = 200
WARMUP_SESSIONS = 200
ALLOWANCE_BYTES = 2048


@dataclass(frozen=True)
class MemoryResult:
    model: str
    sessions: int
    rss_idle_bytes: int
    rss_open_bytes: int
    bytes_per_session: float
    state_bytes: int
    target_bytes: int
    holds: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def state_bytes(manifest: Manifest) -> int:
    return sum(math.prod(s.shape) * (2 if s.dtype == "float16" else 4) for s in manifest.state)


async def _open(channel: grpc.aio.Channel, request: bytes, gate: asyncio.Semaphore) -> grpc.aio.StreamStreamCall:
    async with gate:
        call = channel.stream_stream(protocol.STREAM_METHOD)()
        await call.write(request)
        reply = await call.read()
        if reply is grpc.aio.EOF:
            raise RuntimeError(f"open failed: {(await call.code()).name}")
        _, error = protocol.reply_error(reply)
        if error is not None:
            raise RuntimeError(f"open failed: {error}")
        return call


class Sessions:
    """Idle sessions held open from this process over several connections."""

    def __init__(self, target: str, model: str, count: int) -> None:
        self._target, self._count = target, count
        self._request = protocol.open_request(model, None)
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[grpc.aio.StreamStreamCall] = []

    async def __aenter__(self) -> Sessions:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        options = [("grpc.use_local_subchannel_pool", 1)]
        n_channels = max(1, math.ceil(self._count / STREAMS_PER_CHANNEL))
        self._channels = [grpc.aio.insecure_channel(self._target, options=options) for _ in range(n_channels)]
        opens = [_open(self._channels[i % n_channels], self._request, gate) for i in range(self._count)]
        self._calls = list(await asyncio.gather(*opens))
        return self

    async def __aexit__(self, *_: object) -> None:
        for call in self._calls:
            call.cancel()
        for channel in self._channels:
            await channel.close()


async def _measure(server: procs.Running, model: str, sessions: int) -> tuple[int, int]:
    async with Sessions(server.target, model, WARMUP_SESSIONS):
        pass
    idle = procs.rss_bytes(server.pid)
    async with Sessions(server.target, model, sessions):
        opened = procs.rss_bytes(server.pid)
    return idle, opened


def measure_idle_sessions(models_root: Path, model: str, sessions: int) -> MemoryResult:
    manifest = Manifest.load(latest_versions(models_root)[model].manifest_path)
    extra = ["--max-sessions", str(sessions + WARMUP_SESSIONS), "--session-idle-timeout", "600"]
    with procs.real_server(models_root, extra) as server:
        idle, opened = asyncio.run(_measure(server, model, sessions))
    per_session = (opened - idle) / sessions
    target = state_bytes(manifest) + ALLOWANCE_BYTES
    result = MemoryResult(model, sessions, idle, opened, per_session, state_bytes(manifest), target,
                          per_session <= target)
    print(f"[bench] memory: {per_session:.0f} B per idle session at {sessions} (target {target} B)",
          file=sys.stderr, flush=True)
    return result
