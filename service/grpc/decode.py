"""Safe decoding of what a client sends: messages that cannot be parsed, tensor shapes, versions, echoed text.

Left to grpc, a request that protobuf cannot parse ends a unary call with UNKNOWN ("Unexpected <class
DecodeError>"), a stream with INTERNAL, and a Triton stream not at all (it hangs until the client's deadline).
`safe_deserializer` wraps a handler's deserializer so that it never raises: an unparseable message becomes an
`Undecodable` marker, which the interceptor turns into INVALID_ARGUMENT (unary) or raises as `InvalidInput` from
the request iterator (streams: the handler ends the stream with that status). Tensor shapes are checked by the one
codec (`seqserve_client.codec.check_shape`), versions by the data plane (`kserve.parse_version`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from service.engine.errors import InvalidInput


class Undecodable:
    """What a wrapped deserializer returns for bytes protobuf cannot parse."""

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method = method

    def error(self) -> InvalidInput:
        return InvalidInput(f"the request message of {self.method} cannot be decoded (malformed protobuf)")


Deserializer = Callable[[bytes], Any]


def safe_deserializer(deserializer: Deserializer | None, method: str) -> Deserializer | None:
    """`deserializer` that answers `Undecodable(method)` instead of raising (any parse failure is the client's)."""
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, and upb's RecursionError / ValueError on hostile nesting or UTF-8
            return Undecodable(method)

    return decode


def checked(request: Any) -> Any:
    """The request, or `InvalidInput` if it could not be decoded."""
    if type(request) is Undecodable:
        raise request.error()
    return request


async def checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The requests of a stream; an undecodable one raises `InvalidInput` where the handler reads it."""
    async for request in requests:
        if type(request) is Undecodable:
            raise request.error()
        yield request
