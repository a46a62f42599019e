"""Resuming a native stream after UNAVAILABLE or a broken connection (both SDK flavours).

A server with a shared session store (`--session-store redis://...`) gives every stream a resume token. The
`Journal` remembers the chunks and resets sent but not yet answered; after a failure (UNAVAILABLE, or ABORTED: the
stored position is not the one the server stepped from) the stream reopens with
`Open{resume: token}` (any replica), learns from `Opened.position` how many of them the store already applied,
takes their lost answers from `Opened.recent` and resends only the others. Outputs are the same as with no
failure: nothing is lost, nothing applied twice. A request the server rejected (an in-stream `Error`) is not
applied; if its error answer was lost too, the resumed stream cannot tell it from an applied one, so the SDK
resends nothing past a mismatch and says so (ABORTED).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import grpc

from seqserve_client.common import ServerError
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

# UNAVAILABLE: a replica going away, a broken connection, a drain, a store that did not take the step (nothing
# applied); ABORTED: the store holds another position than this stream's server thought (a step whose write was
# lost, or whose outcome is unknown): the resume's position says what was applied
# CANCELLED (not by this client): a replica that stops cancels the calls it never took (a recycled worker)
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})
# a proxy (nginx) whose upstream connection broke resets the client's stream: grpc reports INTERNAL with this
BROKEN_STREAM = "RST_STREAM"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a stream resumes after one failure (a success starts the count again)."""

    attempts: int = 6  # resumes tried per failure; 0 turns resuming off
    backoff_s: float = 0.05  # the wait before the first retry, doubled each time up to `max_backoff_s`
    max_backoff_s: float = 1.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1, 2, ...)."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


DEFAULT_RETRY = RetryPolicy()


class Journal:
    """One stream's resume token, applied position and unanswered state-changing requests."""

    def __init__(self, model: str, version: int) -> None:
        self.model = model
        self.version = version
        self.token = ""
        self.position = 0  # chunks and resets the server applied and this client received answers for
        self._pending: deque[pb.StreamRequest] = deque()

    def can_resume(self, error: ServerError) -> bool:
        """Whether `error` ended the stream's connection rather than refused the session (resuming is always safe:
        the store applies every chunk once, so a wrong guess costs one more failed attempt at most)."""
        broken = error.code == grpc.StatusCode.INTERNAL and BROKEN_STREAM in error.message
        return bool(self.token) and (error.code in RESUMABLE or broken)

    def opened(self, opened: pb.Opened) -> None:
        self.token, self.position = opened.resume_token, opened.position

    def sent(self, request: pb.StreamRequest) -> None:
        if request.WhichOneof("kind") in ("chunk", "reset"):
            self._pending.append(request)

    def answered(self, response: pb.StreamResponse) -> None:
        """A response read from the server: its request is no longer pending; results and resets advance."""
        if self._pending and self._pending[0].seq == response.seq and response.WhichOneof("kind") != "opened":
            self._pending.popleft()
            if response.WhichOneof("kind") in ("result", "reset"):
                self.position += 1

    def resume_request(self) -> pb.StreamRequest:
        return pb.StreamRequest(seq=0, open=pb.Open(model=self.model, version=self.version, resume=self.token))

    def reconcile(self, opened: pb.Opened) -> tuple[list[pb.StreamResponse], list[pb.StreamRequest]]:
        """After a resume: the answers of pending requests the server had applied (from `recent`), and the pending
        requests to send again, in order."""
        applied = opened.position - self.position
        recent = list(opened.recent)
        if applied < 0 or applied > min(len(recent), len(self._pending)):
            raise ServerError(grpc.StatusCode.ABORTED, f"cannot resume: the server applied {opened.position} "
                              f"requests, this client had answers for {self.position} and {len(self._pending)} "
                              f"pending, {len(recent)} answers kept")
        replies = []
        for request, answer in zip(list(self._pending)[:applied], recent[len(recent) - applied:], strict=True):
            if request.WhichOneof("kind") == "reset":
                replies.append(pb.StreamResponse(seq=request.seq, reset=pb.ResetDone()))
            else:
                replies.append(pb.StreamResponse(seq=request.seq, result=answer))
            self._pending.popleft()
        self.position = opened.position
        return replies, list(self._pending)
