"""Server interceptors applied to every RPC of every service: the error table, once.

`ErrorInterceptor` wraps each method handler so that whatever it raises ends the call with the status of
`service/grpc/errors.py`: a domain error with its code and safe message, anything else with INTERNAL and a generic
message (the details go to the log, once). Requests are counted by the data plane, not here. Requests are
decoded safely (`service/grpc/decode.py`): a message protobuf cannot parse is INVALID_ARGUMENT, on every RPC.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.grpc.decode import checked, checked_stream, safe_deserializer
from service.grpc.errors import to_status

Check = Callable[[Any], Any]  # the request (or request iterator) as the handler gets it; raises if undecodable


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that replaces each method's handler with `wrap(handler, details)`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        return self.wrap(handler, handler_call_details)

    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class ErrorInterceptor(HandlerInterceptor):
    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        codec = {"request_deserializer": safe_deserializer(handler.request_deserializer, method),
                 "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, checked), **codec)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, checked_stream), **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, checked), **codec)
        return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, checked_stream), **codec)

    def _unary(self, behavior: Callable[..., Any], check: Check
               ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(check(request), context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                failure = self._status(exc)
            # aborted outside the `except`, without the request: grpc keeps the abort's traceback in a reference
            # cycle, and a large rejected request held by it would wait for Python's full collections
            del request
            await context.abort(*failure)

        return mapped

    def _streaming(self, behavior: Callable[..., Any], check: Check
                   ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                responses = behavior(check(request), context)
                if inspect.isasyncgen(responses):
                    async for response in responses:
                        yield response
                else:  # a handler that writes with `context.write` (grpc's health Watch)
                    await responses
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                failure = self._status(exc)
            else:
                return
            await context.abort(*failure)  # outside the `except` (see `_unary`)

        return mapped

    @staticmethod
    def _status(exc: Exception) -> tuple[grpc.StatusCode, str]:
        return to_status(exc)
