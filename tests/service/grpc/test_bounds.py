"""Bounds one client cannot push past: steps and sequences per request, long stateless sequences run in bounded
segments (same answer), `sequence_id` length, native streams without a session, and a stream whose session was
evicted ends instead of lingering."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest

from seqserve_client import Client, ServerError
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as npb_grpc
from service.engine.errors import ResourceExhausted
from service.grpc.cut import OpenStreams
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from service.grpc.idle import IdleStreams
from service.grpc.native.servicer import NativeServicer
from service.grpc.triton.servicer import TritonServicer
from service.settings import Settings
from tests.service.grpc.helpers import Reference, RunningServer, runtime_of

MODEL = "vowels_lstm"


def test_steps_and_sequences_per_request_are_bounded(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(max_request_steps=50, max_request_batch=3)
    with Client(server.target) as client:
        for shape in ((4, 5, 12), (1, 51, 12)):
            with pytest.raises(ServerError) as refused:
                client.infer(MODEL, np.zeros(shape, np.float32))
            assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT and "at most" in refused.value.message
        with client.stream(MODEL) as stream:
            with pytest.raises(ServerError) as refused:
                stream.send(np.zeros((51, 12), np.float32))
            assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
            stream.send(np.zeros((50, 12), np.float32))  # the stream goes on


def test_a_long_stateless_sequence_runs_in_bounded_segments_with_the_same_answer(
    start_server: Callable[..., RunningServer], reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(max_run_steps=7)
    runtime = runtime_of(server.registry.get(MODEL))
    longest: list[int] = []
    run = runtime.run

    def spy(inputs: dict[str, np.ndarray], state: Any) -> Any:
        longest.append(max(a.shape[1] for a in inputs.values() if a.ndim == 3))
        return run(inputs, state)

    monkeypatch.setattr(runtime, "run", spy)
    x = reference.sequence(MODEL, 30, np.random.default_rng(0))
    with Client(server.target) as client:
        outputs, _ = client.infer(MODEL, x[None])
    np.testing.assert_allclose(outputs["logits"][0], reference.run(MODEL, x)["logits"], atol=1e-4)
    assert max(longest) == 7 and len(longest) == 5


def test_long_string_sequence_ids_are_refused(start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    request = tpb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 2, 12])
    request.raw_input_contents.append(np.zeros((2, 12), "<f4").tobytes())
    request.parameters["sequence_id"].string_param = "x" * 4097
    request.parameters["sequence_start"].bool_param = True
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as refused:
        tpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert len(refused.value.details()) < 200  # type: ignore[attr-defined]


def test_a_stream_whose_session_is_evicted_ends_with_failed_precondition(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    requests: queue.Queue[npb.StreamRequest | None] = queue.Queue()

    def outgoing() -> Iterator[npb.StreamRequest]:
        while (request := requests.get()) is not None:
            yield request

    with grpc.insecure_channel(server.target) as channel:
        call = npb_grpc.SeqServeStub(channel).Stream(outgoing(), timeout=30)
        requests.put(npb.StreamRequest(open=npb.Open(model=MODEL)))
        assert next(call).WhichOneof("kind") == "opened"

        async def evict() -> int:
            return server.registry.get(MODEL).evict_idle(time.monotonic() + 3600)

        assert server.call(evict()) == 1
        with pytest.raises(grpc.RpcError) as ended:
            next(call)
        requests.put(None)
    assert ended.value.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "expired" in ended.value.details()  # type: ignore[attr-defined]
    assert server.active_sessions(MODEL) == 0


async def test_streams_without_a_session_or_a_request_are_bounded_over_both_fronts() -> None:
    idle, streams = IdleStreams(1), OpenStreams()
    servicer = NativeServicer(dataplane=None, streams=streams, idle=idle)  # type: ignore[arg-type]
    triton = TritonServicer(SimpleNamespace(count=lambda *_: None), Settings(), streams, idle)  # type: ignore[arg-type]
    reading, release = asyncio.Event(), asyncio.Event()

    async def silent() -> AsyncIterator[npb.StreamRequest]:
        reading.set()  # the handler waits for its first message now
        await release.wait()
        return
        yield npb.StreamRequest()

    first = asyncio.ensure_future(anext(servicer.Stream(silent(), None), None))  # type: ignore[arg-type]
    await reading.wait()
    with pytest.raises(ResourceExhausted, match="without a session or a request"):
        await anext(servicer.Stream(silent(), None))  # type: ignore[arg-type]
    release.set()
    assert await first is None  # the client half-closed: the stream ended, its place is free again
    second = servicer.Stream(silent(), None)  # type: ignore[arg-type]
    assert await anext(second, None) is None
    reading.clear()
    release.clear()
    waiting = asyncio.ensure_future(anext(triton.ModelStreamInfer(silent(), None), None))  # type: ignore[arg-type]
    await reading.wait()  # a Triton stream without a request takes the one place too
    with pytest.raises(ResourceExhausted):
        await anext(servicer.Stream(silent(), None))  # type: ignore[arg-type]
    release.set()
    assert await waiting is None and idle.count == 0
