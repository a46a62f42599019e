"""The adversarial findings of issue 12, one live call each: hostile shapes, versions and names get
INVALID_ARGUMENT (or NOT_FOUND) with a short message, and a native stream survives a hostile chunk."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest

from seqserve_client.codec import array_to_tensor
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as npb_grpc
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from tests.service.grpc.helpers import RunningServer, rpc_status

MODEL = "vowels_lstm"


def test_hostile_tensors_versions_and_names_get_invalid_argument_or_not_found(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    with grpc.insecure_channel(server.target) as channel:
        triton, native = tpb_grpc.GRPCInferenceServiceStub(channel), npb_grpc.SeqServeStub(channel)
        overflow = tpb.ModelInferRequest(model_name=MODEL)
        overflow.inputs.add(name="input", datatype="FP32", shape=[2**62, 2**62, 12])
        overflow.raw_input_contents.append(b"")
        zero_huge = npb.InferRequest(model=MODEL, input=npb.Tensor(dtype=npb.DATA_TYPE_FLOAT32,
                                                                   shape=[0, 2**62, 2**62]))
        deep = npb.InferRequest(model=MODEL, input=npb.Tensor(dtype=npb.DATA_TYPE_FLOAT32, shape=[1] * 65,
                                                              data=b"\0" * 4))
        calls = {
            "int64-overflowing Triton shape": lambda: triton.ModelInfer(overflow, timeout=10),
            "zero-times-huge shape": lambda: native.Infer(zero_huge, timeout=10),
            "65 dims": lambda: native.Infer(deep, timeout=10),
            "superscript version": lambda: triton.ModelReady(tpb.ModelReadyRequest(name=MODEL, version="\u00b2"),
                                                             timeout=10),
            "Arabic-Indic digit version": lambda: triton.ModelMetadata(
                tpb.ModelMetadataRequest(name=MODEL, version="\u0661"), timeout=10),
        }
        for finding, call in calls.items():
            code, details = rpc_status(call)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (finding, code, details)
            assert "Error" not in details and len(details) < 300, (finding, details)
        code, details = rpc_status(lambda: triton.ModelMetadata(tpb.ModelMetadataRequest(name="n" * 1_000_000),
                                                                      timeout=10))
        assert code is grpc.StatusCode.NOT_FOUND and len(details) < 200


@pytest.mark.parametrize(("shape", "data"), [([1] * 65, b"\0" * 4), ([0, 2**62, 2**62], b"")])
def test_a_hostile_chunk_is_an_in_stream_error_and_the_stream_goes_on(
    start_server: Callable[..., RunningServer], shape: list[int], data: bytes
) -> None:
    server = start_server()
    good = npb.StreamRequest(seq=2, chunk=npb.Chunk(input=array_to_tensor(np.zeros((2, 12), np.float32))))
    tensor = npb.Tensor(dtype=npb.DATA_TYPE_FLOAT32, shape=shape, data=data)
    bad = npb.StreamRequest(seq=1, chunk=npb.Chunk(input=tensor))
    with grpc.insecure_channel(server.target) as channel:
        requests = [npb.StreamRequest(open=npb.Open(model=MODEL)), bad, good, npb.StreamRequest(seq=3, end=npb.End())]
        answers = list(npb_grpc.SeqServeStub(channel).Stream(iter(requests), timeout=30))
    assert [a.WhichOneof("kind") for a in answers] == ["opened", "error", "result"]
    assert answers[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
