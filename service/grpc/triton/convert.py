"""KServe v2 / Triton gRPC inference messages <-> the data plane's terms, in paired functions.

The request's tensors, parameters and output names become the data plane's KServe terms (`kserve.prepare` checks
them against the model, once for every KServe front); the answer's arrays go back as raw little-endian bytes
through the one codec. Malformed requests raise `InvalidInput`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelrepo.manifest import Manifest
from seqserve_client import codec
from service.dataplane import kserve
from service.dataplane.kserve import InferRequest, Input, Parameter
from service.engine.errors import InvalidInput
from service.engine.sequences import SequenceFlags
from service.grpc.generated.inference import grpc_service_pb2 as pb

_VERSIONS = {v: str(v) for v in range(1, 100)}
_VALUES = {"bool_param", "int64_param", "uint64_param", "string_param", "double_param"}


def datatype_name(dtype: str) -> str:
    """The protocol name ("FP32") of a manifest dtype ("float32")."""
    return codec.BY_NAME[np.dtype(dtype).name].kserve


class TritonRequest:
    """A `ModelInferRequest` as the data plane's `Request`: decoded inside `DataPlane.infer`, so that whatever is
    wrong with it is counted under the model it names."""

    __slots__ = ("message",)

    def __init__(self, message: pb.ModelInferRequest) -> None:
        self.message = message

    def sequence(self) -> SequenceFlags | None:
        return kserve.sequence_flags(_parameters(self.message))

    def prepare(self, manifest: Manifest, sequence: SequenceFlags | None) -> InferRequest:
        outputs = kserve.requested_outputs(manifest, [out.name for out in self.message.outputs])
        return InferRequest(kserve.input_arrays(manifest, _inputs(self.message)), sequence, outputs)


def request_to_infer(request: pb.ModelInferRequest, manifest: Manifest) -> InferRequest:
    triton = TritonRequest(request)
    return triton.prepare(manifest, triton.sequence())


def fill_response(
    response: pb.ModelInferResponse, request: pb.ModelInferRequest, manifest: Manifest, arrays: Mapping[str, np.ndarray]
) -> None:
    """Fill `response` in place with `arrays` (in the order given) as raw little-endian bytes."""
    response.model_name = manifest.name
    response.model_version = _VERSIONS.get(manifest.version) or str(manifest.version)
    response.id = request.id
    for name, array in arrays.items():
        dtype = codec.of_numpy(array.dtype)
        response.outputs.add(name=name, datatype=dtype.kserve, shape=array.shape)
        response.raw_output_contents.append(codec.to_bytes(array, dtype))


def _inputs(request: pb.ModelInferRequest) -> list[Input]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents entries for {len(request.inputs)} input(s)")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        if raw:
            inputs.append(Input(tensor.name, tensor.datatype, tensor.shape, raw=raw[i]))  # read once: a copy each
            continue
        if tensor.datatype != kserve.ALWAYS_ACCEPTED and tensor.datatype in codec.BY_KSERVE:
            raise InvalidInput(f"input {codec.clip(tensor.name)}: {tensor.datatype} travels only in raw_input_contents")
        inputs.append(Input(tensor.name, tensor.datatype, tensor.shape, values=tensor.contents.fp32_contents))
    return inputs


def _parameters(request: pb.ModelInferRequest) -> dict[str, Parameter]:
    values: dict[str, Parameter] = {}
    for name, param in request.parameters.items():
        kind = param.WhichOneof("parameter_choice")
        values[name] = getattr(param, kind) if kind in _VALUES else None
    return values
