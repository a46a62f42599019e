"""Model control through the real server: tritonclient's load_model / unload_model, the native LoadModel /
UnloadModel / RepositoryIndex, forced unloads with a clear status on both fronts, a Triton sequence ended at the
drain timeout told the new version, and the poll picking up a model that `python -m modelrepo import` writes while
the server runs. Waits poll the index, bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from seqserve_client import Client, ServerError
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from tests.modelrepo.graphs import FEATURES, torch_layout_lstm
from tests.service.grpc.helpers import RunningServer
from tests.service.grpc.test_rollout import CHUNK, SAFETY_NET_S, triton_step, wait_index
from tests.service.versions import MODEL, copy_shipped, publish


@pytest.fixture
def server_on(start_server: Callable[..., RunningServer], tmp_path: Path) -> Callable[..., RunningServer]:
    def start(mode: str, **overrides: object) -> RunningServer:
        return start_server(models=tmp_path, model_control_mode=mode, repository_poll_secs=0.05, **overrides)
    return start


def chunk(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((CHUNK, 12)).astype(np.float32)


def test_tritonclient_load_and_unload_and_forced_unloads_end_sessions_clearly(
    server_on: Callable[..., RunningServer], tmp_path: Path
) -> None:
    copy_shipped(tmp_path, MODEL, 1)
    server = server_on("explicit")
    rng = np.random.default_rng(0)
    with triton.InferenceServerClient(server.target) as client, Client(server.target) as native:
        triton_step(client, 7, chunk(rng), True, False)
        stream = native.stream(MODEL)
        stream.send(chunk(rng))
        with pytest.raises(InferenceServerException, match="has 2 live sessions; unload it with force") as refused:
            client.unload_model(MODEL)
        assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert client.is_model_ready(MODEL)
        with grpc.insecure_channel(server.target) as channel:
            forced = pb_grpc.SeqServeStub(channel).UnloadModel(pb.UnloadModelRequest(model=MODEL, force=True))
        assert forced.sessions_ended == 2
        assert [(v.version, v.state, v.reason) for v in forced.versions] == [
            (1, pb.VERSION_STATE_UNAVAILABLE, "unloaded by request")]
        with pytest.raises(ServerError) as ended:
            stream.send(chunk(rng))
        assert ended.value.code == grpc.StatusCode.FAILED_PRECONDITION and "unloaded by request" in str(ended.value)
        with pytest.raises(InferenceServerException, match="unloaded by request") as told:
            triton_step(client, 7, chunk(rng), False, True)
        assert told.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert not client.is_model_ready(MODEL)
        publish(tmp_path, MODEL, 2, scale=0.7)  # explicit mode: nothing changes until a load is asked for
        assert [m.version for m in client.get_model_repository_index().models] == ["1"]
        client.load_model(MODEL)
        assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "2")
        index = {m.version: (m.state, m.reason) for m in client.get_model_repository_index().models}
        assert index == {"1": ("UNAVAILABLE", "not listed by its version policy (latest 1)"), "2": ("READY", "")}
        client.unload_model(MODEL)  # no live session: no force needed
        assert not client.is_model_ready(MODEL)
        for name in ("../x", "", "a\x00b", "x" * 5000, "."):  # never a path built from it, never INTERNAL
            with pytest.raises(InferenceServerException, match=r"no model .* in the repository") as refused:
                client.load_model(name)
            assert refused.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException, match="takes no parameters"):
            client.load_model(MODEL, config='{"max_batch_size": 1}')


def test_none_mode_refuses_model_control(server_on: Callable[..., RunningServer], tmp_path: Path) -> None:
    copy_shipped(tmp_path, MODEL, 1)
    server = server_on("none")
    with grpc.insecure_channel(server.target) as channel:
        stub = tpb_grpc.GRPCInferenceServiceStub(channel)
        for call in (lambda: stub.RepositoryModelLoad(tpb.RepositoryModelLoadRequest(model_name=MODEL)),
                     lambda: stub.RepositoryModelUnload(tpb.RepositoryModelUnloadRequest(model_name=MODEL))):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "model control is off" in refused.value.details()


def test_a_triton_sequence_ended_at_the_drain_timeout_is_told_the_new_version(
    server_on: Callable[..., RunningServer], tmp_path: Path
) -> None:
    copy_shipped(tmp_path, MODEL, 1)
    server = server_on("poll", version_drain_timeout=0.1)
    rng = np.random.default_rng(1)
    with triton.InferenceServerClient(server.target) as client:
        assert triton_step(client, 9, chunk(rng), True, False)[0] == "1"
        publish(tmp_path, MODEL, 2, scale=0.7)
        assert wait_index(server.target, 1, "UNAVAILABLE").startswith("unloaded")
        with pytest.raises(InferenceServerException, match=r"drain timeout.*continue on version 2") as told:
            triton_step(client, 9, chunk(rng), False, False)
        assert told.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert triton_step(client, 9, chunk(rng), True, True)[0] == "2"  # started again: on the new version


def test_poll_serves_a_model_imported_while_the_server_runs(
    server_on: Callable[..., RunningServer], tmp_path: Path, repo_root: Path
) -> None:
    copy_shipped(tmp_path, MODEL, 1)
    server = server_on("poll")
    graph = torch_layout_lstm(tmp_path.parent / f"{tmp_path.name}-mine.onnx")
    done = subprocess.run([sys.executable, "-m", "modelrepo", "import", str(graph), "--name", "imported",
                           "--models", str(tmp_path)], cwd=repo_root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert wait_index(server.target, 1, "READY", name="imported") == ""
    with Client(server.target) as client:
        outputs, _ = client.infer("imported", np.zeros((1, 5, FEATURES), np.float32))
    assert outputs["output"].shape[:2] == (1, 5)


def test_health_follows_models_coming_and_going(server_on: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = server_on("poll")  # an empty repository: not ready
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def wait_health(wanted: int) -> None:
            deadline = time.monotonic() + SAFETY_NET_S
            while health.Check(health_pb2.HealthCheckRequest()).status != wanted:
                assert time.monotonic() < deadline, f"health never became {wanted}"
                time.sleep(0.02)

        wait_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        copy_shipped(tmp_path, MODEL, 1)
        wait_health(health_pb2.HealthCheckResponse.SERVING)
        assert tpb_grpc.GRPCInferenceServiceStub(channel).ServerReady(tpb.ServerReadyRequest()).ready
        pb_grpc.SeqServeStub(channel).UnloadModel(pb.UnloadModelRequest(model=MODEL))
        wait_health(health_pb2.HealthCheckResponse.NOT_SERVING)


def test_cli_loads_unloads_and_lists(server_on: Callable[..., RunningServer], tmp_path: Path, repo_root: Path) -> None:
    copy_shipped(tmp_path, MODEL, 1)
    server = server_on("explicit")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.client", "--target", server.target, *args],
                              cwd=repo_root, capture_output=True, text=True, check=False)

    index = cli("index")
    assert index.returncode == 0, index.stderr
    assert index.stdout.split("\n")[1].split() == [MODEL, "1", "READY", "0", "(newest)"]
    with Client(server.target) as client:
        stream = client.stream(MODEL)
        refused = cli("unload", MODEL)
        assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
        assert "has 1 live sessions; unload it with force" in refused.stderr
        forced = cli("unload", MODEL, "--force")
        with pytest.raises(ServerError, match="FAILED_PRECONDITION: model 'vowels_gru' was unloaded by request"):
            stream.close()  # the server ended the stream with that status
    assert forced.returncode == 0, forced.stderr
    assert "UNAVAILABLE" in forced.stdout and "unloaded by request" in forced.stdout
    assert "1 live sessions ended" in forced.stdout
    assert cli("index", "--ready").stdout.strip().count("\n") == 0  # the header only
    publish(tmp_path, MODEL, 2, corrupt=True)
    failed = cli("load", MODEL)
    assert failed.returncode == 1 and "version 2 failed to load: cannot load the graph" in failed.stderr
    assert "version 1 goes on serving" in failed.stderr
    rows = [line.split()[:3] for line in cli("index").stdout.strip().split("\n")[1:]]
    assert rows == [[MODEL, "1", "READY"], [MODEL, "2", "UNAVAILABLE"]]


def test_with_authentication_only_a_control_grant_loads_and_unloads(
    server_on: Callable[..., RunningServer], tmp_path: Path
) -> None:
    copy_shipped(tmp_path, MODEL, 1)
    tokens = {"user-token": {"principal": "user"}, "ops-token": {"principal": "ops", "control": True},
              "narrow-token": {"principal": "narrow", "models": ["other"], "control": True}}
    server = server_on("explicit", auth_tokens=json.dumps(tokens))
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.SeqServeStub(channel)
        for token, code in (("user-token", grpc.StatusCode.PERMISSION_DENIED),
                            ("narrow-token", grpc.StatusCode.PERMISSION_DENIED)):
            for call in (lambda t=token: stub.UnloadModel(pb.UnloadModelRequest(model=MODEL), metadata=bearer(t)),
                         lambda t=token: stub.LoadModel(pb.LoadModelRequest(model=MODEL), metadata=bearer(t))):
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() == code, token
        index = stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=bearer("user-token"))
        assert [v.state for v in index.versions] == [pb.VERSION_STATE_READY]  # reading the index is for everyone
        stub.UnloadModel(pb.UnloadModelRequest(model=MODEL), metadata=bearer("ops-token"))
        stub.LoadModel(pb.LoadModelRequest(model=MODEL), metadata=bearer("ops-token"))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
