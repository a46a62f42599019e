"""The wire side of the load client: `Stream` messages prebuilt as bytes, replies classified cheaply.

The client sends and receives raw bytes (no per-call serializer objects); a stream's chunk payload is built once
and only the sequence number changes between chunks, so client overhead stays small next to the server's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from grpc import StatusCode

from seqserve_client.codec import BY_NATIVE, array_to_tensor, arrays_to_tensors
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


class InputSpec(NamedTuple):
    """One data input of the model under load (from `GetModel`): random values, or token ids below `vocab`."""

    name: str
    dtype: str  # numpy name
    features: int
    vocab: int = 0


def random_chunk(inputs: tuple[InputSpec, ...], steps: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One chunk `(steps, features)` of every input: normal values, or ids in [0, vocab) for a token input."""
    return {i.name: (rng.integers(0, i.vocab, (steps, i.features)) if i.vocab
                     else rng.standard_normal((steps, i.features))).astype(i.dtype) for i in inputs}


class ChunkRequests:
    """Serialised chunk requests carrying the same (time, features) payload with increasing `seq`: a float32
    array, or `{name: array}` of every input (token ids, several inputs) as `random_chunk` makes it."""

    def __init__(self, x: np.ndarray | dict[str, np.ndarray]) -> None:
        if isinstance(x, dict) and len(x) > 1:
            self._message = pb.StreamRequest(chunk=pb.Chunk())
            arrays_to_tensors(x, self._message.chunk.inputs)
            return
        one = next(iter(x.values())) if isinstance(x, dict) else np.asarray(x, dtype=np.float32)
        self._message = pb.StreamRequest(chunk=pb.Chunk(input=array_to_tensor(one)))

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


def inputs_of(get_model_reply: bytes) -> tuple[InputSpec, ...]:
    """Every data input of the model from a `GetModel` reply, `input` first."""
    info = pb.GetModelResponse.FromString(get_model_reply).model
    return tuple(InputSpec(t.name, BY_NATIVE[t.dtype].name, int(t.shape[-1]), t.vocab_size)
                 for t in [info.input, *info.extra_inputs])


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
