"""The one table from domain exceptions to status codes, protocol-neutral: each front spells the code its own way
(gRPC status, HTTP status, WebSocket close code), and the request counters use its name.

Codes are google.rpc.Code's (the numbers a native in-stream `Error` carries). Domain errors carry a safe message
(`str(exc)`) that goes to the client as is; anything else is unexpected: the client gets INTERNAL with a generic
message and the details go to the log, once (`status_of`; `code_of` only classifies, for counting).
"""

from __future__ import annotations

import logging
from enum import IntEnum

from seqserve_client.codec import TensorError
from service.engine.errors import (
    Aborted,
    FailedPrecondition,
    FirstMessageTimeout,
    InvalidInput,
    ModelNotFound,
    ModelRunFailed,
    PermissionDenied,
    ResourceExhausted,
    SequenceNotFound,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)


class Code(IntEnum):
    """google.rpc.Code (gRPC's status codes), the ones this server answers with."""

    OK = 0
    CANCELLED = 1
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


CODES: dict[type[Exception], Code] = {
    InvalidInput: Code.INVALID_ARGUMENT,
    TensorError: Code.INVALID_ARGUMENT,  # the codec's: a tensor that cannot be decoded
    ModelNotFound: Code.NOT_FOUND,
    SequenceNotFound: Code.NOT_FOUND,
    FailedPrecondition: Code.FAILED_PRECONDITION,
    ResourceExhausted: Code.RESOURCE_EXHAUSTED,
    Unavailable: Code.UNAVAILABLE,
    Aborted: Code.ABORTED,
    FirstMessageTimeout: Code.DEADLINE_EXCEEDED,  # the stream ends
    Unauthenticated: Code.UNAUTHENTICATED,
    PermissionDenied: Code.PERMISSION_DENIED,
    ModelRunFailed: Code.INTERNAL,  # logged once per batch by the batcher; the message is generic
}
INTERNAL_MESSAGE = "internal error; see the server log"
MAX_MESSAGE_CHARS = 1024  # a status message stays far below the metadata limit whatever it quotes


def code_of(exc: BaseException) -> Code:
    """The code of an exception (the nearest mapped base class wins; INTERNAL for anything unexpected)."""
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            return code
    return Code.INTERNAL


def status_of(exc: BaseException) -> tuple[Code, str]:
    """The code and client-facing message for an exception; an unexpected one is logged here, once."""
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            message = str(exc)
            return code, message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "..."
    log.error("unexpected error while serving a request", exc_info=exc)
    return Code.INTERNAL, INTERNAL_MESSAGE
