"""Property-based tests of every converter from client messages (hypothesis): whatever a message holds, the
converter returns a well-formed value or raises `InvalidInput` (the codec: `TensorError`), never another exception,
and never allocates for a shape the bytes do not back. Plus the safe deserializer, strict versions and clipped
client text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqserve_client import codec as native
from seqserve_client.codec import MAX_DIMS, TensorError, check_shape
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from service.dataplane.kserve import parse_version
from service.engine.errors import CLIP_CHARS, InvalidInput, clip
from service.grpc.decode import Undecodable, safe_deserializer
from service.grpc.errors import MAX_MESSAGE_CHARS, to_status
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.triton import convert as triton
from tests.service.helpers import MANIFESTS

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EXTREME = st.sampled_from([0, 1, 2, 3, 13, 2**31, 2**32, 2**62, 2**63 - 1, -1, -(2**63)])
DIM = st.one_of(st.integers(0, 8), EXTREME, INT64)
SHAPES = st.lists(DIM, max_size=70)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(dtype=st.integers(-3, 20), shape=SHAPES, data=st.binary(max_size=256))
def test_native_tensor_to_array_returns_a_matching_array_or_invalid_input(dtype: int, shape: list[int],
                                                                          data: bytes) -> None:
    tensor = npb.Tensor(dtype=dtype, shape=shape, data=data)  # type: ignore[arg-type]
    try:
        array = native.tensor_to_array(tensor)
    except TensorError:
        return
    assert list(array.shape) == shape and array.nbytes == len(data)


@FAST
@given(shape=SHAPES, data=st.binary(max_size=256), datatype=st.sampled_from(["FP32", "FP16", "FP64", "", "x"]),
       fp32=st.lists(st.floats(width=32), max_size=64), name=st.sampled_from(["input", "x", ""]),
       raw_count=st.integers(0, 2), sequence=st.one_of(st.none(), INT64, st.text(max_size=8), st.booleans()),
       start=st.one_of(st.none(), st.booleans(), st.integers(0, 3)), outputs=st.lists(st.text(max_size=4), max_size=3),
       model=st.sampled_from(sorted(MANIFESTS)))
def test_triton_request_to_infer_returns_a_request_or_invalid_input(
    shape: list[int], data: bytes, datatype: str, fp32: list[float], name: str, raw_count: int,
    sequence: object, start: object, outputs: list[str], model: str,
) -> None:
    manifest = MANIFESTS[model]
    request = tpb.ModelInferRequest(model_name=model)
    request.inputs.add(name=manifest.input.name if name == "input" else name, datatype=datatype, shape=shape)
    request.inputs[0].contents.fp32_contents.extend(fp32)
    request.raw_input_contents.extend([data] * raw_count)
    for value, key in ((sequence, "sequence_id"), (start, "sequence_start")):
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        elif isinstance(value, int):
            request.parameters[key].int64_param = value
        elif isinstance(value, str):
            request.parameters[key].string_param = value
    for out in outputs:
        request.outputs.add(name=out)
    try:
        converted = triton.request_to_infer(request, manifest)
    except InvalidInput:
        return
    assert converted.x.shape == tuple(shape) and converted.x.dtype == np.dtype(manifest.input.dtype)


@FAST
@given(st.text(max_size=20))
def test_versions_are_ascii_digits_or_invalid_input(text: str) -> None:
    try:
        version = parse_version(text)
    except InvalidInput as exc:
        assert len(str(exc)) < 200
        return
    assert version is None if text == "" else (text.isascii() and text.isdigit() and version == int(text) > 0)


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "-1", "0", "+1", " 1", "1" * 30, "1.0"])
def test_unicode_digits_signs_and_huge_versions_are_rejected(text: str) -> None:
    with pytest.raises(InvalidInput, match="positive integer"):
        parse_version(text)


@pytest.mark.parametrize("shape", [[1] * (MAX_DIMS + 1), [1] * 65, [0, 2**62, 13], [2**31, 2**31, 0],
                                   [2**63 - 1, 2, 13], [1, -1, 13]])
def test_hostile_shapes_are_rejected_before_any_allocation(shape: list[int]) -> None:
    with pytest.raises(TensorError):
        check_shape(shape, "input")


@FAST
@given(st.binary(max_size=512))
def test_the_safe_deserializer_never_raises(data: bytes) -> None:
    for message in (npb.StreamRequest, npb.InferRequest, tpb.ModelInferRequest, tpb.ModelReadyRequest):
        decode = safe_deserializer(message.FromString, "/m")
        assert decode is not None
        result = decode(data)
        assert isinstance(result, message | Undecodable)


def test_client_text_in_error_messages_is_clipped() -> None:
    assert len(clip("x" * 1_000_000)) < CLIP_CHARS + 30
    code, message = to_status(InvalidInput("y" * 1_000_000))
    assert code.name == "INVALID_ARGUMENT" and len(message) <= MAX_MESSAGE_CHARS + 3
