"""One Triton `ModelStreamInfer` RPC: many requests in flight, each answered once, in order within a sequence.

One reader task per stream starts each request as it arrives (a sequence request takes its place in its sequence
and is queued in the model's batcher at once, see `Sequences.submit`: no task per request) and answers it from a
done-callback, which builds the answer in place and appends it to the stream's outbox; the futures of one
sequence complete in request order, so their answers are queued in request order. The handler yields the outbox.
A failed request is answered with its `error_message` and the stream goes on. At most `window` requests are read
but not yet answered (backpressure: a client that stops reading stops being read). When the client goes away, the
requests already started still run to the end, unanswered: sequences outlive streams, as in Triton. A shutdown
that cuts the stream stops the reader only: every request already started is still answered before it ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial

from service.engine.done import when_done
from service.engine.errors import clip
from service.grpc.errors import to_status
from service.grpc.generated.inference import grpc_service_pb2 as pb

Answer = pb.ModelStreamInferResponse
Start = Callable[[pb.ModelInferRequest, pb.ModelInferResponse], "asyncio.Future[pb.ModelInferResponse]"]


def error_answer(request: pb.ModelInferRequest, exc: BaseException) -> Answer:
    """The in-stream error: the status code name and the safe message, with the request's model and id (the data
    plane has counted it)."""
    code, message = to_status(exc)
    where = f"request {clip(request.id)}: " if request.id else ""
    answer = Answer(error_message=f"{where}{code.name}: {message}")
    response = answer.infer_response
    response.model_name, response.model_version, response.id = request.model_name, request.model_version, request.id
    return answer


class TritonStream:
    """The answers of one stream (`answers()`), and `stop_reading()` for a shutdown that cuts it."""

    def __init__(self, requests: AsyncIterator[pb.ModelInferRequest], start: Start, window: int,
                 on_first: Callable[[], None] | None = None) -> None:
        self._requests = requests
        self._on_first = on_first  # runs once: at the first request, or via `first_read` at the end
        self._start = start
        self._window = window
        self._outbox: deque[Answer] = deque()
        self._ready = asyncio.Event()  # the outbox has answers, or the reader is done
        self._unanswered = 0  # read, not yet answered
        self._room = asyncio.Event()  # fewer than `window` unanswered
        self._room.set()
        self._reader: asyncio.Task[None] | None = None
        self._reading = False  # the reader is in its read loop (where a stop may cancel it)
        self._read_done = False
        self._stopping = False
        self.stopped = False  # reading stopped before the client half-closed: the stream was cut

    def first_read(self) -> None:
        """The first request arrived (or never will): run `on_first`, once."""
        on_first, self._on_first = self._on_first, None
        if on_first is not None:
            on_first()

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
        self._reader = asyncio.create_task(self._read())
        try:
            while True:
                while self._outbox:
                    answer = self._outbox.popleft()
                    self._answered()
                    yield answer
                if self._read_done and not self._unanswered:
                    break
                self._ready.clear()
                await self._ready.wait()
        finally:
            self._reader.cancel()
            await asyncio.wait([self._reader])
        failure = None if self._reader.cancelled() else self._reader.exception()
        if failure is not None:
            raise failure

    def _answered(self) -> None:
        self._unanswered -= 1
        if self._unanswered < self._window:
            self._room.set()

    def _post(self, answer: Answer) -> None:
        self._outbox.append(answer)
        self._ready.set()

    def _finish(self, request: pb.ModelInferRequest, answer: Answer, future: asyncio.Future[object]) -> None:
        if future.cancelled():
            self._answered()  # nothing will be sent for it
            self._ready.set()
            return
        failure = future.exception()
        self._post(answer if failure is None else error_answer(request, failure))

    async def _read(self) -> None:
        self._reading = True
        try:
            while not self._stopping:  # (a stop before this task first ran could not cancel it)
                if self._unanswered >= self._window:
                    self._room.clear()
                    await self._room.wait()
                request = await anext(self._requests, None)
                if request is None:
                    break
                if self._on_first is not None:
                    self.first_read()
                self._unanswered += 1
                answer = Answer()
                try:
                    future = self._start(request, answer.infer_response)
                except Exception as exc:
                    self._post(error_answer(request, exc))
                    continue
                when_done(future, partial(self._finish, request, answer))  # at once if it ran inline
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            self._reading = False
            self._read_done = True
            self._ready.set()
        self.stopped = self._stopping
