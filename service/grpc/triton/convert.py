"""KServe v2 / Triton inference messages <-> the data plane's terms, in paired functions.

Malformed requests raise `InvalidInput`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from modelrepo.manifest import Manifest
from service.dataplane import InferRequest
from service.engine.errors import InvalidInput, clip
from service.engine.sequences import SequenceFlags, SequenceId
from service.grpc.decode import check_shape
from service.grpc.generated.inference import grpc_service_pb2 as pb

# Protocol datatype names <-> wire dtypes (little-endian whatever the host).
# Inputs travel as FP32 or the model's own input type; state outputs (e.g. a step counter) in any of these.
DATATYPES: dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "FP64": np.dtype("<f8"),
                                  "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8")}
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


@functools.cache
def _accepted(model_dtype: str) -> tuple[list[str], np.dtype]:
    """The datatypes an input of `model_dtype` may travel as, and the numpy dtype it is served in (per model)."""
    return sorted({ALWAYS_ACCEPTED, datatype_name(model_dtype)}), np.dtype(model_dtype)


def _input_array(request: pb.ModelInferRequest, manifest: Manifest) -> np.ndarray:
    expected = manifest.input.name
    inputs = request.inputs
    if len(inputs) != 1 or inputs[0].name != expected:
        names = clip([tensor.name for tensor in inputs])
        raise InvalidInput(f"model {manifest.name!r} takes exactly one input {expected!r}, got {names}")
    raw = request.raw_input_contents
    if raw and len(raw) != 1:
        raise InvalidInput(f"{len(raw)} raw_input_contents entries for 1 input")
    tensor = inputs[0]
    accepted, served = _accepted(manifest.input.dtype)
    datatype = tensor.datatype
    if datatype not in accepted:
        given = clip(datatype) if datatype else "(none)"
        raise InvalidInput(f"input {expected!r}: datatype {given} not accepted; use {accepted}")
    dtype = DATATYPES[datatype]
    shape = tuple(tensor.shape)
    count = check_shape(shape, f"input {expected!r}")
    if len(shape) != 3:
        raise InvalidInput(f"input {expected!r}: shape {list(shape)} is not (batch, time, {manifest.input.features})")
    if raw:
        data = raw[0]  # read once: every access returns a fresh copy of the bytes
        if len(data) != count * dtype.itemsize:
            raise InvalidInput(f"input {expected!r}: shape {list(shape)} {datatype} needs "
                               f"{count * dtype.itemsize} bytes, got {len(data)}")
        flat = np.frombuffer(data, dtype=dtype)
    else:
        if datatype != "FP32":
            raise InvalidInput(f"input {expected!r}: {datatype} travels only in raw_input_contents")
        flat = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
        if flat.size != count:
            raise InvalidInput(f"input {expected!r}: shape {list(shape)} needs {count} values, got {flat.size}")
    return flat.reshape(shape).astype(served, copy=False)  # FP32 -> an FP16 model's type


_ID_KINDS = ("int64_param", "uint64_param", "string_param")
MAX_SEQUENCE_ID_CHARS = 256  # an id is a key held while its sequence is open: no megabyte keys


def _sequence_flags(request: pb.ModelInferRequest) -> SequenceFlags | None:
    sequence_id: SequenceId = 0
    start = end = False
    for name, param in request.parameters.items():  # one pass over the map instead of a lookup per name
        if name == SEQUENCE_ID:
            kind = param.WhichOneof("parameter_choice")
            if kind not in _ID_KINDS:
                raise InvalidInput(f"parameter {SEQUENCE_ID} must be an integer or a string, got {kind}")
            sequence_id = getattr(param, kind)
            if isinstance(sequence_id, str) and len(sequence_id) > MAX_SEQUENCE_ID_CHARS:
                raise InvalidInput(f"{SEQUENCE_ID} string of {len(sequence_id)} characters; at most "
                                   f"{MAX_SEQUENCE_ID_CHARS}")
        elif name in (SEQUENCE_START, SEQUENCE_END):
            if param.WhichOneof("parameter_choice") != "bool_param":
                raise InvalidInput(f"parameter {name} must be a bool")
            if name == SEQUENCE_START:
                start = param.bool_param
            else:
                end = param.bool_param
    if sequence_id in (0, ""):  # Triton: 0 and "" mean "no sequence"
        if start or end:
            raise InvalidInput(f"{SEQUENCE_START}/{SEQUENCE_END} need a non-zero {SEQUENCE_ID}")
        return None
    return SequenceFlags(sequence_id, start=start, end=end)


def _requested_outputs(request: pb.ModelInferRequest, manifest: Manifest) -> tuple[str, ...]:
    """Every output when none is named; else the named ones, state outputs ("hn", "cn") included."""
    if not request.outputs:
        return tuple(out.name for out in manifest.outputs)
    known = [out.name for out in manifest.outputs] + [pair.output for pair in manifest.state]
    names = tuple(out.name for out in request.outputs)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(f"model {manifest.name!r} has no output {clip(unknown)}; it has {known}")
    return names
