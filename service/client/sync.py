"""The blocking client: `Client` (models, infer) and `Stream` (one session, chunk by chunk)."""

from __future__ import annotations

import queue
import weakref
from collections.abc import Iterator, Mapping
from types import TracebackType

import grpc
import numpy as np

from service.client import common
from service.client.common import Arrays, ServerError
from service.client.security import PLAIN, Security
from service.grpc.generated.seqserve.v1 import seqserve_pb2 as pb
from service.grpc.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc


class Client:
    def __init__(self, target: str = common.DEFAULT_TARGET,
                 max_message_bytes: int = common.DEFAULT_MAX_MESSAGE_BYTES, security: Security = PLAIN) -> None:
        self._channel = security.channel(target, common.channel_options(max_message_bytes))
        self._stub = pb_grpc.SeqServeStub(self._channel)
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()

    def models(self) -> list[pb.ModelInfo]:
        """Every model version the server found, served or not."""
        try:
            return list(self._stub.ListModels(pb.ListModelsRequest()).models)
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def model(self, name: str, version: int = 0) -> pb.ModelInfo:
        try:
            return self._stub.GetModel(pb.GetModelRequest(name=name, version=version)).model
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def infer(self, model: str, x: np.ndarray, state: Mapping[str, np.ndarray] | None = None,
              version: int = 0) -> tuple[Arrays, Arrays]:
        """Whole sequences `x` (batch, time, features) -> (outputs, final state), both keyed by tensor name."""
        try:
            return common.infer_result(self._stub.Infer(common.infer_request(model, x, state, version)))
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def stream(self, model: str, version: int = 0) -> Stream:
        """Open a session on `model` (newest version unless given); use it as a context manager."""
        stream = Stream(self._stub, model, version)
        self._streams.add(stream)
        return stream

    def close(self) -> None:
        """Close the channel; streams still open are cancelled."""
        for stream in list(self._streams):
            stream.cancel()
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """One session. `send` is lock-step; `submit` + `receive` pipeline several chunks in flight."""

    def __init__(self, stub: pb_grpc.SeqServeStub, model: str, version: int) -> None:
        self._requests: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
        self._requests.put(common.open_request(model, version))
        self._call = stub.Stream(self._outgoing())
        self._seq = 0
        self.info: pb.Opened = common.expect(self._next(), "opened").opened

    def submit(self, chunk: np.ndarray) -> int:
        """Send a chunk (time, features) without waiting; returns its sequence number."""
        self._seq += 1
        self._requests.put(common.chunk_request(self._seq, chunk))
        return self._seq

    def receive(self) -> Arrays:
        """The outputs of the oldest chunk not yet received; `ServerError` if the server rejected it."""
        return common.chunk_outputs(self._next())

    def send(self, chunk: np.ndarray) -> Arrays:
        self.submit(chunk)
        return self.receive()

    def reset(self) -> None:
        """Back to the model's initial state (answers to earlier chunks must have been received)."""
        self._seq += 1
        self._requests.put(common.reset_request(self._seq))
        common.expect(self._next(), "reset")

    def close(self) -> None:
        """End the session and wait for the server to close the stream."""
        self._requests.put(common.end_request(self._seq + 1))
        self._requests.put(None)
        try:
            for _ in self._call:
                pass
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise ServerError.from_rpc(exc) from None

    def cancel(self) -> None:
        """Abandon the stream at once (the server frees the session)."""
        self._requests.put(None)
        self._call.cancel()

    def _outgoing(self) -> Iterator[pb.StreamRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _next(self) -> pb.StreamResponse:
        try:
            return next(self._call)
        except StopIteration:
            raise ServerError(grpc.StatusCode.UNAVAILABLE, "the server closed the stream") from None
        except grpc.RpcError as exc:
            self._requests.put(None)
            raise ServerError.from_rpc(exc) from None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None or (isinstance(exc, ServerError) and exc.seq is not None):
            self.close()
        else:
            self.cancel()
