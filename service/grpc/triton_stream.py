"""One Triton `ModelStreamInfer` RPC: many requests in flight, each answered once, in order within a sequence.

The reader starts each request as it arrives (which takes its place in its sequence, see `Sequences.submit`)
and answers it from a done-callback of its task: the tasks of one sequence complete in request order, so
their answers are queued in request order. The writer yields the answers. A failed request is answered with
its `error_message` and the stream goes on. At most `window` requests are read but not yet answered
(backpressure: a client that stops reading stops being read). When the client goes away, the requests already
started still run to the end, unanswered: sequences outlive streams, as in Triton.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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


async def serve_stream(
    requests: AsyncIterator[pb.ModelInferRequest], start: Start, count: Count, window: int
) -> AsyncIterator[Answer]:
    """Answer every request until the client half-closes and every answer is out."""
    answers: asyncio.Queue[Answer | None] = asyncio.Queue()
    room = asyncio.Semaphore(window)
    reader = asyncio.create_task(_read(requests, start, count, room, answers))
    try:
        while (answer := await answers.get()) is not None:
            yield answer
            room.release()
    finally:
        reader.cancel()
        await asyncio.wait([reader])
    failure = None if reader.cancelled() else reader.exception()
    if failure is not None:
        raise failure


async def _read(
    requests: AsyncIterator[pb.ModelInferRequest],
    start: Start,
    count: Count,
    room: asyncio.Semaphore,
    answers: asyncio.Queue[Answer | None],
) -> None:
    in_flight: set[asyncio.Future[pb.ModelInferResponse]] = set()

    def answer(request: pb.ModelInferRequest, future: asyncio.Future[pb.ModelInferResponse]) -> None:
        in_flight.discard(future)
        if future.cancelled():
            return
        failure = future.exception()
        if failure is not None:
            answers.put_nowait(error_answer(request, failure, count))
        else:
            count(request, "OK")
            answers.put_nowait(Answer(infer_response=future.result()))

    try:
        while True:
            await room.acquire()
            request = await anext(requests, None)
            if request is None:
                break
            try:
                future = start(request)
            except Exception as exc:
                answers.put_nowait(error_answer(request, exc, count))
                continue
            in_flight.add(future)
            future.add_done_callback(partial(answer, request))
        if in_flight:
            await asyncio.wait(set(in_flight))
    finally:
        answers.put_nowait(None)  # requests in flight still finish (their sequences' state stays consistent)
