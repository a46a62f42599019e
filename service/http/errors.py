"""The data plane's status table in HTTP's spelling: status codes as KServe v2 maps them (body `{"error": ...}`),
and WebSocket close codes (4000 + the gRPC code, RFC 6455's private range)."""

from __future__ import annotations

import json

from aiohttp import web

from service.dataplane.status import Code, status_of

HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.NOT_FOUND: 404,
    Code.FAILED_PRECONDITION: 409,
    Code.ABORTED: 409,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
    Code.CANCELLED: 499,
}
CLOSE_BASE = 4000  # + google.rpc.Code: 4003 INVALID_ARGUMENT, 4016 UNAUTHENTICATED, ...
MAX_REASON_BYTES = 123  # a close frame's reason, RFC 6455


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def error_response(exc: BaseException) -> web.Response:
    code, message = status_of(exc)
    return web.Response(status=HTTP_STATUS.get(code, 500), body=error_body(message), content_type="application/json")


def close_code(exc: BaseException) -> tuple[int, bytes]:
    """The close code and reason that end a socket with `exc`'s status."""
    code, message = status_of(exc)
    return CLOSE_BASE + code.value, reason(f"{code.name}: {message}")


def reason(text: str) -> bytes:
    """`text` as a close reason: UTF-8, cut to 123 bytes on a character boundary."""
    data = text.encode()
    if len(data) <= MAX_REASON_BYTES:
        return data
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore").encode() + b"..."
