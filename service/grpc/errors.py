"""The data plane's status table (`service/dataplane/status.py`) in gRPC's spelling.

Domain errors carry a safe message (`str(exc)`) that goes to the client as is. Anything else is unexpected:
the client gets INTERNAL with a generic message and the details go to the log only.
"""

from __future__ import annotations

import grpc

from service.dataplane.status import INTERNAL_MESSAGE, MAX_MESSAGE_CHARS, Code, status_of

__all__ = ["INTERNAL_MESSAGE", "MAX_MESSAGE_CHARS", "STATUS_CODES", "grpc_code", "to_status"]
STATUS_CODES: dict[Code, grpc.StatusCode] = {code: grpc.StatusCode[code.name] for code in Code}


def grpc_code(code: Code) -> grpc.StatusCode:
    return STATUS_CODES[code]


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception (the nearest mapped base class wins)."""
    code, message = status_of(exc)
    return STATUS_CODES[code], message
