"""Safe decoding of what a client sends: messages that cannot be parsed, tensor shapes, versions, echoed text.

Left to grpc, a request that protobuf cannot parse ends a unary call with UNKNOWN ("Unexpected <class
DecodeError>"), a stream with INTERNAL, and a Triton stream not at all (it hangs until the client's deadline).
`safe_deserializer` wraps a handler's deserializer so that it never raises: an unparseable message becomes an
`Undecodable` marker, which the interceptor turns into INVALID_ARGUMENT (unary) or raises as `InvalidInput` from
the request iterator (streams: the handler ends the stream with that status). Shapes are checked before anything
is allocated from them (`check_shape`), versions are parsed strictly (`parse_version`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from service.engine.errors import InvalidInput, clip

MAX_DIMS = 8  # no tensor of ours has more than 3; numpy's own limit is 64
MAX_ELEMENTS = 2**31  # the product of the non-zero dimensions: far above what fits a message (16 MiB by default)
MAX_VERSION_DIGITS = 9


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


def check_shape(shape: Sequence[int], what: str) -> int:
    """The element count of a tensor of `shape`, once its rank and size are known to be sane (`InvalidInput`)."""
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"{what}: {len(shape)} dimensions; at most {MAX_DIMS}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"{what}: shape {list(shape)} has a negative dimension")
    if math.prod(d or 1 for d in shape) > MAX_ELEMENTS:  # zero-times-huge too: numpy cannot shape it
        raise InvalidInput(f"{what}: shape {clip(list(shape))} is too large")
    return math.prod(shape)


def parse_version(text: str) -> int | None:
    """A Triton request's model version: "" is the version served by default; else ASCII digits, > 0."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_VERSION_DIGITS or int(text) <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {clip(text)}")
    return int(text)
