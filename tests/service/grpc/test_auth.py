"""Bearer-token authentication and authorization through the real server: every RPC of both services needs a
known token (health is exempt by default), principals see only their models, hold at most their session quota,
and their Triton sequence ids live in their own namespace: another principal cannot see, step or end them, and
an id someone else holds answers exactly like an id nobody holds. Without auth, probing ids costs the same answer."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve_client import Client, Security, ServerError
from seqserve_client.__main__ import main as cli
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as npb_grpc
from service.engine.errors import ConfigurationError
from service.grpc.auth import peer_host
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from service.tokens import load_tokens
from tests.service.grpc.helpers import Reference, RunningServer, rpc_status

MODEL, OTHER = "vowels_lstm", "vowels_gru"
TOKENS = {
    "alice-token": {"principal": "alice", "max_sessions": 2},
    "sha256:" + hashlib.sha256(b"bob-token").hexdigest(): {"principal": "bob"},
    "carol-token": {"principal": "carol", "models": [MODEL]},
}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def auth_server(start_server: Callable[..., RunningServer], **overrides: object) -> RunningServer:
    return start_server(auth_tokens=json.dumps(TOKENS), **overrides)


def triton_request(x: np.ndarray, sequence_id: int, start: bool = False, end: bool = False
                   ) -> tpb.ModelInferRequest:
    request = tpb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[1, *x.shape])
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    request.parameters["sequence_id"].int64_param = sequence_id
    request.parameters["sequence_start"].bool_param = start
    request.parameters["sequence_end"].bool_param = end
    return request


def logits(response: tpb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], "<f4")


def test_every_rpc_needs_a_known_token_but_health_is_exempt(start_server: Callable[..., RunningServer]) -> None:
    server = auth_server(start_server)
    with grpc.insecure_channel(server.target) as channel:
        native, triton = npb_grpc.SeqServeStub(channel), tpb_grpc.GRPCInferenceServiceStub(channel)
        calls = {
            "ListModels": lambda **kw: native.ListModels(npb.ListModelsRequest(), **kw),
            "Stream": lambda **kw: list(native.Stream(iter([npb.StreamRequest(open=npb.Open(model=MODEL))]), **kw)),
            "ServerLive": lambda **kw: triton.ServerLive(tpb.ServerLiveRequest(), **kw),
            "ModelStreamInfer": lambda **kw: list(triton.ModelStreamInfer(iter([]), **kw)),
        }
        for name, call in calls.items():
            for metadata in ((), bearer("nope"), (("authorization", "Basic abc"),)):
                code, details = rpc_status(lambda call=call, metadata=metadata: call(metadata=metadata, timeout=10))
                assert code is grpc.StatusCode.UNAUTHENTICATED and "token" in details, (name, details)
            assert rpc_status(lambda call=call: call(metadata=bearer("bob-token"), timeout=10))[0] is grpc.StatusCode.OK
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_principals_see_and_use_only_their_models(start_server: Callable[..., RunningServer]) -> None:
    server = auth_server(start_server)
    with Client(server.target, security=Security(token="carol-token")) as carol:
        assert {m.name for m in carol.models()} == {MODEL}
        carol.infer(MODEL, np.zeros((1, 3, 12), np.float32))
        with pytest.raises(ServerError) as denied:
            carol.infer(OTHER, np.zeros((1, 3, 12), np.float32))
        assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED and "carol" in denied.value.message
    with grpc.insecure_channel(server.target) as channel:
        triton = tpb_grpc.GRPCInferenceServiceStub(channel)
        code, _ = rpc_status(lambda: triton.ModelMetadata(tpb.ModelMetadataRequest(name=OTHER),
                                                         metadata=bearer("carol-token"), timeout=10))
        assert code is grpc.StatusCode.PERMISSION_DENIED


def test_a_principal_holds_at_most_its_session_quota_over_both_fronts(start_server: Callable[..., RunningServer]
                                                                      ) -> None:
    server = auth_server(start_server)
    with Client(server.target, security=Security(token="alice-token")) as alice, grpc.insecure_channel(
        server.target
    ) as channel:
        triton = tpb_grpc.GRPCInferenceServiceStub(channel)
        first = alice.stream(MODEL).__enter__()
        triton.ModelInfer(triton_request(np.zeros((2, 12)), 5, start=True), metadata=bearer("alice-token"))
        with pytest.raises(ServerError) as full:
            alice.stream(MODEL).__enter__()
        assert full.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in full.value.message
        code, _ = rpc_status(lambda: triton.ModelInfer(triton_request(np.zeros((2, 12)), 6, start=True),
                                                      metadata=bearer("alice-token"), timeout=10))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        with Client(server.target, security=Security(token="bob-token")) as bob, bob.stream(MODEL):
            pass  # another principal is not affected
        first.__exit__(None, None, None)
        with alice.stream(MODEL):
            pass  # room again once one ended


def test_sequence_ids_are_namespaced_and_a_foreign_id_answers_like_an_unknown_one(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = auth_server(start_server)
    x = reference.sequence(MODEL, 6, np.random.default_rng(3))
    with grpc.insecure_channel(server.target) as channel:
        triton = tpb_grpc.GRPCInferenceServiceStub(channel)
        alice, bob = bearer("alice-token"), bearer("bob-token")
        triton.ModelInfer(triton_request(x[:3], 77, start=True), metadata=alice)

        def as_bob(sequence_id: int, chunk: np.ndarray, **flags: bool) -> tuple[grpc.StatusCode, str]:
            answer = rpc_status(lambda: triton.ModelInfer(triton_request(chunk, sequence_id, **flags), metadata=bob,
                                                         timeout=10))
            return answer[0], answer[1].replace(str(sequence_id), "ID")

        for chunk, flags in ((x[3:], {}), (x[3:], {"end": True}), (np.full((2, 12), np.nan), {})):
            assert as_bob(77, chunk, **flags) == as_bob(78, chunk, **flags)  # held by alice vs held by nobody
        assert as_bob(77, x[3:])[0] is grpc.StatusCode.NOT_FOUND
        assert as_bob(77, x[:1], start=True)[0] is grpc.StatusCode.OK  # bob's own sequence 77, not alice's
        rest = logits(triton.ModelInfer(triton_request(x[3:], 77, end=True), metadata=alice))
    np.testing.assert_allclose(rest, reference.run(MODEL, x)["logits"][3:].ravel(), atol=1e-4)


def test_without_auth_probing_an_id_gets_the_same_answer_live_or_not_and_peers_have_a_quota(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_sessions_per_client=1)
    with grpc.insecure_channel(server.target) as channel:
        triton = tpb_grpc.GRPCInferenceServiceStub(channel)
        triton.ModelInfer(triton_request(np.zeros((2, 12)), 41, start=True))
        nan = np.full((2, 12), np.nan)
        live = rpc_status(lambda: triton.ModelInfer(triton_request(nan, 41), timeout=10))
        unknown = rpc_status(lambda: triton.ModelInfer(triton_request(nan, 42), timeout=10))
        assert live == unknown and live[0] is grpc.StatusCode.INVALID_ARGUMENT
        with Client(server.target) as client, pytest.raises(ServerError) as full:
            client.stream(MODEL).__enter__()  # the same peer host already holds its one session
        assert full.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_an_evicted_sequence_leaves_the_table_at_once(start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    with grpc.insecure_channel(server.target) as channel:
        triton = tpb_grpc.GRPCInferenceServiceStub(channel)
        for sequence_id in (1, 2, 3):
            triton.ModelInfer(triton_request(np.zeros((2, 12)), sequence_id, start=True))
    sequences = server.serving.dataplane._sequences  # the table itself
    assert len(sequences) == 3

    async def evict() -> int:
        return server.registry.get(MODEL).evict_idle(time.monotonic() + 3600)

    assert server.call(evict()) == 3 and len(sequences) == 0


def test_the_sdk_and_cli_send_the_token(start_server: Callable[..., RunningServer],
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    server = auth_server(start_server)
    assert cli(["--target", server.target, "models"]) == 1
    monkeypatch.setenv("SEQSERVE_TOKEN", "bob-token")
    assert cli(["--target", server.target, "models"]) == 0 and MODEL in capsys.readouterr().out


def test_tokens_files_are_checked_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    clients = load_tokens(str(path), default_max_sessions=9)
    assert {c.key: c.max_sessions for c in clients.values()} == {"alice": 2, "bob": 9, "carol": 9}
    for bad in ("{}", '{"t": {"principal": ""}}', '{"t": {"principal": "x", "admin": true}}', str(tmp_path / "no")):
        with pytest.raises(ConfigurationError, match="--auth-tokens"):
            load_tokens(bad, 0)


@pytest.mark.parametrize(("peer", "host"), [("ipv4:10.0.0.1:5000", "10.0.0.1"), ("ipv6:[::1]:5000", "::1"),
                                            ("unix:/tmp/s", "unix:/tmp/s")])
def test_peer_hosts(peer: str, host: str) -> None:
    assert peer_host(peer) == host
