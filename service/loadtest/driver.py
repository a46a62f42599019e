"""One client process: open every stream, wait for the common start, send chunks closed or open loop, tally.

Closed loop: each stream sends its next chunk as soon as the previous one is answered; latency is measured from
the actual send. Open loop: each stream sends at Poisson arrival times (rate / streams per stream) without waiting
for answers (the stream's requests are pipelined and answered in order); latency is measured from the *intended*
send time, so a late client or a slow server cannot hide queueing (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
import numpy as np

from service.loadtest import protocol
from service.loadtest.config import LoadConfig
from service.loadtest.stats import Tally

CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class Counter(Protocol):
    value: int


class StreamFailed(Exception):
    """The stream ended with a non-OK status; `code` is its name."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _Stream:
    """One `Stream` call on raw bytes, past its `open`."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call

    async def read(self) -> bytes:
        data = await self.call.read()
        if data is grpc.aio.EOF:
            raise StreamFailed((await self.call.code()).name)
        assert isinstance(data, bytes)
        return data

    async def finish(self) -> None:
        await self.call.done_writing()
        while await self.call.read() is not grpc.aio.EOF:
            pass
        code = await self.call.code()
        if code != grpc.StatusCode.OK:
            raise StreamFailed(code.name)


async def fetch_inputs(channel: grpc.aio.Channel, config: LoadConfig) -> tuple[protocol.InputSpec, ...]:
    """Every data input of the model (names, dtypes, widths, vocabularies), from `GetModel`."""
    method = channel.unary_unary(protocol.GET_MODEL_METHOD)
    reply = await method(protocol.get_model_request(config.model, config.version))
    return protocol.inputs_of(reply)


class Driver:
    def __init__(self, config: LoadConfig, progress: Counter) -> None:
        if config.features is None:
            raise ValueError("the driver needs the chunk width (features)")
        self.config = config
        self.features = config.features
        self.progress = progress
        self.tally = Tally()
        self._rng = random.Random(config.seed)
        self._measure_from = 0.0

    async def _open(self, channel: grpc.aio.Channel) -> _Stream | None:
        call = channel.stream_stream(protocol.STREAM_METHOD)()
        stream = _Stream(call)
        try:
            await call.write(protocol.open_request(self.config.model, self.config.version))
            _, error = protocol.reply_error(await stream.read())
        except (StreamFailed, grpc.aio.AioRpcError) as exc:
            self.tally.record_error(code_of(exc))
            return None
        if error is not None:
            self.tally.record_error(error)
            call.cancel()
            return None
        return stream

    def _chunks(self) -> protocol.ChunkRequests:
        rng = np.random.default_rng(self._rng.randrange(2**32))
        if self.config.inputs:  # the model's own inputs: token ids, several inputs
            return protocol.ChunkRequests(protocol.random_chunk(self.config.inputs, self.config.chunk, rng))
        return protocol.ChunkRequests(rng.standard_normal((self.config.chunk, self.features)).astype(np.float32))

    def _more(self, sent: int, deadline: float, now: float) -> bool:
        """Whether a chunk due at `now` is still part of the run (open loop: `now` is the intended send time,
        so a backlog built up before the deadline is still sent and measured)."""
        if self.config.chunks is not None and sent >= self.config.chunks:
            return False
        return self.config.duration_s is None or now < deadline

    def _answer(self, data: bytes, sent_at: float) -> None:
        self.progress.value += 1
        if sent_at < self._measure_from:
            return
        _, error = protocol.reply_error(data)
        if error is None:
            self.tally.record_ok(time.monotonic() - sent_at, self.config.chunk)
        else:
            self.tally.record_error(error)

    async def _closed(self, stream: _Stream, deadline: float) -> None:
        requests, seq = self._chunks(), 1
        while self._more(seq - 1, deadline, time.monotonic()):
            sent_at = time.monotonic()
            await stream.call.write(requests.build(seq))
            self._answer(await stream.read(), sent_at)
            seq += 1

    async def _open_loop(self, stream: _Stream, deadline: float) -> None:
        requests, per_stream = self._chunks(), self.config.rate / self.config.streams  # type: ignore[operator]
        intended: deque[float] = deque()  # intended send times of the chunks sent and not yet answered
        writing_done = False
        sent = asyncio.Event()  # set whenever a chunk is sent or the sending ends

        async def reader() -> None:
            # Reads only while an answer is due: cancelling a pending grpc read would cancel the whole call.
            while True:
                if not intended:
                    if writing_done:
                        return
                    sent.clear()
                    await sent.wait()
                    continue
                data = await stream.read()
                self._answer(data, intended.popleft())

        read_task = asyncio.ensure_future(reader())
        try:
            at, seq = time.monotonic(), 1
            while True:
                at += self._rng.expovariate(per_stream)
                if not self._more(seq - 1, deadline, at):
                    break
                await asyncio.sleep(max(0.0, at - time.monotonic()))  # the Poisson schedule, not synchronisation
                intended.append(at)
                sent.set()
                await stream.call.write(requests.build(seq))
                seq += 1
        except BaseException:  # the call failed (or we are cancelled): its pending read goes too
            read_task.cancel()
            await asyncio.gather(read_task, return_exceptions=True)
            raise
        writing_done = True
        sent.set()
        await read_task

    async def _run_stream(self, stream: _Stream, deadline: float) -> None:
        body = self._closed if self.config.rate is None else self._open_loop
        try:
            await body(stream, deadline)
            await stream.finish()
        except (StreamFailed, grpc.aio.AioRpcError) as exc:
            self.tally.record_error(code_of(exc))
        finally:
            self.tally.ended = time.monotonic()

    async def run(self, wait_for_start: Callable[[], Awaitable[None]]) -> Tally:
        async with self.config.security.aio_channel(self.config.target, CHANNEL_OPTIONS) as channel:
            opened = await asyncio.gather(*(self._open(channel) for _ in range(self.config.streams)))
            streams = [s for s in opened if s is not None]
            await wait_for_start()
            began = time.monotonic()
            self._measure_from = self.tally.started = began + self.config.warmup_s
            deadline = self.tally.started + (self.config.duration_s or 0.0)
            await asyncio.gather(*(self._run_stream(s, deadline) for s in streams))
        if self.tally.ended is None:
            self.tally.ended = self.tally.started
        return self.tally


def code_of(exc: Exception) -> str:
    if isinstance(exc, StreamFailed):
        return exc.code
    assert isinstance(exc, grpc.aio.AioRpcError)
    return exc.code().name
