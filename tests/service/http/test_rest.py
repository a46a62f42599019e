"""KServe v2 REST through `tritonclient.http`, unchanged, against the real server: health, metadata, readiness,
binary and JSON tensors, Triton sequences that alternate REST and gRPC requests (equal to the whole-sequence run),
the repository index, and the status codes of bad requests (docs/web.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import urllib3

from tests.service.grpc.helpers import Reference, RunningServer
from tests.service.versions import MODEL as CONTROLLED
from tests.service.versions import copy_shipped

MODEL = "vowels_lstm"
TOKENS = {"alice-token": {"principal": "alice", "models": [MODEL]}}


def http_target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.serving.http_port}"


def post(server: RunningServer, path: str, body: bytes, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, object]]:
    reply = urllib3.request("POST", f"http://{http_target(server)}{path}", body=body, headers=headers or {})
    return reply.status, json.loads(reply.data) if reply.data else {}


def test_tritonclient_http_serves_health_metadata_and_infer_in_binary_and_json(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = start_server()
    client = triton_http.InferenceServerClient(http_target(server))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert not client.is_model_ready("no_such_model")
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, -1, 12]}]
    assert meta["parameters"]["streamable"] is True
    x = reference.sequence(MODEL, 17, np.random.default_rng(1))
    for binary in (True, False):
        tensor = triton_http.InferInput("input", [1, *x.shape], "FP32")
        tensor.set_data_from_numpy(x[None], binary_data=binary)
        outputs = [triton_http.InferRequestedOutput("logits", binary_data=binary)]
        result = client.infer(MODEL, [tensor], outputs=outputs)
        np.testing.assert_allclose(result.as_numpy("logits")[0], reference.run(MODEL, x)["logits"], atol=1e-5)
    assert server.metric("seqserve_requests_total", model=MODEL, code="OK") == 2
    index = client.get_model_repository_index()
    assert {"name": MODEL, "version": "4", "state": "READY", "reason": ""} in index


def test_a_sequence_alternating_rest_and_grpc_equals_the_whole_sequence(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = start_server()
    rest = triton_http.InferenceServerClient(http_target(server))
    grpc_client = triton_grpc.InferenceServerClient(server.target)
    x = reference.sequence(MODEL, 40, np.random.default_rng(2))
    chunks = Reference.chunks(x, np.random.default_rng(3))
    pieces = []
    for i, chunk in enumerate(chunks):
        module = (triton_http, triton_grpc)[i % 2]
        client = (rest, grpc_client)[i % 2]
        tensor = module.InferInput("input", [1, *chunk.shape], "FP32")
        tensor.set_data_from_numpy(chunk[None])
        result = client.infer(MODEL, [tensor], sequence_id="mixed", sequence_start=i == 0,
                              sequence_end=i == len(chunks) - 1)
        pieces.append(result.as_numpy("logits")[0])
    np.testing.assert_allclose(np.concatenate(pieces), reference.run(MODEL, x)["logits"], atol=1e-5)
    grpc_client.close()


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 400, "JSON object"),
    (json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2, 11], "data": [0.0] * 22}]}).encode(),
     400, "12 features"),
    (json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2, 12], "data": [0.0] * 5}]}).encode(),
     400, "needs 24 values"),
    (json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 12], "data": [0.0] * 12}],
                 "parameters": {"sequence_id": 99}}).encode(), 404, "sequence"),
    (json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 12],
                             "parameters": {"binary_data_size": 48}}]}).encode(), 400, "binary"),
])
def test_bad_requests_get_their_kserve_status_and_a_json_error(
    start_server: Callable[..., RunningServer], body: bytes, status: int, says: str
) -> None:
    server = start_server()
    code, answer = post(server, f"/v2/models/{MODEL}/infer", body)
    assert code == status and says in str(answer["error"])
    assert server.metric("seqserve_requests_total", model=MODEL, code="OK") == 0


def test_unknown_models_oversized_bodies_and_tokens(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(auth_tokens=json.dumps(TOKENS), max_message_bytes=4096)
    good = {"Authorization": "Bearer alice-token"}
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 12], "data": [0.0] * 12}]})
    assert post(server, f"/v2/models/{MODEL}/infer", body.encode())[0] == 401
    assert post(server, f"/v2/models/{MODEL}/infer", body.encode(), {"Authorization": "Bearer nope"})[0] == 401
    assert post(server, "/v2/models/vowels_gru/infer", body.encode(), good)[0] == 403
    assert post(server, "/v2/models/no_such_model/infer", body.encode(), good)[0] == 403  # not a model oracle
    assert post(server, f"/v2/models/{MODEL}/infer", body.encode(), good)[0] == 200
    assert post(server, f"/v2/models/{MODEL}/infer", b" " * 5000, good)[0] == 413
    live = urllib3.request("GET", f"http://{http_target(server)}/v2/health/ready")  # health is exempt
    assert live.status == 200


def test_versions_and_model_paths(start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    base = f"http://{http_target(server)}/v2/models"
    assert urllib3.request("GET", f"{base}/{MODEL}/versions/4").status == 200
    assert urllib3.request("GET", f"{base}/{MODEL}/versions/9").status == 404
    bad = urllib3.request("GET", f"{base}/{MODEL}/versions/x1")
    assert bad.status == 400 and "positive integer" in json.loads(bad.data)["error"]
    assert urllib3.request("GET", f"{base}/nope").status == 404


def test_tritonclient_http_loads_and_unloads_models(start_server: Callable[..., RunningServer],
                                                    tmp_path: Path) -> None:
    copy_shipped(tmp_path, CONTROLLED, 1)
    server = start_server(models=tmp_path, model_control_mode="explicit")
    client = triton_http.InferenceServerClient(http_target(server))
    assert client.is_model_ready(CONTROLLED)
    client.unload_model(CONTROLLED)
    assert not client.is_model_ready(CONTROLLED)
    client.load_model(CONTROLLED)
    assert client.is_model_ready(CONTROLLED)
    status, answer = post(server, f"/v2/repository/models/{CONTROLLED}/load",
                          json.dumps({"parameters": {"config": "{}"}}).encode())
    assert status == 400 and "repository" in str(answer["error"])
    assert post(server, "/v2/repository/models/no_such_model/load", b"")[0] == 404
