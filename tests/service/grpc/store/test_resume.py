"""Native streams resume on another server sharing the Redis store: by token at the protocol level, and by
themselves through the SDK when their server goes away (outputs equal the whole-sequence run)."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest

from seqserve_client import AsyncClient, Client
from seqserve_client import codec as convert
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.grpc.native.servicer import RESUME_KEY

if TYPE_CHECKING:
    from tests.redis_server import RedisServer
    from tests.service.grpc.helpers import Reference, RunningServer

MODEL = "vowels_lstm"
TOLERANCE = 1e-4


def chunk_request(seq: int, x: np.ndarray) -> pb.StreamRequest:
    return pb.StreamRequest(seq=seq, chunk=pb.Chunk(input=convert.array_to_tensor(x)))


def test_open_resume_continues_on_another_server_with_position_and_recent_answers(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
) -> None:
    a, b = (start_server(session_store=redis_server.url) for _ in range(2))
    x = reference.sequence(MODEL, 12, np.random.default_rng(0))
    sent: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
    for request in (pb.StreamRequest(seq=0, open=pb.Open(model=MODEL)), chunk_request(1, x[:4]),
                    chunk_request(2, x[4:8])):
        sent.put(request)
    with grpc.insecure_channel(a.target) as channel:
        call = pb_grpc.SeqServeStub(channel).Stream(iter(sent.get, None))  # never half-closed: cancelled below
        opened, first, second = (next(call) for _ in range(3))
        call.cancel()  # a broken stream: the stored session stays for a resume
        sent.put(None)
    token = opened.opened.resume_token
    assert token and opened.opened.position == 0
    with grpc.insecure_channel(b.target) as channel:
        stub = pb_grpc.SeqServeStub(channel)
        call = stub.Stream(iter([pb.StreamRequest(seq=0, open=pb.Open(model=MODEL, resume=token)),
                                 chunk_request(3, x[8:]), pb.StreamRequest(seq=4, end=pb.End())]))
        resumed, third = next(call), next(call)
        assert list(call) == []
        assert resumed.opened.position == 2 and resumed.opened.resume_token == token
        recent = [convert.tensors_to_arrays(r.outputs)["logits"] for r in resumed.opened.recent]
        answers = [convert.tensors_to_arrays(r.result.outputs)["logits"] for r in (first, second, third)]
        np.testing.assert_allclose(np.concatenate(recent), np.concatenate(answers[:2]), atol=0, rtol=0)
        np.testing.assert_allclose(np.concatenate(answers), reference.run(MODEL, x)["logits"], atol=TOLERANCE, rtol=0)
        again = stub.Stream(iter([pb.StreamRequest(seq=0, open=pb.Open(model=MODEL, resume=token))]))
        with pytest.raises(grpc.RpcError) as ended:  # END deleted the stored session
            next(again)
        assert ended.value.code() == grpc.StatusCode.NOT_FOUND


def test_resume_on_the_memory_store_is_a_failed_precondition(start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    with grpc.insecure_channel(server.target) as channel:
        call = pb_grpc.SeqServeStub(channel).Stream(iter([
            pb.StreamRequest(seq=0, open=pb.Open(model=MODEL, resume="abc"))
        ]))
        with pytest.raises(grpc.RpcError) as refused:
            next(call)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "session store" in (refused.value.details() or "")


def test_sdk_streams_resume_by_themselves_when_their_server_stops(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
    streamable: list[str],
) -> None:
    a, b = (start_server(session_store=redis_server.url) for _ in range(2))
    rng = np.random.default_rng(4)
    runs = [(model, reference.sequence(model, 40, rng)) for model in streamable for _ in range(2)]
    # pick_first over both addresses: every stream lands on `a` first, and on `b` once `a` is gone
    with Client(f"ipv4:127.0.0.1:{a.serving.port},127.0.0.1:{b.serving.port}") as client:
        streams = [client.stream(model) for model, _ in runs]
        outputs: list[list[np.ndarray]] = [[] for _ in runs]
        for k in range(0, 40, 5):
            if k == 20:
                a.stop()  # every open stream is cut with UNAVAILABLE; the store keeps their sessions
            for stream, out, (_, x) in zip(streams, outputs, runs, strict=True):
                stream.submit(x[k:k + 3])
                stream.submit(x[k + 3:k + 5])  # two in flight: a resume resends only what was not applied
                out += [next(iter(stream.receive().values())), next(iter(stream.receive().values()))]
        assert all(stream.resumes == 1 for stream in streams)
        for stream, out, (model, x) in zip(streams, outputs, runs, strict=True):
            want = next(iter(reference.run(model, x).values()))
            np.testing.assert_allclose(np.concatenate(out), want, atol=TOLERANCE, rtol=0, err_msg=model)
            stream.close()


async def test_async_sdk_streams_resume_by_themselves_when_their_server_stops(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
) -> None:
    a, b = (start_server(session_store=redis_server.url) for _ in range(2))
    xs = [reference.sequence(MODEL, 30, np.random.default_rng(seed)) for seed in range(4)]
    async with AsyncClient(f"ipv4:127.0.0.1:{a.serving.port},127.0.0.1:{b.serving.port}") as client:
        streams = [await client.stream(MODEL).open() for _ in xs]
        outputs: list[list[np.ndarray]] = [[] for _ in xs]
        for k in range(0, 30, 6):
            if k == 12:
                a.stop()
            for stream, out, x in zip(streams, outputs, xs, strict=True):
                await stream.submit(x[k:k + 2])
                await stream.submit(x[k + 2:k + 6])
                out += [(await stream.receive())["logits"], (await stream.receive())["logits"]]
        assert all(stream.resumes == 1 for stream in streams)
        for stream, out, x in zip(streams, outputs, xs, strict=True):
            np.testing.assert_allclose(np.concatenate(out), reference.run(MODEL, x)["logits"], atol=TOLERANCE, rtol=0)
            await stream.close()


def test_a_shutdown_hands_streams_off_at_once_with_the_resume_token_in_the_status(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
) -> None:
    server = start_server(session_store=redis_server.url)
    x = reference.sequence(MODEL, 4, np.random.default_rng(1))
    sent: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
    sent.put(pb.StreamRequest(seq=0, open=pb.Open(model=MODEL)))
    sent.put(chunk_request(1, x))
    with grpc.insecure_channel(server.target) as channel:
        call = pb_grpc.SeqServeStub(channel).Stream(iter(sent.get, None))
        opened, _ = next(call), next(call)
        server.stop(grace=600)  # returns at once: nothing waits for the open session
        with pytest.raises(grpc.RpcError) as cut:
            next(call)
        sent.put(None)
    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (RESUME_KEY, opened.opened.resume_token) in tuple(cut.value.trailing_metadata() or ())


def test_a_resume_token_is_the_principals_own(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
) -> None:
    """With authentication, a stream's stored session lives in its principal's namespace: another principal who
    holds the token gets the same answer as for a token that never existed, and the owner still resumes it."""
    tokens = json.dumps({"alice-token": {"principal": "alice"}, "bob-token": {"principal": "bob"}})
    a, b = (start_server(session_store=redis_server.url, auth_tokens=tokens) for _ in range(2))
    x = reference.sequence(MODEL, 8, np.random.default_rng(3))
    alice, bob = (("authorization", "Bearer alice-token"),), (("authorization", "Bearer bob-token"),)
    sent: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
    for request in (pb.StreamRequest(seq=0, open=pb.Open(model=MODEL)), chunk_request(1, x[:4])):
        sent.put(request)
    with grpc.insecure_channel(a.target) as channel:
        call = pb_grpc.SeqServeStub(channel).Stream(iter(sent.get, None), metadata=alice)
        opened, first = next(call), next(call)
        call.cancel()
        sent.put(None)
    token = opened.opened.resume_token

    def resume(who: tuple[tuple[str, str], ...], resume_token: str) -> list[pb.StreamResponse]:
        with grpc.insecure_channel(b.target) as channel:
            requests = [pb.StreamRequest(seq=0, open=pb.Open(model=MODEL, resume=resume_token)),
                        chunk_request(2, x[4:]), pb.StreamRequest(seq=3, end=pb.End())]
            return list(pb_grpc.SeqServeStub(channel).Stream(iter(requests), metadata=who))

    answers = {}
    for name, attempt in (("foreign", token), ("unknown", "A" * len(token))):
        with pytest.raises(grpc.RpcError) as refused:
            resume(bob, attempt)
        answers[name] = (refused.value.code(), refused.value.details())
    assert answers["foreign"] == answers["unknown"] and answers["foreign"][0] == grpc.StatusCode.NOT_FOUND
    resumed, second = resume(alice, token)
    assert resumed.opened.position == 1
    got = np.concatenate([convert.tensors_to_arrays(r.result.outputs)["logits"] for r in (first, second)])
    np.testing.assert_allclose(got, reference.run(MODEL, x)["logits"], atol=TOLERANCE, rtol=0)
