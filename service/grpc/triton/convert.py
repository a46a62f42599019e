"""KServe v2 / Triton inference messages <-> the data plane's terms, in paired functions.

Malformed requests raise `InvalidInput`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from modelrepo.manifest import Manifest
from service.dataplane import InferRequest
from service.engine.errors import InvalidInput
from service.engine.sequences import SequenceFlags, SequenceId
from service.grpc.generated.inference import grpc_service_pb2 as pb

# Protocol datatype names <-> wire dtypes (little-endian whatever the host).
DATATYPES: dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2")}
DATATYPE_NAMES: dict[str, str] = {dtype.name: name for name, dtype in DATATYPES.items()}  # "float32" -> "FP32"
ALWAYS_ACCEPTED = "FP32"
SEQUENCE_ID, SEQUENCE_START, SEQUENCE_END = "sequence_id", "sequence_start", "sequence_end"
_BY_DTYPE = {np.dtype(name): protocol for name, protocol in DATATYPE_NAMES.items()}  # per answer: no dtype.name
_VERSIONS = {v: str(v) for v in range(1, 100)}


def datatype_name(dtype: str) -> str:
    """The protocol name ("FP32") of a manifest dtype ("float32")."""
    return DATATYPE_NAMES[np.dtype(dtype).name]


def request_to_infer(request: pb.ModelInferRequest, manifest: Manifest) -> InferRequest:
    x = _input_array(request, manifest)
    return InferRequest(x, _sequence_flags(request), _requested_outputs(request, manifest))


def fill_response(
    response: pb.ModelInferResponse, request: pb.ModelInferRequest, manifest: Manifest, arrays: Mapping[str, np.ndarray]
) -> None:
    """Fill `response` in place with `arrays` (in the order given) as raw little-endian bytes."""
    response.model_name = manifest.name
    response.model_version = _VERSIONS.get(manifest.version) or str(manifest.version)
    response.id = request.id
    for name, array in arrays.items():
        datatype = _BY_DTYPE[array.dtype]
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes())


def _input_array(request: pb.ModelInferRequest, manifest: Manifest) -> np.ndarray:
    expected = manifest.input.name
    names = [tensor.name for tensor in request.inputs]
    if names != [expected]:
        raise InvalidInput(f"model {manifest.name!r} takes exactly one input {expected!r}, got {names}")
    if request.raw_input_contents and len(request.raw_input_contents) != 1:
        raise InvalidInput(f"{len(request.raw_input_contents)} raw_input_contents entries for 1 input")
    tensor = request.inputs[0]
    accepted = sorted({ALWAYS_ACCEPTED, datatype_name(manifest.input.dtype)})
    if tensor.datatype not in accepted:
        raise InvalidInput(f"input {expected!r}: datatype {tensor.datatype or '(none)'} not accepted; use {accepted}")
    dtype = DATATYPES[tensor.datatype]
    shape = tuple(tensor.shape)
    if len(shape) != 3 or any(d < 0 for d in shape):
        raise InvalidInput(f"input {expected!r}: shape {list(shape)} is not (batch, time, {manifest.input.features})")
    count = math.prod(shape)
    if request.raw_input_contents:
        data = request.raw_input_contents[0]
        if len(data) != count * dtype.itemsize:
            raise InvalidInput(f"input {expected!r}: shape {list(shape)} {tensor.datatype} needs "
                               f"{count * dtype.itemsize} bytes, got {len(data)}")
        flat = np.frombuffer(data, dtype=dtype)
    else:
        if tensor.datatype != "FP32":
            raise InvalidInput(f"input {expected!r}: {tensor.datatype} travels only in raw_input_contents")
        flat = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
        if flat.size != count:
            raise InvalidInput(f"input {expected!r}: shape {list(shape)} needs {count} values, got {flat.size}")
    return flat.reshape(shape).astype(np.dtype(manifest.input.dtype), copy=False)  # FP32 -> an FP16 model's type


def _sequence_flags(request: pb.ModelInferRequest) -> SequenceFlags | None:
    params = request.parameters
    start, end = _bool_param(params, SEQUENCE_START), _bool_param(params, SEQUENCE_END)
    sequence_id: SequenceId = 0
    if SEQUENCE_ID in params:
        param = params[SEQUENCE_ID]
        kind = param.WhichOneof("parameter_choice")
        if kind not in ("int64_param", "uint64_param", "string_param"):
            raise InvalidInput(f"parameter {SEQUENCE_ID} must be an integer or a string, got {kind}")
        sequence_id = getattr(param, kind)
    if sequence_id in (0, ""):  # Triton: 0 and "" mean "no sequence"
        if start or end:
            raise InvalidInput(f"{SEQUENCE_START}/{SEQUENCE_END} need a non-zero {SEQUENCE_ID}")
        return None
    return SequenceFlags(sequence_id, start=start, end=end)


def _bool_param(params: Mapping[str, pb.InferParameter], name: str) -> bool:
    if name not in params:
        return False
    param = params[name]
    if param.WhichOneof("parameter_choice") != "bool_param":
        raise InvalidInput(f"parameter {name} must be a bool")
    return param.bool_param


def _requested_outputs(request: pb.ModelInferRequest, manifest: Manifest) -> tuple[str, ...]:
    """Every output when none is named; else the named ones, state outputs ("hn", "cn") included."""
    if not request.outputs:
        return tuple(out.name for out in manifest.outputs)
    known = [out.name for out in manifest.outputs] + [pair.output for pair in manifest.state]
    names = tuple(out.name for out in request.outputs)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(f"model {manifest.name!r} has no output {unknown}; it has {known}")
    return names


def parse_version(text: str) -> int | None:
    """A request's model version: "" is the version served by default."""
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {text!r}")
    return int(text)
