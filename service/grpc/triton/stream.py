"""One Triton `ModelStreamInfer` RPC: many requests in flight, each answered once, in order within a sequence.

The reader starts each request as it arrives (which takes its place in its sequence, see `Sequences.submit`)
and answers it from a done-callback of its task: the tasks of one sequence complete in request order, so
their answers are queued in request order. The writer yields the answers. A failed request is answered with
its `error_message` and the stream goes on. At most `window` requests are read but not yet answered
(backpressure: a client that stops reading stops being read). When the client goes away, the requests already
started still run to the end, unanswered: sequences outlive streams, as in Triton. A shutdown that cuts the
stream stops the reader only: every request already started is still answered before the stream ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial

from service.grpc.errors import to_status
from service.grpc.generated.inference import grpc_service_pb2 as pb

Answer = pb.ModelStreamInferResponse
Start = Callable[[pb.ModelInferRequest], "asyncio.Future[pb.ModelInferResponse]"]
Count = Callable[[pb.ModelInferRequest, str], None]


def error_answer(request: pb.ModelInferRequest, exc: BaseException, count: Count) -> Answer:
    """The in-stream error: the status code name and the safe message, with the request's model and id."""
    code, message = to_status(exc)
    count(request, code.name)
    where = f"request {request.id!r}: " if request.id else ""
    response = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
    return Answer(error_message=f"{where}{code.name}: {message}", infer_response=response)


class TritonStream:
    """The answers of one stream (`answers()`), and `stop_reading()` for a shutdown that cuts it."""

    def __init__(
        self, requests: AsyncIterator[pb.ModelInferRequest], start: Start, count: Count, window: int
    ) -> None:
        self._requests = requests
        self._start = start
        self._count = count
        self._window = window
        self._reader: asyncio.Task[None] | None = None
        self._reading = False  # the reader is in its read loop (where a stop may cancel it)
        self._stopping = False
        self.stopped = False  # reading stopped before the client half-closed: the stream was cut

    def stop_reading(self) -> None:
        """Read no more requests; the ones already started are still answered, then `answers()` ends."""
        self._stopping = True
        if self._reader is not None and self._reading:
            self._reader.cancel()

    async def answers(self) -> AsyncGenerator[Answer, None]:
        """Answer every request until the client half-closes (or reading stops) and every answer is out."""
        if self._stopping:  # cut before it began
            self.stopped = True
            return
        answers: asyncio.Queue[Answer | None] = asyncio.Queue()
        room = asyncio.Semaphore(self._window)
        self._reader = asyncio.create_task(self._read(room, answers))
        try:
            while (answer := await answers.get()) is not None:
                yield answer
                room.release()
        finally:
            self._reader.cancel()
            await asyncio.wait([self._reader])
        failure = None if self._reader.cancelled() else self._reader.exception()
        if failure is not None:
            raise failure

    async def _read(self, room: asyncio.Semaphore, answers: asyncio.Queue[Answer | None]) -> None:
        in_flight: set[asyncio.Future[pb.ModelInferResponse]] = set()

        def answer(request: pb.ModelInferRequest, future: asyncio.Future[pb.ModelInferResponse]) -> None:
            in_flight.discard(future)
            if future.cancelled():
                return
            failure = future.exception()
            if failure is not None:
                answers.put_nowait(error_answer(request, failure, self._count))
            else:
                self._count(request, "OK")
                answers.put_nowait(Answer(infer_response=future.result()))

        self._reading = True
        try:
            while not self._stopping:  # (a stop before this task first ran could not cancel it)
                await room.acquire()
                request = await anext(self._requests, None)
                if request is None:
                    break
                try:
                    future = self._start(request)
                except Exception as exc:
                    answers.put_nowait(error_answer(request, exc, self._count))
                    continue
                in_flight.add(future)
                future.add_done_callback(partial(answer, request))
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            self._reading = False
        self.stopped = self._stopping
        try:
            if in_flight:
                await asyncio.wait(set(in_flight))
        finally:
            answers.put_nowait(None)  # requests in flight still finish (their sequences' state stays consistent)
