"""Stream RPCs in progress, so that a shutdown ends the ones still open itself, with UNAVAILABLE.

Left to `server.stop`, grpc core cancels the calls as it closes the connections, and a proxy in between (nginx)
may see the connection go before the status and reset the stream (its clients then see INTERNAL, not UNAVAILABLE).
So once the sessions have ended (or the grace is used up), `cut` ends every open stream with a status of its own,
and only then does the server stop. A stream that starts after the cut (it raced the stop) is refused with the
same UNAVAILABLE as it starts.

By default a handler is cut where it waits in its own code (reading a request, waiting for a step): its task is
cancelled and the handler turns that into the status. A handler whose response grpc is writing at that moment is
not cancelled (grpc would swallow it); it sees `watch.cut` as soon as the write is done. A handler can instead say
how it is cut (`on_cut`): the Triton stream stops reading and still answers every request it has started.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from service.engine.errors import SeqServeError, Unavailable

CUT_MESSAGE = "the server is shutting down and has ended this stream"


@dataclass(eq=False)
class Watch:
    """One stream RPC: its task, whether grpc is writing one of its responses, whether it was cut, and how to cut
    it (`on_cut`; by default its task is cancelled, unless grpc is writing)."""

    task: asyncio.Task[object]
    on_cut: Callable[[], None] | None = None
    writing: bool = False
    error: SeqServeError | None = None  # why the stream was ended from outside (a cut: UNAVAILABLE)

    @property
    def cut(self) -> bool:
        return self.error is not None

    def end(self, error: SeqServeError) -> None:
        """End the stream from outside with `error` (a cut, or its session's eviction): its task is cancelled where
        it waits, unless grpc is writing a response (then `written` raises it)."""
        if self.error is not None:
            return
        self.error = error
        if self.on_cut is not None:
            self.on_cut()
        elif not self.writing:
            self.task.cancel()

    def was_cut(self) -> SeqServeError | None:
        """Where a cancellation was caught: the error to end the stream with if it was ended from outside (then
        the cancellation is absorbed), else None (re-raise it: the client went away)."""
        if self.error is None:
            return None
        self.task.uncancel()
        return self.error

    def written(self) -> None:
        """A response is out: raise the error if the stream was ended while grpc was writing it."""
        self.writing = False
        if self.error is not None:
            raise self.error


class OpenStreams:
    def __init__(self) -> None:
        self._open: set[Watch] = set()
        self._closed = False  # cut: a stream that starts now (racing the server's stop) is refused at once


    @contextlib.contextmanager
    def watch(self, on_cut: Callable[[], None] | None = None) -> Iterator[Watch]:
        """Track the calling stream RPC (run it inside the handler, on its task) until the block ends."""
        if self._closed:  # else grpc's stop would cancel it: CANCELLED, not our UNAVAILABLE
            raise Unavailable(CUT_MESSAGE)
        task = asyncio.current_task()
        assert task is not None, "a stream handler runs in a task"
        watch = Watch(task, on_cut)
        self._open.add(watch)
        try:
            yield watch
        finally:
            self._open.discard(watch)

    async def cut(self, timeout: float) -> int:
        """End every open stream with UNAVAILABLE, and refuse every later one; wait up to `timeout` s for their
        handlers; how many were open."""
        self._closed = True
        watches = list(self._open)
        for watch in watches:
            watch.end(Unavailable(CUT_MESSAGE))
        if watches:
            await asyncio.wait([w.task for w in watches], timeout=timeout)
        return len(watches)
