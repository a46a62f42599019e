"""The Triton/KServe v2 protocol through the real `tritonclient.grpc` against a real server: health, metadata,
configuration, statistics, repository index, and whole-sequence (stateless) inference equal to onnxruntime."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import np_to_triton_dtype

from modelrepo import Manifest
from service.engine.errors import InvalidInput
from service.engine.sequences import SequenceFlags
from service.grpc.generated.inference import grpc_service_pb2 as ours
from service.grpc.triton.convert import request_to_infer

if TYPE_CHECKING:
    from tests.service.grpc.helpers import Reference, RunningServer

TOLERANCE = 1e-4


def fp32_input(x: np.ndarray, name: str = "input") -> triton.InferInput:
    tensor = triton.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.astype(np.float32))
    return tensor


def test_server_live_ready_and_metadata(start_server: Callable[..., RunningServer]) -> None:
    client = triton.InferenceServerClient(start_server().target)
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "seqserve"
    assert {"sequence", "sequence(string_id)", "statistics"} <= set(metadata.extensions)


def test_every_model_is_described(
    start_server: Callable[..., RunningServer], manifests: dict[str, Manifest]
) -> None:
    server = start_server(max_batch_size=8, session_idle_timeout=30.0)
    client = triton.InferenceServerClient(server.target)
    index = client.get_model_repository_index()
    assert {(m.name, m.version, m.state) for m in index.models} == {
        (name, str(m.version), "READY") for name, m in manifests.items()
    }
    for name, manifest in manifests.items():
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, str(manifest.version))
        meta = client.get_model_metadata(name)
        assert meta.versions == [str(manifest.version)]
        (tensor,) = meta.inputs
        features = manifest.input.features
        datatype = np_to_triton_dtype(np.dtype(manifest.input.dtype))  # FP32, or INT64 for token ids
        assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("input", datatype, [-1, -1, features])
        expected = [(o.name, [-1, -1, o.size]) for o in manifest.outputs]
        expected += [(p.output, [-1, *p.shape]) for p in manifest.state]
        assert [(t.name, list(t.shape)) for t in meta.outputs] == expected
        assert all(t.datatype == "FP32" for t in meta.outputs)

        config = client.get_model_config(name).config
        assert (config.name, config.max_batch_size) == (name, 8)
        assert [(i.name, list(i.dims)) for i in config.input] == [("input", [-1, manifest.input.features])]
        assert [o.name for o in config.output] == [name for name, _ in expected]
        assert config.parameters["intra_op_thread_count"].string_value == "1"  # the test server sets 1 thread
        assert "intra-op thread" in config.parameters["tuning"].string_value
        if manifest.streamable:
            batching = config.sequence_batching
            assert batching.max_sequence_idle_microseconds == 30_000_000
            assert [(s.input_name, s.output_name, list(s.dims)) for s in batching.state] == [
                (p.input, p.output, p.shape) for p in manifest.state
            ]
            assert all(s.initial_state[0].zero_data for s in batching.state)
        else:
            assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert not client.is_model_ready("no_such_model")


def test_statistics_count_real_work(
    start_server: Callable[..., RunningServer], reference: Reference, manifests: dict[str, Manifest]
) -> None:
    client = triton.InferenceServerClient(start_server().target)
    rng = np.random.default_rng(1)
    x = np.stack([reference.sequence("vowels_gru", 9, rng) for _ in range(3)])
    client.infer("vowels_gru", [fp32_input(x)])
    (stats,) = client.get_inference_statistics("vowels_gru").model_stats
    assert stats.inference_stats.success.count == 1
    assert stats.inference_stats.fail.count == 0
    assert stats.inference_count == 3
    assert stats.execution_count >= 1
    assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 3
    assert stats.inference_stats.compute_infer.ns > 0
    assert stats.last_inference > 0
    every = client.get_inference_statistics().model_stats
    assert sorted(s.name for s in every) == sorted(manifests)


@pytest.mark.parametrize("batch", [1, 3])
def test_whole_sequences_equal_onnxruntime(
    start_server: Callable[..., RunningServer], reference: Reference, manifests: dict[str, Manifest], batch: int
) -> None:
    client = triton.InferenceServerClient(start_server().target)
    rng = np.random.default_rng(batch)
    for name, manifest in manifests.items():
        x = np.stack([reference.sequence(name, 17, rng) for _ in range(batch)])
        tensor = fp32_input(x) if x.dtype.kind == "f" else triton.InferInput("input", list(x.shape), "INT64")
        if x.dtype.kind != "f":  # token ids travel as their own type
            tensor.set_data_from_numpy(x)
        result = client.infer(name, [tensor])
        for output in manifest.outputs:
            got = result.as_numpy(output.name)
            assert got.shape == (batch, 17, output.size)
            for row in range(batch):
                want = reference.run(name, x[row])[output.name]
                np.testing.assert_allclose(got[row], want, atol=TOLERANCE, rtol=0)


def test_typed_contents_and_requested_state_outputs(
    start_server: Callable[..., RunningServer], reference: Reference, manifests: dict[str, Manifest]
) -> None:
    """`contents.fp32_contents` instead of raw bytes; a requested state output comes back under its name."""
    server = start_server()
    x = reference.sequence("vowels_lstm", 11, np.random.default_rng(2))
    request = service_pb2.ModelInferRequest(model_name="vowels_lstm", id="typed")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, *x.shape])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    request.outputs.add(name="hn")
    request.outputs.add(name="logits")
    with grpc.insecure_channel(server.target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert response.id == "typed"
    assert [o.name for o in response.outputs] == ["hn", "logits"]
    logits = np.frombuffer(response.raw_output_contents[1], "<f4").reshape(response.outputs[1].shape)
    np.testing.assert_allclose(logits[0], reference.run("vowels_lstm", x)["logits"], atol=TOLERANCE, rtol=0)
    (hn,) = [p for p in manifests["vowels_lstm"].state if p.output == "hn"]
    assert list(response.outputs[0].shape) == [1, *hn.shape]


@pytest.mark.parametrize(
    ("model", "tensor", "code"),
    [
        ("no_such_model", fp32_input(np.zeros((1, 3, 12))), "NOT_FOUND"),
        ("vowels_lstm", fp32_input(np.zeros((1, 3, 5))), "INVALID_ARGUMENT"),
        ("vowels_lstm", fp32_input(np.zeros((3, 12))), "INVALID_ARGUMENT"),
        ("vowels_lstm", fp32_input(np.full((1, 3, 12), np.nan)), "INVALID_ARGUMENT"),
    ],
)
def test_unary_errors_carry_the_design_status_codes(
    start_server: Callable[..., RunningServer], model: str, tensor: triton.InferInput, code: str
) -> None:
    client = triton.InferenceServerClient(start_server().target)
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer(model, [tensor])
    assert caught.value.status() == f"StatusCode.{code}"


def test_fp16_is_refused_by_an_fp32_model(start_server: Callable[..., RunningServer]) -> None:
    client = triton.InferenceServerClient(start_server().target)
    tensor = triton.InferInput("input", [1, 3, 12], "FP16")
    tensor.set_data_from_numpy(np.zeros((1, 3, 12), np.float16))
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer("vowels_lstm", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "FP32" in caught.value.message()


def test_fp16_raw_input_is_accepted_where_the_model_takes_it(manifests: dict[str, Manifest]) -> None:
    """No shipped model takes FP16, so the conversion is checked on a manifest that says it does."""
    lstm = manifests["vowels_lstm"]
    fp16 = lstm.model_copy(update={"input": lstm.input.model_copy(update={"dtype": "float16"})})
    x = np.arange(2 * 3 * 12, dtype=np.float16).reshape(2, 3, 12)
    request = service_pb2.ModelInferRequest(model_name="vowels_lstm", raw_input_contents=[x.astype("<f2").tobytes()])
    request.inputs.add(name="input", datatype="FP16", shape=x.shape)
    request.parameters["sequence_id"].string_param = "s"
    request.parameters["sequence_start"].bool_param = True
    call = request_to_infer(ours.ModelInferRequest.FromString(request.SerializeToString()), fp16)
    assert call.x.dtype == np.float16
    np.testing.assert_array_equal(call.x, x)
    assert call.sequence == SequenceFlags("s", start=True)
    with pytest.raises(InvalidInput, match="FP32"):
        request_to_infer(ours.ModelInferRequest.FromString(request.SerializeToString()), lstm)
