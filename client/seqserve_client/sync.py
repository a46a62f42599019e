"""The blocking client: `Client` (models, infer) and `Stream` (one session, chunk by chunk)."""

from __future__ import annotations

import queue
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from types import TracebackType

import grpc
import numpy as np

from seqserve_client import common
from seqserve_client.common import Arrays, ServerError
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from seqserve_client.resume import DEFAULT_RETRY, Journal, RetryPolicy
from seqserve_client.security import PLAIN, Security


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

    def infer(self, model: str, x: common.Inputs, state: Mapping[str, np.ndarray] | None = None,
              version: int = 0) -> tuple[Arrays, Arrays]:
        """Whole sequences `x` (batch, time, features) -> (outputs, final state), both keyed by tensor name."""
        try:
            return common.infer_result(self._stub.Infer(common.infer_request(model, x, state, version)))
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def load_model(self, model: str) -> list[pb.VersionStatus]:
        """Load (or reload) `model` from the server's repository; its versions after."""
        try:
            return list(self._stub.LoadModel(pb.LoadModelRequest(model=model)).versions)
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def unload_model(self, model: str, force: bool = False) -> tuple[int, list[pb.VersionStatus]]:
        """Unload every version of `model` (refused with live sessions unless `force`): (sessions ended, versions)."""
        try:
            answer = self._stub.UnloadModel(pb.UnloadModelRequest(model=model, force=force))
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None
        return answer.sessions_ended, list(answer.versions)

    def repository_index(self, ready_only: bool = False) -> list[pb.VersionStatus]:
        """Every model version in the server's repository with its state, sessions and reason."""
        try:
            return list(self._stub.RepositoryIndex(pb.RepositoryIndexRequest(ready_only=ready_only)).versions)
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def stream(self, model: str, version: int = 0, retry: RetryPolicy = DEFAULT_RETRY) -> Stream:
        """Open a session on `model` (newest version unless given); use it as a context manager. With a shared
        session store on the server, it resumes by itself after UNAVAILABLE or a broken connection (`retry`)."""
        stream = Stream(self._stub, model, version, retry)
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

    def __init__(self, stub: pb_grpc.SeqServeStub, model: str, version: int,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._stub = stub
        self._retry = retry
        self._journal = Journal(model, version)
        self._replay: deque[pb.StreamResponse] = deque()  # answers recovered by a resume, not yet received
        self._resuming = False
        self._connect(common.open_request(model, version))
        self._seq = 0
        self.info: pb.Opened = common.expect(self._next(), "opened").opened
        self._journal.opened(self.info)
        self.resumes = 0  # how often this stream resumed

    def submit(self, chunk: common.Inputs) -> int:
        """Send a chunk (time, features) without waiting; returns its sequence number."""
        self._seq += 1
        self._send(common.chunk_request(self._seq, chunk))
        return self._seq

    def receive(self) -> Arrays:
        """The outputs of the oldest chunk not yet received; `ServerError` if the server rejected it."""
        return common.chunk_outputs(self._next())

    def send(self, chunk: common.Inputs) -> Arrays:
        self.submit(chunk)
        return self.receive()

    def reset(self) -> None:
        """Back to the model's initial state (answers to earlier chunks must have been received)."""
        self._seq += 1
        self._send(common.reset_request(self._seq))
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

    def _connect(self, first: pb.StreamRequest) -> None:
        self._requests: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
        self._requests.put(first)
        self._call = self._stub.Stream(self._outgoing(self._requests))

    def _send(self, request: pb.StreamRequest) -> None:
        self._journal.sent(request)
        self._requests.put(request)

    @staticmethod
    def _outgoing(requests: queue.SimpleQueue[pb.StreamRequest | None]) -> Iterator[pb.StreamRequest]:
        while (request := requests.get()) is not None:
            yield request

    def _next(self) -> pb.StreamResponse:
        """The next answer: recovered by a resume, or read (resuming after a resumable failure, as `retry` allows)."""
        attempt = 0
        while True:
            if self._replay:
                return self._replay.popleft()
            try:
                response = next(self._call)
            except StopIteration:
                raise ServerError(grpc.StatusCode.UNAVAILABLE, "the server closed the stream") from None
            except grpc.RpcError as exc:
                self._requests.put(None)
                error = ServerError.from_rpc(exc)
                attempt += 1
                if not self._journal.can_resume(error) or attempt > self._retry.attempts:
                    raise error from None
                time.sleep(self._retry.delay(attempt))  # a retry's backoff: the failed replica may take a moment
                self._connect(self._journal.resume_request())
                self._resuming = True
                continue
            if self._resuming:
                self._resuming = False
                replies, resend = self._journal.reconcile(common.expect(response, "opened").opened)
                self.resumes += 1
                self._replay.extend(replies)
                for request in resend:
                    self._requests.put(request)
                continue
            self._journal.answered(response)
            return response

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None or (isinstance(exc, ServerError) and exc.seq is not None):
            self.close()
        else:
            self.cancel()
