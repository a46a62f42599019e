"""The bad-input suite through the real server: every rejection has its status code; a stream that survives
a rejected chunk continues from the state it had, and the other streams never notice."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest

from seqserve_client.codec import array_to_tensor
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc

MODEL = "vowels_lstm"
TOLERANCE = 1e-4


def with_value(x: np.ndarray, value: float) -> np.ndarray:
    bad = x.copy()
    bad[-1, 0] = value
    return bad


BAD_CHUNKS: dict[str, Callable[[np.ndarray], pb.Chunk]] = {
    "wrong dtype": lambda x: pb.Chunk(input=array_to_tensor(x.astype(np.float64))),
    "wrong rank": lambda x: pb.Chunk(input=array_to_tensor(x[None])),
    "wrong feature size": lambda x: pb.Chunk(input=array_to_tensor(x[:, :-1])),
    "empty chunk": lambda x: pb.Chunk(input=array_to_tensor(x[:0])),
    "NaN": lambda x: pb.Chunk(input=array_to_tensor(with_value(x, np.nan))),
    "Inf": lambda x: pb.Chunk(input=array_to_tensor(with_value(x, -np.inf))),
    "bytes not matching shape": lambda x: pb.Chunk(
        input=pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=x.shape, data=x.tobytes()[:-4])
    ),
    "unspecified dtype": lambda x: pb.Chunk(input=pb.Tensor(shape=x.shape, data=x.tobytes())),
    "no tensor": lambda x: pb.Chunk(),
}


class RawStream:
    """A bare `Stream` call: write any message, read the raw answer, see how the stream ended."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = pb_grpc.SeqServeStub(channel).Stream()

    async def ask(self, request: pb.StreamRequest) -> pb.StreamResponse:
        await self.call.write(request)
        response = await self.call.read()
        assert response is not grpc.aio.EOF, await self.call.details()
        return response

    async def open(self, model: str = MODEL, version: int = 0) -> pb.Opened:
        response = await self.ask(pb.StreamRequest(seq=0, open=pb.Open(model=model, version=version)))
        assert response.WhichOneof("kind") == "opened", response
        return response.opened

    async def step(self, seq: int, x: np.ndarray) -> np.ndarray:
        response = await self.ask(pb.StreamRequest(seq=seq, chunk=pb.Chunk(input=array_to_tensor(x))))
        assert response.seq == seq and response.WhichOneof("kind") == "result", response
        return np.frombuffer(response.result.outputs["logits"].data, np.float32).reshape(len(x), -1)

    async def ended_with(self, request: pb.StreamRequest) -> grpc.StatusCode:
        """Send a request that must end the stream; the final status code."""
        try:
            await self.call.write(request)
            assert await self.call.read() is grpc.aio.EOF
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await self.call.code()


@pytest.fixture
async def channel(start_server: Callable):
    server = start_server()
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield server, channel


async def test_rejected_chunks_leave_the_state_and_other_streams_untouched(channel, reference) -> None:
    server, chan = channel
    rng = np.random.default_rng(3)
    victim, bystander = RawStream(chan), RawStream(chan)
    await victim.open()
    await bystander.open()
    x, y = reference.sequence(MODEL, 60, rng), reference.sequence(MODEL, 60, rng)
    got_x, got_y, seq = [], [], 0
    for (name, make_bad), cx, cy in zip(BAD_CHUNKS.items(), np.array_split(x, 9), np.array_split(y, 9), strict=True):
        seq += 1
        got_x.append(await victim.step(seq, cx))
        seq += 1
        rejected = await victim.ask(pb.StreamRequest(seq=seq, chunk=make_bad(cx)))
        assert rejected.WhichOneof("kind") == "error", name
        assert (rejected.seq, rejected.error.code) == (seq, grpc.StatusCode.INVALID_ARGUMENT.value[0]), name
        got_y.append(await bystander.step(seq, cy))
    np.testing.assert_allclose(np.concatenate(got_x), reference.run(MODEL, x)["logits"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(np.concatenate(got_y), reference.run(MODEL, y)["logits"], rtol=0, atol=TOLERANCE)
    assert server.metric("seqserve_requests_total", model=MODEL, code="INVALID_ARGUMENT") == len(BAD_CHUNKS)


async def test_a_message_without_a_kind_is_rejected_in_stream(channel) -> None:
    _, chan = channel
    stream = RawStream(chan)
    await stream.open()
    rejected = await stream.ask(pb.StreamRequest(seq=7))
    assert (rejected.seq, rejected.error.code) == (7, grpc.StatusCode.INVALID_ARGUMENT.value[0])


CHUNK = pb.Chunk(input=array_to_tensor(np.zeros((2, 12), np.float32)))
ENDING: dict[str, tuple[pb.Open | None, pb.StreamRequest, grpc.StatusCode]] = {
    "unknown model": (None, pb.StreamRequest(open=pb.Open(model="nope")), grpc.StatusCode.NOT_FOUND),
    "unknown version": (None, pb.StreamRequest(open=pb.Open(model=MODEL, version=99)), grpc.StatusCode.NOT_FOUND),
    "chunk before open": (None, pb.StreamRequest(seq=1, chunk=CHUNK), grpc.StatusCode.FAILED_PRECONDITION),
    "reset before open": (None, pb.StreamRequest(seq=1, reset=pb.Reset()), grpc.StatusCode.FAILED_PRECONDITION),
    "second open": (pb.Open(model=MODEL), pb.StreamRequest(open=pb.Open(model=MODEL)),
                    grpc.StatusCode.FAILED_PRECONDITION),
    "not streamable": (None, pb.StreamRequest(open=pb.Open(model="vowels_bigru")),
                       grpc.StatusCode.FAILED_PRECONDITION),
}


async def test_protocol_violations_end_the_stream_with_their_status(channel, reference) -> None:
    server, chan = channel
    bystander = RawStream(chan)
    await bystander.open()
    x = reference.sequence(MODEL, 20, np.random.default_rng(4))
    first = await bystander.step(1, x[:10])
    for name, (opening, request, code) in ENDING.items():
        stream = RawStream(chan)
        if opening is not None:
            await stream.open(opening.model)
        assert await stream.ended_with(request) == code, name
    second = await bystander.step(2, x[10:])
    got = np.concatenate([first, second])
    np.testing.assert_allclose(got, reference.run(MODEL, x)["logits"], rtol=0, atol=TOLERANCE)
    assert server.active_sessions(MODEL) == 1  # the bystander's; every ended stream freed its session


async def test_an_oversize_message_is_refused_and_other_streams_continue(start_server: Callable, reference) -> None:
    limit = 64 * 1024
    server = start_server(max_message_bytes=limit)
    async with grpc.aio.insecure_channel(server.target, options=[("grpc.max_send_message_length", 4 * limit)]) as chan:
        bystander, big = RawStream(chan), RawStream(chan)
        await bystander.open()
        await big.open()
        huge = np.zeros((limit // 48 + 1, 12), np.float32)  # one byte row over the limit
        code = await big.ended_with(pb.StreamRequest(seq=1, chunk=pb.Chunk(input=array_to_tensor(huge))))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        x = reference.sequence(MODEL, 5, np.random.default_rng(5))
        got = await bystander.step(1, x)
    np.testing.assert_allclose(got, reference.run(MODEL, x)["logits"], rtol=0, atol=TOLERANCE)
