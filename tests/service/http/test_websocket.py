"""`/v2/models/{name}/stream` against the real server with aiohttp's client: text (proto JSON) and binary
(serialized protobuf) frames equal the whole-sequence run, errors the stream survives come back in-stream, and
whatever ends the socket closes it with the documented code (docs/web.md)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest

from seqserve_client import Client, codec
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from tests.redis_server import RedisServer
from tests.service.grpc.helpers import Reference, RunningServer

MODEL = "vowels_lstm"
TOKENS = {"alice-token": {"principal": "alice", "models": [MODEL]}}


def url(server: RunningServer, model: str = MODEL) -> str:
    return f"ws://127.0.0.1:{server.serving.http_port}/v2/models/{model}/stream"


def token_protocol(token: str) -> str:
    return "seqserve.token." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def chunk_json(seq: int, x: np.ndarray) -> str:
    data = base64.b64encode(np.ascontiguousarray(x, "<f4").tobytes()).decode()
    return json.dumps({"seq": seq, "chunk": {"input": {"dtype": "DATA_TYPE_FLOAT32", "shape": list(x.shape),
                                                       "data": data}}})


def outputs_of(answer: dict[str, Any]) -> np.ndarray:
    tensor = answer["result"]["outputs"]["logits"]
    shape = [int(d) for d in tensor["shape"]]
    return np.frombuffer(base64.b64decode(tensor["data"]), "<f4").reshape(shape)


async def close_of(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    message = await ws.receive()
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    return ws.close_code, str(message.extra or "")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_text_frames_stream_a_session_equal_to_the_whole_run(start_server: Callable[..., RunningServer],
                                                             reference: Reference) -> None:
    server = start_server()
    x = reference.sequence(MODEL, 30, np.random.default_rng(4))
    chunks = Reference.chunks(x, np.random.default_rng(5))

    async def session() -> tuple[list[np.ndarray], dict[str, Any], tuple[int | None, str]]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server), protocols=("seqserve.v1",)) as ws:
            assert ws.protocol == "seqserve.v1"
            await ws.send_str(json.dumps({"seq": 0, "open": {"model": MODEL}}))
            opened = json.loads((await ws.receive()).data)
            for i, chunk in enumerate(chunks, 1):
                await ws.send_str(chunk_json(i, chunk))  # pipelined: every chunk before any answer
            pieces = [outputs_of(json.loads((await ws.receive()).data)) for _ in chunks]
            bad = reference.sequence(MODEL, 2, np.random.default_rng(6))[:, :5]
            await ws.send_str(chunk_json(99, bad))
            error = json.loads((await ws.receive()).data)
            await ws.send_str(json.dumps({"seq": 100, "reset": {}}))
            assert json.loads((await ws.receive()).data) == {"seq": "100", "reset": {}}
            await ws.send_str(json.dumps({"seq": 101, "end": {}}))
            return pieces, {"opened": opened, "error": error}, await close_of(ws)

    pieces, answers, closed = run(session())
    np.testing.assert_allclose(np.concatenate(pieces), reference.run(MODEL, x)["logits"], atol=1e-5)
    assert answers["opened"]["seq"] == "0" and answers["opened"]["opened"]["model"] == MODEL
    assert answers["error"]["seq"] == "99" and answers["error"]["error"]["code"] == 3
    assert closed == (1000, "session ended")
    assert server.metric("seqserve_requests_total", model=MODEL, code="INVALID_ARGUMENT") == 1


def test_binary_frames_carry_serialized_protobuf_both_ways(start_server: Callable[..., RunningServer],
                                                           reference: Reference) -> None:
    server = start_server()
    x = reference.sequence(MODEL, 12, np.random.default_rng(7))

    async def session() -> list[pb.StreamResponse]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
            await ws.send_bytes(pb.StreamRequest(seq=0, open=pb.Open()).SerializeToString())  # the path names it
            answers = [pb.StreamResponse.FromString((await ws.receive()).data)]
            for i, chunk in enumerate((x[:5], x[5:]), 1):
                request = pb.StreamRequest(seq=i, chunk=pb.Chunk(input=codec.array_to_tensor(chunk)))
                await ws.send_bytes(request.SerializeToString())
                answers.append(pb.StreamResponse.FromString((await ws.receive()).data))
            await ws.send_bytes(pb.StreamRequest(seq=3, end=pb.End()).SerializeToString())
            assert (await close_of(ws))[0] == 1000
            return answers

    opened, *results = run(session())
    assert opened.opened.model == MODEL
    got = np.concatenate([codec.tensors_to_arrays(r.result.outputs)["logits"] for r in results])
    np.testing.assert_allclose(got, reference.run(MODEL, x)["logits"], atol=1e-5)


@pytest.mark.parametrize(("frames", "code", "says"), [
    (["{not json"], 4003, "INVALID_ARGUMENT"),
    ([b"\xff\xff\xff"], 4003, "binary frame"),
    ([json.dumps({"seq": 1, "chunk": {}})], 4009, "before open"),
    ([json.dumps({"seq": 0, "open": {"model": "vowels_gru"}})], 4009, "its path"),
    ([json.dumps({"seq": 0, "open": {}}), json.dumps({"seq": 1, "open": {}})], 4009, "already has a session"),
])
def test_protocol_violations_close_with_their_code(start_server: Callable[..., RunningServer],
                                                   frames: list[str | bytes], code: int, says: str) -> None:
    server = start_server()

    async def session() -> tuple[int | None, str]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
            for frame in frames:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            while (message := await ws.receive()).type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                pass  # the answers before the violation
            return ws.close_code, str(message.extra or "")

    closed_code, reason = run(session())
    assert closed_code == code and says in reason
    assert server.registry.get(MODEL).stats().inference_count == 0


def test_tokens_come_in_a_subprotocol_and_are_checked_at_the_open(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(auth_tokens=json.dumps(TOKENS))

    async def close_code(model: str, *protocols: str) -> tuple[int | None, str]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server, model),
                                                                     protocols=("seqserve.v1", *protocols)) as ws:
            await ws.send_str(json.dumps({"seq": 0, "open": {}}))
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                assert "opened" in json.loads(message.data)
                await ws.send_str(json.dumps({"seq": 1, "end": {}}))
                message = await ws.receive()
            return ws.close_code, str(message.extra or "")

    assert run(close_code(MODEL))[0] == 4016
    assert run(close_code(MODEL, token_protocol("wrong")))[0] == 4016
    assert run(close_code("vowels_gru", token_protocol("alice-token")))[0] == 4007
    assert run(close_code(MODEL, token_protocol("alice-token"))) == (1000, "session ended")


def test_silent_clients_oversized_frames_and_a_shutdown(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(first_message_timeout=1.0, max_message_bytes=4096)  # an open sent at once makes it

    async def sessions() -> list[int | None]:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url(server)) as silent:
                codes = [(await close_of(silent))[0]]  # no open in time: DEADLINE_EXCEEDED
            async with http.ws_connect(url(server)) as big:
                await big.send_bytes(b"\0" * 8192)
                codes.append((await close_of(big))[0])
            ws = await http.ws_connect(url(server))
            await ws.send_str(json.dumps({"seq": 0, "open": {}}))
            await ws.receive()
            cut = asyncio.ensure_future(close_of(ws))
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(server.serving.shutdown(0), server.loop))
            codes.append((await cut)[0])
            await ws.close()
            return codes

    assert run(sessions()) == [4004, 1009, 1001]


def test_the_session_quota_counts_sockets_and_grpc_streams_together(start_server: Callable[..., RunningServer]
                                                                   ) -> None:
    server = start_server(max_sessions_per_client=1)  # per peer host without tokens: this test is one client
    with Client(server.target) as client, client.stream(MODEL):

        async def refused() -> tuple[int | None, str]:
            async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
                await ws.send_str(json.dumps({"seq": 0, "open": {}}))
                message = await ws.receive()
                return ws.close_code, str(message.extra)

        code, reason = run(refused())
    assert code == 4008 and "quota" in reason


def test_a_socket_session_resumes_over_grpc_from_the_shared_store(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference
) -> None:
    server = start_server(session_store=redis_server.url)
    x = reference.sequence(MODEL, 16, np.random.default_rng(9))

    async def first_half() -> tuple[str, np.ndarray]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
            await ws.send_str(json.dumps({"seq": 0, "open": {}}))
            token = json.loads((await ws.receive()).data)["opened"]["resumeToken"]
            await ws.send_str(chunk_json(1, x[:9]))
            return token, outputs_of(json.loads((await ws.receive()).data))  # then the socket just goes away

    token, head = run(first_half())
    assert token
    with grpc.insecure_channel(server.target) as channel:
        call = channel.stream_stream("/seqserve.v1.SeqServe/Stream",
                                     request_serializer=pb.StreamRequest.SerializeToString,
                                     response_deserializer=pb.StreamResponse.FromString)
        chunk = pb.StreamRequest(seq=2, chunk=pb.Chunk(input=codec.array_to_tensor(x[9:])))
        answers = list(call(iter([pb.StreamRequest(open=pb.Open(model=MODEL, resume=token)), chunk,
                                  pb.StreamRequest(seq=3, end=pb.End())]), timeout=60))
    assert answers[0].opened.position == 1
    tail = codec.tensors_to_arrays(answers[1].result.outputs)["logits"]
    np.testing.assert_allclose(np.concatenate([head, tail]), reference.run(MODEL, x)["logits"], atol=1e-5)


def test_sockets_without_a_session_are_bounded(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(max_streams_without_session=2)

    async def sessions() -> tuple[int | None, str]:
        async with aiohttp.ClientSession() as http:
            waiting = [await http.ws_connect(url(server)) for _ in range(2)]  # connected, no open yet
            async with http.ws_connect(url(server)) as third:
                message = await third.receive()
                result = third.close_code, str(message.extra)
            for ws in waiting:
                await ws.close()
            return result

    code, reason = run(sessions())
    assert code == 4008 and "without a session" in reason


def test_an_evicted_session_closes_its_socket(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(session_idle_timeout=1.0)  # the engine's sweeper evicts it; the socket is told at once

    async def session() -> tuple[int | None, str]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
            await ws.send_str(json.dumps({"seq": 0, "open": {}}))
            await ws.receive()
            return await close_of(ws)  # no chunk: evicted after 1 s idle

    code, reason = run(session())
    assert code == 4009 and "expired" in reason
    assert server.metric("seqserve_requests_total", model=MODEL, code="FAILED_PRECONDITION") == 1


def test_a_client_that_answers_no_ping_is_closed(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(websocket_heartbeat=0.5)

    async def session() -> tuple[bool, aiohttp.WSMsgType]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url(server), autoping=False) as ws:
            await ws.send_str(json.dumps({"seq": 0, "open": {}}))
            await ws.receive()
            pinged = (await ws.receive()).type == aiohttp.WSMsgType.PING  # the server's keepalive; no pong
            while (message := await ws.receive()).type == aiohttp.WSMsgType.PING:
                pass
            return pinged, message.type

    pinged, ended = run(session())
    assert pinged and ended in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
