"""The asyncio client: `AsyncClient` and `AsyncStream`, the same methods as the blocking ones, awaitable."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from types import TracebackType

import grpc
import numpy as np

from seqserve_client import common
from seqserve_client.common import Arrays, ServerError
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from seqserve_client.resume import DEFAULT_RETRY, Journal, RetryPolicy
from seqserve_client.security import PLAIN, Security


class AsyncClient:
    def __init__(self, target: str = common.DEFAULT_TARGET,
                 max_message_bytes: int = common.DEFAULT_MAX_MESSAGE_BYTES, security: Security = PLAIN) -> None:
        self._channel = security.aio_channel(target, common.channel_options(max_message_bytes))
        self._stub = pb_grpc.SeqServeStub(self._channel)

    async def models(self) -> list[pb.ModelInfo]:
        try:
            return list((await self._stub.ListModels(pb.ListModelsRequest())).models)
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    async def model(self, name: str, version: int = 0) -> pb.ModelInfo:
        try:
            return (await self._stub.GetModel(pb.GetModelRequest(name=name, version=version))).model
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    async def infer(self, model: str, x: common.Inputs, state: Mapping[str, np.ndarray] | None = None,
                    version: int = 0) -> tuple[Arrays, Arrays]:
        try:
            return common.infer_result(await self._stub.Infer(common.infer_request(model, x, state, version)))
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def stream(self, model: str, version: int = 0, retry: RetryPolicy = DEFAULT_RETRY) -> AsyncStream:
        """`async with client.stream(model) as s:` opens the session on entry and ends it on exit; resumes by itself
        after UNAVAILABLE or a broken connection when the server has a shared session store (`retry`)."""
        return AsyncStream(self._stub, model, version, retry)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncStream:
    def __init__(self, stub: pb_grpc.SeqServeStub, model: str, version: int,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._stub = stub
        self._call = stub.Stream()
        self._open = common.open_request(model, version)
        self._seq = 0
        self._retry = retry
        self._journal = Journal(model, version)
        self._replay: deque[pb.StreamResponse] = deque()  # answers recovered by a resume, not yet received
        self._write_failed = False
        self.info = pb.Opened()
        self.resumes = 0  # how often this stream resumed

    async def open(self) -> AsyncStream:
        await self._write(self._open)
        self.info = common.expect(await self._read(), "opened").opened
        self._journal.opened(self.info)
        return self

    async def submit(self, chunk: common.Inputs) -> int:
        self._seq += 1
        await self._write(common.chunk_request(self._seq, chunk))
        return self._seq

    async def receive(self) -> Arrays:
        return common.chunk_outputs(await self._read())

    async def send(self, chunk: common.Inputs) -> Arrays:
        await self.submit(chunk)
        return await self.receive()

    async def reset(self) -> None:
        self._seq += 1
        await self._write(common.reset_request(self._seq))
        common.expect(await self._read(), "reset")

    async def close(self) -> None:
        """End the session and wait for the server to close the stream."""
        await self._write(common.end_request(self._seq + 1))
        await self._call.done_writing()
        try:
            while await self._call.read() is not grpc.aio.EOF:
                pass
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    def cancel(self) -> None:
        self._call.cancel()

    async def _write(self, request: pb.StreamRequest) -> None:
        self._journal.sent(request)
        if self._journal.token and self._call.done():
            return  # ended: the next read says how, and resumes it if it may (a write now would only say INTERNAL)
        try:
            await self._call.write(request)
        except grpc.RpcError as exc:
            error = ServerError.from_rpc(exc)
        except (grpc.aio.UsageError, asyncio.InvalidStateError):  # the stream has already ended: say how
            error = await self._ended()
        else:
            return
        if not self._journal.token:
            raise error from None
        # journaled: the next read resumes the stream, sending this request again. A write racing the server's end
        # of the call leaves INTERNAL ("Internal error from Core") as the call's status instead of the server's, so
        # a failed write makes the stream resumable whatever the status (resuming is always safe: the store's
        # compare-and-set and positions apply every chunk once)
        self._write_failed = True

    async def _read(self) -> pb.StreamResponse:
        """The next answer: recovered by a resume, or read (resuming after a resumable failure, as `retry` allows)."""
        attempt = 0
        while not self._replay:
            try:
                response = await self._call.read()
                error = await self._ended() if response is grpc.aio.EOF else None
            except grpc.RpcError as exc:
                error = ServerError.from_rpc(exc)
            if error is None:
                self._journal.answered(response)
                return response
            attempt += 1
            resumable = self._journal.can_resume(error) or (self._write_failed and bool(self._journal.token))
            if not resumable or attempt > self._retry.attempts:
                raise error
            await asyncio.sleep(self._retry.delay(attempt))  # a retry's backoff: the failed replica may go first
            try:
                await self._resume()
            except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                self._write_failed = True
                continue  # not yet: the next read says why, and the loop tries again
        return self._replay.popleft()

    async def _resume(self) -> None:
        self._call.cancel()
        self._call = self._stub.Stream()
        self._write_failed = False
        await self._call.write(self._journal.resume_request())
        response = await self._call.read()
        if response is grpc.aio.EOF:
            return  # the read after it reports the status
        replies, resend = self._journal.reconcile(common.expect(response, "opened").opened)
        self.resumes += 1
        self._replay.extend(replies)
        for request in resend:
            await self._call.write(request)

    async def _ended(self) -> ServerError:
        code = await self._call.code()
        return ServerError(code, await self._call.details() or "the server closed the stream")

    async def __aenter__(self) -> AsyncStream:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is None or (isinstance(exc, ServerError) and exc.seq is not None):
            await self.close()
        else:
            self.cancel()
