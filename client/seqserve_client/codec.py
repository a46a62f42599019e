"""The one tensor codec: every dtype with each protocol's name, bytes <-> numpy, shape checks, one `Arrays` type.

Shared by the SDK, the load generator and every front of the server (native gRPC, Triton gRPC, KServe REST,
WebSocket), so a dtype, a byte count or a shape limit means the same everywhere. Wire tensors are C-order,
little-endian whatever the host; decoded arrays are read-only views in native byte order. Whatever a client sends,
decoding returns a well-formed array or raises `TensorError` (never another exception), and it checks a shape
before allocating anything from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

Arrays = dict[str, np.ndarray]  # tensor name -> array, everywhere (SDK, fronts, data plane, engine)
MAX_DIMS = 8  # no tensor of ours has more than 3; numpy's own limit is 64
MAX_ELEMENTS = 2**31  # the product of the non-zero dimensions: far above what fits a message (16 MiB by default)


class TensorError(ValueError):
    """A tensor that cannot be decoded or encoded: wrong dtype, shape or byte count (the server answers
    INVALID_ARGUMENT / 400). The message is safe to show to the client."""


@dataclass(frozen=True)
class DType:
    """One wire dtype and its names: numpy's ("float32"), the native API's enum, KServe v2 / Triton's ("FP32")."""

    numpy: np.dtype  # little-endian
    native: int  # seqserve.v1.DataType
    kserve: str

    @property
    def name(self) -> str:
        return self.numpy.name


DTYPES = (
    DType(np.dtype("<f4"), pb.DATA_TYPE_FLOAT32, "FP32"),
    DType(np.dtype("<f2"), pb.DATA_TYPE_FLOAT16, "FP16"),
    DType(np.dtype("<f8"), pb.DATA_TYPE_FLOAT64, "FP64"),
    DType(np.dtype("<i4"), pb.DATA_TYPE_INT32, "INT32"),
    DType(np.dtype("<i8"), pb.DATA_TYPE_INT64, "INT64"),
)
BY_NAME = {d.name: d for d in DTYPES}  # "float32" (manifests)
BY_NATIVE = {d.native: d for d in DTYPES}
BY_KSERVE = {d.kserve: d for d in DTYPES}
_BY_NUMPY = {d.numpy: d for d in DTYPES}  # per tensor: numpy computes dtype.name in Python; np.dtype hashes fast
_BY_NUMPY.update({d.numpy.newbyteorder("="): d for d in DTYPES})


def of_numpy(dtype: np.dtype | str) -> DType:
    """The wire dtype of an array's (or a manifest's) dtype."""
    found = _BY_NUMPY.get(dtype) if isinstance(dtype, np.dtype) else BY_NAME.get(np.dtype(dtype).name)
    if found is None:
        raise TensorError(f"dtype {np.dtype(dtype).name} cannot be sent; use one of {sorted(BY_NAME)}")
    return found


def of_native(code: int) -> DType:
    found = BY_NATIVE.get(code)
    if found is None:
        raise TensorError(f"unknown or unspecified tensor dtype {code}")
    return found


def of_kserve(name: str, what: str = "tensor") -> DType:
    found = BY_KSERVE.get(name)
    if found is None:
        given = clip(name) if name else "(none)"
        raise TensorError(f"{what}: datatype {given} is not one of {sorted(BY_KSERVE)}")
    return found


def clip(value: object, limit: int = 64) -> str:
    """`repr(value)` cut to `limit` characters: client text echoed in an error message stays bounded."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def check_shape(shape: Sequence[int], what: str = "tensor") -> int:
    """The element count of a tensor of `shape`, once its rank and size are known to be sane (`TensorError`)."""
    if len(shape) > MAX_DIMS:
        raise TensorError(f"{what}: {len(shape)} dimensions; at most {MAX_DIMS}")
    if shape and min(shape) < 0:
        raise TensorError(f"{what}: shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if count > MAX_ELEMENTS or (not count and math.prod([d for d in shape if d]) > MAX_ELEMENTS):
        raise TensorError(f"{what}: shape {clip(list(shape))} is too large")  # zero-times-huge too: numpy cannot
    return count


def from_bytes(data: bytes | bytearray | memoryview, dtype: DType, shape: Sequence[int], what: str = "tensor"
               ) -> np.ndarray:
    """A read-only array of `shape` viewing `data` (raw little-endian, C order), in native byte order."""
    shape = tuple(shape)
    expected = check_shape(shape, what) * dtype.numpy.itemsize
    if len(data) != expected:
        raise TensorError(f"{what} of shape {list(shape)} and dtype {dtype.name} needs {expected} bytes, "
                          f"got {len(data)}")
    return np.frombuffer(data, dtype=dtype.numpy).reshape(shape).astype(dtype.numpy.newbyteorder("="), copy=False)


def to_bytes(array: np.ndarray, dtype: DType | None = None) -> bytes:
    """The raw little-endian bytes of `array` (C order), as `dtype` (default: the array's own)."""
    wire = (dtype or of_numpy(array.dtype)).numpy
    return np.ascontiguousarray(array, dtype=wire).tobytes()


def from_values(values: object, dtype: DType, shape: Sequence[int], what: str = "tensor") -> np.ndarray:
    """An array of `shape` from numbers (a flat or nested list, as KServe's JSON tensors carry them)."""
    count = check_shape(shape, what)
    try:
        with np.errstate(over="raise", invalid="raise"):  # 1e308 as FP32: an error, not a warning and an inf
            flat = np.asarray(values, dtype=dtype.numpy.newbyteorder("=")).reshape(-1)
    except (TypeError, ValueError, OverflowError, FloatingPointError, RecursionError):
        raise TensorError(f"{what}: data must be numbers of datatype {dtype.kserve} (within its range)") from None
    if flat.size != count:
        raise TensorError(f"{what}: shape {list(shape)} needs {count} values, got {flat.size}")
    return flat.reshape(tuple(shape))


# -- the native API's Tensor message ------------------------------------------------------------------------------
def fill_tensor(tensor: pb.Tensor, array: np.ndarray) -> None:
    """Write `array` into a (sub)message in place: no tensor built and then copied into its parent."""
    dtype = of_numpy(array.dtype)
    tensor.dtype = dtype.native  # type: ignore[assignment]
    tensor.shape[:] = array.shape
    tensor.data = np.ascontiguousarray(array, dtype=dtype.numpy).tobytes()


def array_to_tensor(array: np.ndarray) -> pb.Tensor:
    tensor = pb.Tensor()
    fill_tensor(tensor, np.asarray(array))
    return tensor


def tensor_to_array(tensor: pb.Tensor, what: str = "tensor") -> np.ndarray:
    """A read-only array viewing the message's bytes (read once: every access returns a fresh copy)."""
    return from_bytes(tensor.data, of_native(tensor.dtype), tensor.shape, what)


def arrays_to_tensors(arrays: Mapping[str, np.ndarray], into: MutableMapping[str, pb.Tensor]) -> None:
    """Fill a protobuf `map<string, Tensor>` field in place."""
    for name, array in arrays.items():
        fill_tensor(into[name], array)


def tensors_to_arrays(tensors: Mapping[str, pb.Tensor]) -> Arrays:
    return {name: tensor_to_array(tensor, f"tensor {clip(name)}") for name, tensor in tensors.items()}
