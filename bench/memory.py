"""Memory per open idle session: the server's RSS growth from a warmed-up idle state to N open, idle sessions,
against the target of the model's state bytes + 2 KiB per session, over two transports:

- `native-stream`: one native `SeqServe/Stream` per session, held open (the gRPC/asyncio stream costs memory);
- `triton-sequence-id`: one unary Triton `ModelInfer` per session with `sequence_id` and `sequence_start`
  (no `sequence_end`), a one-step chunk; the sequence then stays open on the server with no gRPC stream.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np

from bench import procs
from modelrepo import Manifest, latest_versions
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.loadtest import protocol

STREAMS_PER_CHANNEL = 500
OPEN_CONCURRENCY = 200
WARMUP_SESSIONS = 200
ALLOWANCE_BYTES = 2048
NATIVE_STREAM, TRITON_SEQUENCE_ID = "native-stream", "triton-sequence-id"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
INFER_CHANNELS = 4
INFER_CONCURRENCY = 64
WARMUP_ID_BASE = 10_000_000  # warm-up sequence ids, apart from the measured ones (1..N)

Opener = Callable[[str, str, int, range], AbstractAsyncContextManager[None]]  # target, model, features, ids


@dataclass(frozen=True)
class MemoryResult:
    model: str
    transport: str
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


def _channels(target: str, count: int) -> list[grpc.aio.Channel]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.aio.insecure_channel(target, options=options) for _ in range(count)]


async def _open_stream(channel: grpc.aio.Channel, request: bytes, gate: asyncio.Semaphore) -> grpc.aio.StreamStreamCall:
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


@asynccontextmanager
async def stream_sessions(target: str, model: str, _features: int, ids: range) -> AsyncIterator[None]:
    """`len(ids)` idle sessions, each held by an open native `Stream`, over several connections."""
    count = len(ids)
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    channels = _channels(target, max(1, math.ceil(count / STREAMS_PER_CHANNEL)))
    request = protocol.open_request(model, None)
    calls = await asyncio.gather(*(_open_stream(channels[i % len(channels)], request, gate) for i in range(count)))
    try:
        yield
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()


def infer_request(model: str, features: int, sequence_id: int, end: bool) -> bytes:
    """A Triton `ModelInfer` of one step (zeros) of `sequence_id` with START, and END if `end`."""
    x = np.zeros((1, 1, features), dtype="<f4")
    params = {"sequence_id": tpb.InferParameter(int64_param=sequence_id),
              "sequence_start": tpb.InferParameter(bool_param=True)}
    if end:
        params["sequence_end"] = tpb.InferParameter(bool_param=True)
    tensor = tpb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))
    request = tpb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[x.tobytes()],
                                    parameters=params)
    return request.SerializeToString()


async def _start_sequences(target: str, model: str, features: int, ids: range, end: bool) -> None:
    gate = asyncio.Semaphore(INFER_CONCURRENCY)
    channels = _channels(target, INFER_CHANNELS)

    async def one(i: int, sequence_id: int) -> None:
        async with gate:
            await channels[i % len(channels)].unary_unary(INFER_METHOD)(
                infer_request(model, features, sequence_id, end))

    try:
        await asyncio.gather(*(one(i, s) for i, s in enumerate(ids)))
    finally:
        for channel in channels:
            await channel.close()


@asynccontextmanager
async def sequence_sessions(target: str, model: str, features: int, ids: range) -> AsyncIterator[None]:
    """Idle sessions `ids` opened by unary Triton `ModelInfer` with `sequence_id` + START (no END); the client
    keeps no call or connection open. Leaving closes them with a START + END request on each id.
    """
    await _start_sequences(target, model, features, ids, end=False)
    try:
        yield
    finally:
        await _start_sequences(target, model, features, ids, end=True)


async def _measure(server: procs.Running, opener: Opener, model: str, features: int, sessions: int) -> tuple[int, int]:
    async with opener(server.target, model, features, range(WARMUP_ID_BASE, WARMUP_ID_BASE + WARMUP_SESSIONS)):
        pass
    idle = procs.rss_bytes(server.pid)
    async with opener(server.target, model, features, range(1, sessions + 1)):
        opened = procs.rss_bytes(server.pid)
    return idle, opened


def measure(models_root: Path, model: str, sessions: int, transport: str) -> MemoryResult:
    """RSS growth per idle session over `transport` (NATIVE_STREAM or TRITON_SEQUENCE_ID), on a fresh server."""
    opener: Opener = {NATIVE_STREAM: stream_sessions, TRITON_SEQUENCE_ID: sequence_sessions}[transport]
    manifest = Manifest.load(latest_versions(models_root)[model].manifest_path)
    extra = ["--max-sessions", str(sessions + WARMUP_SESSIONS), "--session-idle-timeout", "3600"]
    with procs.real_server(models_root, extra) as server:
        idle, opened = asyncio.run(_measure(server, opener, model, manifest.input.features, sessions))
    per_session = (opened - idle) / sessions
    target = state_bytes(manifest) + ALLOWANCE_BYTES
    result = MemoryResult(model, transport, sessions, idle, opened, per_session, state_bytes(manifest), target,
                          per_session <= target)
    print(f"[bench] memory ({transport}): {per_session:.0f} B per idle session at {sessions} (target {target} B)",
          file=sys.stderr, flush=True)
    return result


def measure_idle_sessions(models_root: Path, model: str, sessions: int) -> list[MemoryResult]:
    """Both transports, each on its own server."""
    return [measure(models_root, model, sessions, t) for t in (NATIVE_STREAM, TRITON_SEQUENCE_ID)]
