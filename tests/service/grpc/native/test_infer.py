"""Unary `Infer`, `ListModels` and `GetModel` through the real server, with the SDK."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelrepo import latest_versions
from seqserve_client import Client, ServerError

TOLERANCE = 1e-4


@pytest.fixture
def client(start_server: Callable):
    with Client(start_server().target) as client:
        yield client


def test_infer_runs_whole_batches_of_every_model(client: Client, manifests, reference) -> None:
    rng = np.random.default_rng(6)
    for name in manifests:
        x = np.stack([reference.sequence(name, 17, rng) for _ in range(3)])
        outputs, state = client.infer(name, x)
        for row in range(3):
            want = reference.run(name, x[row])
            for out in want:
                np.testing.assert_allclose(outputs[out][row], want[out], rtol=0, atol=TOLERANCE)
        assert set(state) == {p.input for p in manifests[name].state}


def test_explicit_state_continues_a_sequence_across_calls(client: Client, streamable: list[str], reference) -> None:
    rng = np.random.default_rng(7)
    for name in streamable:
        x = reference.sequence(name, 30, rng)
        first, state = client.infer(name, x[None, :12])
        second, _ = client.infer(name, x[None, 12:], state=state)
        want = reference.run(name, x)
        for out in want:
            got = np.concatenate([first[out][0], second[out][0]])
            np.testing.assert_allclose(got, want[out], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    ("model", "make_x", "state", "code"),
    [
        ("nope", lambda: np.zeros((1, 2, 12), np.float32), None, grpc.StatusCode.NOT_FOUND),
        ("vowels_lstm", lambda: np.zeros((2, 12), np.float32), None, grpc.StatusCode.INVALID_ARGUMENT),
        ("vowels_lstm", lambda: np.zeros((1, 2, 12), np.int32), None, grpc.StatusCode.INVALID_ARGUMENT),
        ("vowels_lstm", lambda: np.zeros((1, 2, 12), np.float32), {"h0": np.zeros((1, 1, 3), np.float32)},
         grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["unknown model", "wrong rank", "wrong dtype", "bad state"],
)
def test_infer_rejects_bad_requests(client: Client, model: str, make_x: Callable, state, code) -> None:
    with pytest.raises(ServerError) as caught:
        client.infer(model, make_x(), state=state)
    assert caught.value.code == code and caught.value.seq is None


def test_models_describe_tensors_labels_provider_and_status(client: Client, manifests) -> None:
    listed = {m.name: m for m in client.models()}
    assert set(listed) == set(manifests)
    for name, manifest in manifests.items():
        info = client.model(name)
        assert info == listed[name]
        assert (info.version, info.ready, info.reason) == (manifest.version, True, "")
        assert info.provider == "CPUExecutionProvider"
        assert info.streamable == manifest.streamable
        assert list(info.input.shape) == [-1, -1, manifest.input.features]
        assert [o.tensor.name for o in info.outputs] == [o.name for o in manifest.outputs]
        assert [list(o.labels) for o in info.outputs] == [o.labels or [] for o in manifest.outputs]
        assert [(s.input, s.output, list(s.shape)) for s in info.state] == [
            (p.input, p.output, p.shape) for p in manifest.state
        ]
    with pytest.raises(ServerError) as caught:
        client.model("vowels_lstm", version=42)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_a_model_failing_validation_is_listed_with_its_reason_and_not_served(
    start_server: Callable, models_root: Path, tmp_path: Path
) -> None:
    source = latest_versions(models_root)["vowels_gru"].path
    shutil.copytree(source, tmp_path / "vowels_gru" / source.name)
    broken = tmp_path / "broken" / source.name
    shutil.copytree(source, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["name"], manifest["onnx"]["sha256"] = "broken", "0" * 64
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with Client(start_server(models=tmp_path).target) as client:
        listed = {m.name: m for m in client.models()}
        assert listed["vowels_gru"].ready
        assert not listed["broken"].ready and "sha256" in listed["broken"].reason
        with pytest.raises(ServerError) as caught:
            client.stream("broken")
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        with client.stream("vowels_gru") as stream:
            assert stream.send(np.zeros((3, 12), np.float32))["logits"].shape[0] == 3
