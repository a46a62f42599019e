"""Errors are mapped once, for every RPC of both services: nothing unexpected reaches a client as UNKNOWN or with
internal text, and a failed model run inside a stream is an in-stream error that leaves the state unchanged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

from seqserve_client import Client, ServerError
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as npb_grpc
from service.grpc.errors import INTERNAL_MESSAGE
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from tests.service.grpc.helpers import Reference, RunningServer, runtime_of

MODEL = "vowels_lstm"
SECRET = "secret-internal-detail-7f3a"
POISON = 1.0e6  # a chunk whose first value is this makes the (fault-injected) model run fail
ACCOUNTING = {"count", "label", "close"}  # the interceptor itself counts failures through these


def raise_everywhere(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every public call of the server's data plane raises an unexpected error carrying `SECRET`."""
    dataplane = server.serving.dataplane

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(SECRET)

    names = [n for n in dir(dataplane) if not n.startswith("_") and n not in ACCOUNTING]
    for name in names:
        if callable(getattr(dataplane, name)):
            monkeypatch.setattr(dataplane, name, boom)


def requests_for(service: Any, stub: Any) -> list[tuple[str, Callable[[], Any]]]:
    """One call per RPC of `service` (its descriptor: a new RPC is covered without editing this test)."""
    calls = []
    for method in service.methods:
        request_class = getattr(npb if service.name == "SeqServe" else tpb, method.input_type.name)
        request = request_class()
        for field in ("model", "name", "model_name"):
            if field in request_class.DESCRIPTOR.fields_by_name:
                setattr(request, field, MODEL)
        if method.input_type.name == "StreamRequest":
            request.open.model = MODEL
        rpc = getattr(stub, method.name)
        if method.client_streaming:
            calls.append((method.name, lambda rpc=rpc, request=request: list(rpc(iter([request]), timeout=30))))
        else:
            calls.append((method.name, lambda rpc=rpc, request=request: rpc(request, timeout=30)))
    return calls


def test_every_rpc_of_both_services_maps_unexpected_errors_to_internal(
    start_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server()
    raise_everywhere(server, monkeypatch)
    with grpc.insecure_channel(server.target) as channel:
        calls = requests_for(npb.DESCRIPTOR.services_by_name["SeqServe"], npb_grpc.SeqServeStub(channel))
        calls += requests_for(tpb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
                              tpb_grpc.GRPCInferenceServiceStub(channel))
        assert len(calls) == 19
        for name, call in calls:
            with pytest.raises(grpc.RpcError) as raised:
                answer = call()
                if name == "ModelStreamInfer":  # an in-stream error answer: the stream itself goes on
                    (response,) = answer
                    assert response.error_message.endswith(f"INTERNAL: {INTERNAL_MESSAGE}"), name
                    raise raised_from_stream(response)
            assert raised.value.code() == grpc.StatusCode.INTERNAL, name
            assert raised.value.details() == INTERNAL_MESSAGE, name
            assert SECRET not in str(raised.value.debug_error_string()), name
    monkeypatch.undo()
    with Client(server.target) as client:  # the server kept running
        assert any(m.name == MODEL for m in client.models())


class _StreamError(grpc.RpcError):
    def __init__(self, message: str) -> None:
        self._message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def details(self) -> str:
        return self._message.rsplit("INTERNAL: ", 1)[1]

    def debug_error_string(self) -> str:
        return self._message


def raised_from_stream(response: tpb.ModelStreamInferResponse) -> grpc.RpcError:
    return _StreamError(response.error_message)


def poison(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the model run fail for any batch holding a poisoned chunk; returns the list of failed batch sizes."""
    runtime = runtime_of(server.registry.get(MODEL))
    real_run = runtime.run
    failed: list[int] = []

    def run(inputs: dict[str, np.ndarray], state: dict[str, Any]) -> Any:
        x = next(iter(inputs.values()))
        if (x[:, 0, 0] == POISON).any():
            failed.append(x.shape[0])
            raise RuntimeError(SECRET)
        return real_run(inputs, state)

    monkeypatch.setattr(runtime, "run", run)
    return failed


def test_a_failed_model_run_is_an_in_stream_error_and_the_state_is_unchanged(
    start_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch, reference: Reference,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server()
    failed = poison(server, monkeypatch)
    x = reference.sequence(MODEL, 12, np.random.default_rng(0))
    bad = x[6:9].copy()
    bad[0, 0] = POISON
    with caplog.at_level(logging.ERROR), Client(server.target) as client, client.stream(MODEL) as stream:
        first = stream.send(x[:6])["logits"]
        with pytest.raises(ServerError) as raised:
            stream.send(bad)
        assert raised.value.code == grpc.StatusCode.INTERNAL and SECRET not in str(raised.value)
        rest = stream.send(x[6:])["logits"]  # the same stream goes on, from the state before the failed chunk
    np.testing.assert_allclose(np.concatenate([first, rest]), reference.run(MODEL, x)["logits"], atol=1e-5)
    runs = [r for r in caplog.records if "model run failed" in r.getMessage()]
    assert len(runs) == len(failed) == 1  # logged once per failed batch, not once per request
    assert not [r for r in caplog.records if r.name == "service.grpc.errors"]  # nothing reported as unexpected


def test_a_failed_model_run_answers_every_triton_request_of_the_batch_once(
    start_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch, reference: Reference,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(max_queue_delay_us=200_000)
    failed = poison(server, monkeypatch)
    rng = np.random.default_rng(1)
    xs = [reference.sequence(MODEL, 8, rng) for _ in range(4)]

    def request(k: int, chunk: np.ndarray, start: bool) -> tpb.ModelInferRequest:
        r = tpb.ModelInferRequest(model_name=MODEL, id=f"{k}", raw_input_contents=[chunk[None].tobytes()])
        r.inputs.add(name="input", datatype="FP32", shape=[1, *chunk.shape])
        r.parameters["sequence_id"].int64_param = k + 1
        r.parameters["sequence_start"].bool_param = start
        return r

    poisoned = [x[4:7].copy() for x in xs]  # 3 steps: never batched with the 4-step chunks (lengths group)
    for p in poisoned:
        p[0, 0] = POISON
    messages = [request(k, x[:4], True) for k, x in enumerate(xs)]
    messages += [request(k, p, False) for k, p in enumerate(poisoned)]
    messages += [request(k, x[4:], False) for k, x in enumerate(xs)]
    with caplog.at_level(logging.ERROR), grpc.insecure_channel(server.target) as channel:
        answers = list(tpb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(messages), timeout=60))
    assert len(answers) == 12
    errors = [a for a in answers if a.error_message]
    assert len(errors) == 4 and all("INTERNAL: the model run failed" in a.error_message for a in errors)
    for k, x in enumerate(xs):
        mine = [a.infer_response for a in answers if a.infer_response.id == f"{k}" and not a.error_message]
        got = np.concatenate([np.frombuffer(r.raw_output_contents[0], np.float32).reshape(4, -1) for r in mine])
        np.testing.assert_allclose(got, reference.run(MODEL, x)["logits"], atol=1e-5)  # state unchanged by the failure
    runs = [r for r in caplog.records if "model run failed" in r.getMessage()]
    assert len(runs) == len(failed) and sum(failed) == 4
