"""Triton `ModelStreamInfer` load: the native driver's closed loop over the KServe v2 / Triton protocol.

Every load stream is one Triton sequence: a `sequence_id` of its own, `sequence_start` on its first request
(until one is answered), and `sequence_end` on one extra request after its last, which is not measured. Requests
are what tritonclient's `async_stream_infer` sends (raw FP32 bytes, sequence parameters), prebuilt as bytes.

- `multiplex=False`: one `ModelStreamInfer` call per sequence, like one native `Stream` per session;
- `multiplex=True`: every sequence of a client process on one call; answers come back in completion order and
  are routed to their sequence by the request `id` the server echoes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from seqserve_client import codec
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.loadtest import protocol
from service.loadtest.closedloop import ClosedLoop
from service.loadtest.config import LoadConfig
from service.loadtest.driver import CHANNEL_OPTIONS, StreamFailed, code_of
from service.loadtest.stats import Tally

STREAM_INFER_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
METADATA_METHOD = "/inference.GRPCInferenceService/ModelMetadata"
ID_SPAN = 1_000_000  # sequence ids of one client process: seed * ID_SPAN + 1 ...


def sequence_requests(config: LoadConfig, input_name: str, index: int, x: np.ndarray | dict[str, np.ndarray]
                      ) -> tuple[bytes, bytes, bytes]:
    """(first, next, end) requests of load stream `index`: START, plain, END; same chunk `x` (time, features),
    or `{name: (time, features)}` of every input (token ids, several inputs)."""
    sequence_id = config.seed * ID_SPAN + index + 1
    arrays = x if isinstance(x, dict) else {input_name: x.astype(np.float32)}
    batch = {name: np.ascontiguousarray(a[np.newaxis]) for name, a in arrays.items()}  # (1, time, features)
    tensors = [tpb.ModelInferRequest.InferInputTensor(name=name, datatype=codec.of_numpy(a.dtype).kserve,
                                                      shape=list(a.shape)) for name, a in batch.items()]
    raw = [codec.to_bytes(a) for a in batch.values()]

    def build(**flags: bool) -> bytes:
        params = {"sequence_id": tpb.InferParameter(int64_param=sequence_id)}
        params.update({name: tpb.InferParameter(bool_param=True) for name, on in flags.items() if on})
        return tpb.ModelInferRequest(model_name=config.model, model_version=str(config.version or ""), id=str(index),
                                     inputs=tensors, raw_input_contents=raw,
                                     parameters=params).SerializeToString()

    return build(sequence_start=True), build(), build(sequence_end=True)


def answer_error(reply: tpb.ModelStreamInferResponse) -> str | None:
    """The status code name of an in-stream error answer ("... INVALID_ARGUMENT: message"), None if answered."""
    if not reply.error_message:
        return None
    head = reply.error_message.split(": ", 2)
    return head[1] if head[0].startswith("request ") and len(head) > 1 else head[0]


async def input_name_of(channel: grpc.aio.Channel, config: LoadConfig) -> str:
    request = tpb.ModelMetadataRequest(name=config.model, version=str(config.version or ""))
    reply = await channel.unary_unary(METADATA_METHOD)(request.SerializeToString())
    return str(tpb.ModelMetadataResponse.FromString(reply).inputs[0].name)


async def _read(call: grpc.aio.StreamStreamCall) -> tpb.ModelStreamInferResponse:
    data = await call.read()
    if data is grpc.aio.EOF:
        raise StreamFailed((await call.code()).name)
    return tpb.ModelStreamInferResponse.FromString(data)


async def _finish(call: grpc.aio.StreamStreamCall) -> None:
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass
    if (code := await call.code()) != grpc.StatusCode.OK:
        raise StreamFailed(code.name)


Ask = Callable[[bytes], Awaitable[tpb.ModelStreamInferResponse]]


class TritonDriver(ClosedLoop):
    """One client process of a Triton load: `run(wait_for_start) -> Tally`, like the native `Driver`."""

    def _reply(self, reply: tpb.ModelStreamInferResponse, sent_at: float) -> bool:
        """Tally one answer; whether it was a success."""
        return self._answer(answer_error(reply), sent_at)

    async def _sequence(self, ask: Ask, requests: tuple[bytes, bytes, bytes], deadline: float) -> None:
        """The closed loop of one sequence: START until answered, then plain requests, then the unmeasured END."""
        first, plain, end = requests
        sent, started = 0, False
        while self._more(sent, deadline):
            sent_at = time.monotonic()
            started = self._reply(await ask(plain if started else first), sent_at) or started
            sent += 1
        if started:
            await ask(end)

    async def _own_stream(self, channel: grpc.aio.Channel, requests: tuple[bytes, bytes, bytes], deadline: float
                          ) -> None:
        call = channel.stream_stream(STREAM_INFER_METHOD)()

        async def ask(request: bytes) -> tpb.ModelStreamInferResponse:
            await call.write(request)
            return await _read(call)

        await self._sequence(ask, requests, deadline)
        await _finish(call)

    async def _shared_stream(self, channel: grpc.aio.Channel, all_requests: list[tuple[bytes, bytes, bytes]],
                             deadline: float) -> None:
        call = channel.stream_stream(STREAM_INFER_METHOD)()
        waiting: dict[str, asyncio.Future[tpb.ModelStreamInferResponse]] = {}
        outbox: asyncio.Queue[bytes | None] = asyncio.Queue()  # one writer: one write in flight per call

        async def writer() -> None:
            while (request := await outbox.get()) is not None:
                await call.write(request)

        async def reader() -> None:  # until the call ends; a failed call fails every sequence still waiting
            try:
                while True:
                    reply = await _read(call)
                    waiting.pop(reply.infer_response.id).set_result(reply)
            except StreamFailed as exc:
                for future in waiting.values():
                    future.set_exception(exc)

        def asker(index: int) -> Ask:
            async def ask(request: bytes) -> tpb.ModelStreamInferResponse:
                future = waiting[str(index)] = asyncio.get_running_loop().create_future()
                outbox.put_nowait(request)
                return await future

            return ask

        read_task, write_task = asyncio.ensure_future(reader()), asyncio.ensure_future(writer())
        sequences = (self._guarded(self._sequence(asker(i), r, deadline)) for i, r in enumerate(all_requests))
        await asyncio.gather(*sequences)
        outbox.put_nowait(None)
        try:
            await write_task
            if not call.done():
                await call.done_writing()
        except grpc.aio.AioRpcError:
            pass  # the call failed: the sequences have counted it
        await read_task
        if (code := await call.code()) != grpc.StatusCode.OK and not self.tally.errors:
            self.tally.record_error(code.name)

    async def _guarded(self, body: Awaitable[None]) -> None:
        try:
            await body
        except (StreamFailed, grpc.aio.AioRpcError) as exc:
            self.tally.record_error(code_of(exc))
        finally:
            self.tally.ended = time.monotonic()

    async def run(self, wait_for_start: Callable[[], Awaitable[None]]) -> Tally:
        config = self.config
        async with grpc.aio.insecure_channel(config.target, options=CHANNEL_OPTIONS) as channel:
            try:
                name = await input_name_of(channel, config)
            except grpc.aio.AioRpcError as exc:
                name = None
                for _ in range(config.streams):
                    self.tally.record_error(exc.code().name)
            x: np.ndarray | dict[str, np.ndarray] = (
                protocol.random_chunk(config.inputs, config.chunk, self._rng) if config.inputs
                else self._rng.standard_normal((config.chunk, config.features)).astype(np.float32))  # type: ignore[arg-type]
            requests = [] if name is None else [sequence_requests(config, name, i, x) for i in range(config.streams)]
            await wait_for_start()
            self._measure_from = self.tally.started = time.monotonic() + config.warmup_s
            deadline = self.tally.started + (config.duration_s or 0.0)
            if not requests:
                pass
            elif config.multiplex:
                await self._shared_stream(channel, requests, deadline)
            else:
                await asyncio.gather(*(self._guarded(self._own_stream(channel, r, deadline)) for r in requests))
        if self.tally.ended is None:
            self.tally.ended = self.tally.started
        return self.tally
