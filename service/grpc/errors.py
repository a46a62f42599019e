"""The one table from domain exceptions to gRPC status codes.

Domain errors carry a safe message (`str(exc)`) that goes to the client as is. Anything else is unexpected:
the client gets INTERNAL with a generic message and the details go to the log only.
"""

from __future__ import annotations

import logging

import grpc

from service.engine.errors import (
    Aborted,
    FailedPrecondition,
    InvalidInput,
    ModelNotFound,
    ModelRunFailed,
    PermissionDenied,
    ResourceExhausted,
    SeqServeError,
    SequenceNotFound,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[SeqServeError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    SequenceNotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Aborted: grpc.StatusCode.ABORTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ModelRunFailed: grpc.StatusCode.INTERNAL,  # logged once per batch by the batcher; the message is generic
}
INTERNAL_MESSAGE = "internal error; see the server log"
MAX_MESSAGE_CHARS = 1024  # a status message stays far below the metadata limit whatever it quotes


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception (the nearest mapped base class wins)."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)  # type: ignore[call-overload]
        if code is not None:
            message = str(exc)
            return code, message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "..."
    log.error("unexpected error while serving a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
