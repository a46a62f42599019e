"""Protobuf <-> numpy/internal conversion, in paired functions. Malformed tensors raise `InvalidInput`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, cast

import numpy as np

from modelrepo.manifest import Manifest
from service.engine.errors import InvalidInput
from service.grpc.decode import check_shape
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb

if TYPE_CHECKING:
    from service.engine.registry import ModelStatus

# Wire dtypes are little-endian whatever the host.
DTYPES: dict[pb.DataType, np.dtype] = {
    pb.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    pb.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    pb.DATA_TYPE_FLOAT64: np.dtype("<f8"),
    pb.DATA_TYPE_INT32: np.dtype("<i4"),
    pb.DATA_TYPE_INT64: np.dtype("<i8"),
}
DATA_TYPES: dict[str, pb.DataType] = {dtype.name: code for code, dtype in DTYPES.items()}
DYNAMIC = -1
_BY_DTYPE = {dtype: code for code, dtype in DTYPES.items()}  # per chunk: numpy computes dtype.name in Python


def to_data_type(dtype: np.dtype | str) -> pb.DataType:
    try:
        return _BY_DTYPE[dtype] if isinstance(dtype, np.dtype) else DATA_TYPES[np.dtype(dtype).name]
    except KeyError:
        raise InvalidInput(f"dtype {np.dtype(dtype).name} cannot be sent; use one of {sorted(DATA_TYPES)}") from None


def from_data_type(code: int) -> np.dtype:
    try:
        return DTYPES[cast(pb.DataType, code)]
    except KeyError:
        raise InvalidInput(f"unknown or unspecified tensor dtype {code}") from None


def array_to_tensor(array: np.ndarray) -> pb.Tensor:
    tensor = pb.Tensor()
    fill_tensor(tensor, array)
    return tensor


def fill_tensor(tensor: pb.Tensor, array: np.ndarray) -> None:
    """Write `array` into a (sub)message in place: no tensor built and then copied into its parent."""
    code = to_data_type(array.dtype)
    tensor.dtype = code
    tensor.shape[:] = array.shape
    tensor.data = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def tensor_to_array(tensor: pb.Tensor) -> np.ndarray:
    """A read-only array viewing the message's bytes, in native byte order."""
    dtype = from_data_type(tensor.dtype)
    shape = tuple(tensor.shape)
    expected = check_shape(shape, "tensor") * dtype.itemsize  # np.prod costs ~9 us per chunk
    data = tensor.data  # read once: every access returns a fresh copy of the bytes
    if len(data) != expected:
        raise InvalidInput(f"tensor of shape {list(shape)} and dtype {dtype.name} needs {expected} bytes, "
                           f"got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def arrays_to_tensors(arrays: Mapping[str, np.ndarray], into: MutableMapping[str, pb.Tensor]) -> None:
    """Fill a protobuf `map<string, Tensor>` field in place."""
    for name, array in arrays.items():
        fill_tensor(into[name], array)


def tensors_to_arrays(tensors: Mapping[str, pb.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensor_to_array(tensor) for name, tensor in tensors.items()}


def manifest_to_info(manifest: Manifest, info: pb.ModelInfo) -> None:
    """Fill the tensor description of a `ModelInfo` from a manifest."""
    info.streamable = manifest.streamable
    info.description = manifest.description
    info.cell = manifest.architecture.cell
    features = manifest.input
    info.input.CopyFrom(pb.TensorSpec(name=features.name, dtype=DATA_TYPES[features.dtype],
                                      shape=[DYNAMIC, DYNAMIC, features.features]))
    for out in manifest.outputs:
        spec = pb.TensorSpec(name=out.name, dtype=DATA_TYPES[out.dtype], shape=[DYNAMIC, DYNAMIC, out.size])
        info.outputs.add(tensor=spec, kind=out.kind, description=out.description, labels=out.labels or [])
    for pair in manifest.state:
        info.state.add(input=pair.input, output=pair.output, dtype=DATA_TYPES[pair.dtype], shape=pair.shape,
                       initial=pair.initial)


def model_infos(statuses: Iterable[ModelStatus]) -> list[pb.ModelInfo]:
    """One `ModelInfo` per model version found, each listing every version found under its name."""
    rows = sorted(statuses, key=lambda s: (s.name, s.version))
    versions: dict[str, list[int]] = {}
    for status in rows:
        versions.setdefault(status.name, []).append(status.version)
    infos = []
    for status in rows:
        info = pb.ModelInfo(name=status.name, version=status.version, versions=versions[status.name],
                            ready=status.ready, reason=status.reason, provider=status.provider or "")
        if status.manifest is not None:
            manifest_to_info(status.manifest, info)
        infos.append(info)
    return infos
