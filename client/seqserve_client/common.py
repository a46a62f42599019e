"""What both client flavours share: the error type and the message <-> numpy conversions."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np

from seqserve_client import codec
from seqserve_client.codec import Arrays
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:8001"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CODES = {code.value[0]: code for code in grpc.StatusCode}


class ServerError(Exception):
    """A request the server refused: `code` is a `grpc.StatusCode`; `seq` is set for in-stream errors."""

    def __init__(self, code: grpc.StatusCode, message: str, seq: int | None = None) -> None:
        where = f" (chunk seq {seq})" if seq is not None else ""
        super().__init__(f"{code.name}: {message}{where}")
        self.code = code
        self.message = message
        self.seq = seq

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> ServerError:
        return cls(error.code(), error.details() or "")  # type: ignore[attr-defined]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


def open_request(model: str, version: int) -> pb.StreamRequest:
    return pb.StreamRequest(seq=0, open=pb.Open(model=model, version=version))


Inputs = np.ndarray | Mapping[str, np.ndarray]  # one input's array, or every input by name (several inputs)


def chunk_request(seq: int, chunk: Inputs) -> pb.StreamRequest:
    """A chunk `(time, features)`; a model with several data inputs takes `{name: (time, features)}`."""
    if isinstance(chunk, Mapping):
        message = pb.Chunk()
        codec.arrays_to_tensors({k: np.asarray(v) for k, v in chunk.items()}, message.inputs)
        return pb.StreamRequest(seq=seq, chunk=message)
    return pb.StreamRequest(seq=seq, chunk=pb.Chunk(input=codec.array_to_tensor(np.asarray(chunk))))


def reset_request(seq: int) -> pb.StreamRequest:
    return pb.StreamRequest(seq=seq, reset=pb.Reset())


def end_request(seq: int) -> pb.StreamRequest:
    return pb.StreamRequest(seq=seq, end=pb.End())


def infer_request(model: str, x: Inputs, state: Mapping[str, np.ndarray] | None, version: int) -> pb.InferRequest:
    request = pb.InferRequest(model=model, version=version)
    if isinstance(x, Mapping):  # several data inputs, each (batch, time, features), by name
        codec.arrays_to_tensors({k: np.asarray(v) for k, v in x.items()}, request.inputs)
    else:
        request.input.CopyFrom(codec.array_to_tensor(np.asarray(x)))
    codec.arrays_to_tensors(state or {}, request.state)
    return request


def infer_result(response: pb.InferResponse) -> tuple[Arrays, Arrays]:
    return codec.tensors_to_arrays(response.outputs), codec.tensors_to_arrays(response.state)


def expect(response: pb.StreamResponse, kind: str) -> pb.StreamResponse:
    """The response if it is of `kind`; otherwise `ServerError` (the in-stream error, or a protocol surprise)."""
    if response.WhichOneof("kind") == kind:
        return response
    if response.WhichOneof("kind") == "error":
        code = CODES.get(response.error.code, grpc.StatusCode.UNKNOWN)
        raise ServerError(code, response.error.message, response.seq)
    raise ServerError(grpc.StatusCode.INTERNAL, f"expected {kind}, got {response.WhichOneof('kind')}", response.seq)


def chunk_outputs(response: pb.StreamResponse) -> Arrays:
    """A chunk's outputs `{name: (time, size)}`; `ServerError` for an in-stream error."""
    return codec.tensors_to_arrays(expect(response, "result").result.outputs)
