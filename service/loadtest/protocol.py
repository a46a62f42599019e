"""The wire side of the load client: `Stream` messages prebuilt as bytes, replies classified cheaply.

The client sends and receives raw bytes (no per-call serializer objects); a stream's chunk payload is built once
and only the sequence number changes between chunks, so client overhead stays small next to the server's.
"""

from __future__ import annotations

import numpy as np
from grpc import StatusCode

from seqserve_client.codec import array_to_tensor, arrays_to_tensors
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

STREAM_METHOD = "/seqserve.v1.SeqServe/Stream"
GET_MODEL_METHOD = "/seqserve.v1.SeqServe/GetModel"
CODE_NAMES = {code.value[0]: code.name for code in StatusCode}


def code_name(number: int) -> str:
    return CODE_NAMES.get(number, f"CODE_{number}")


def open_request(model: str, version: int | None) -> bytes:
    return pb.StreamRequest(seq=0, open=pb.Open(model=model, version=version or 0)).SerializeToString()


def end_request(seq: int) -> bytes:
    return pb.StreamRequest(seq=seq, end=pb.End()).SerializeToString()


class ChunkRequests:
    """Serialised chunk requests carrying the same (time, features) float32 payload with increasing `seq`."""

    def __init__(self, x: np.ndarray) -> None:
        tensor = array_to_tensor(np.asarray(x, dtype=np.float32))
        self._message = pb.StreamRequest(chunk=pb.Chunk(input=tensor))

    def build(self, seq: int) -> bytes:
        self._message.seq = seq
        return self._message.SerializeToString()


def reply_error(data: bytes) -> tuple[int, str | None]:
    """(seq, None) for an answered request, (seq, status code name) for an in-stream error."""
    reply = pb.StreamResponse.FromString(data)
    if reply.WhichOneof("kind") == "error":
        return reply.seq, code_name(reply.error.code)
    return reply.seq, None


def get_model_request(model: str, version: int | None) -> bytes:
    return pb.GetModelRequest(name=model, version=version or 0).SerializeToString()


def features_of(get_model_reply: bytes) -> int:
    """The sequence input's feature size from a `GetModel` reply (the last axis of `(batch, time, features)`)."""
    info = pb.GetModelResponse.FromString(get_model_reply).model
    return int(info.input.shape[-1])


def opened_reply(model: str) -> bytes:
    """A reply of the size the real server sends to `open` (for the echo server)."""
    return pb.StreamResponse(
        seq=0, opened=pb.Opened(model=model, version=1, session_id=1, provider="CPUExecutionProvider")
    ).SerializeToString()


def result_reply(seq: int, outputs: dict[str, np.ndarray]) -> bytes:
    """A chunk result of the real size: outputs {name: (time, size) float32} (for the echo server)."""
    reply = pb.StreamResponse(seq=seq, result=pb.ChunkResult())
    arrays_to_tensors({name: np.asarray(a, dtype=np.float32) for name, a in outputs.items()}, reply.result.outputs)
    return reply.SerializeToString()
