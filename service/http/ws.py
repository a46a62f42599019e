"""`/v2/models/{name}/stream`: one WebSocket is one native stream session (docs/web.md has the exact framing).

Text frames carry `StreamRequest` / `StreamResponse` in protobuf's canonical JSON, binary frames serialized
protobuf; each answer goes back in its request's kind of frame. The rules are the data plane's `StreamSession`
(the same as the gRPC `Stream`), the messages the shared `NativeStream`'s. One request at a time: the next frame is
read once the previous answer is written (aiohttp pauses the transport when frames pile up), so nothing is
buffered without bound. Whatever ends the socket closes it with a code and a reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from service.dataplane import DataPlane, StreamSession
from service.engine.access import CLIENT
from service.engine.errors import FirstMessageTimeout, InvalidInput, ResourceExhausted, SeqServeError, Unavailable
from service.http.auth import HttpAuth
from service.http.errors import close_code, reason
from service.settings import Settings
from service.streaming import NativeStream

log = logging.getLogger(__name__)
PROTOCOL = "seqserve.v1"
EVERY_FIELD = {"always_print_fields_with_no_presence": True}  # `seq` 0, empty token: present, not left out
CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the client's answer (aiohttp's default: 10 s)
CUT_REASON = "the server is shutting down; resume elsewhere with open {resume: <resumeToken>}"


class Socket:
    """One open stream socket: whether it waits for a frame, and why it was ended from outside."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.waiting = False  # in `receive`: an end from outside closes the socket at once
        self.ended: tuple[int, bytes] | None = None  # (close code, reason) once ended from outside
        self.error: SeqServeError | None = None  # why
        self.counted: Callable[[SeqServeError], None] | None = None  # counts the end (before the close frame)
        self.finished = asyncio.Event()  # its handler is done (the close frame is out)
        self._closing: asyncio.Task[object] | None = None

    def end(self, error: SeqServeError, code: int | None = None) -> None:
        """End the socket from outside with `error` (a shutdown's cut: 1001; an evicted session: its status's
        code): at once if it waits for a frame, else as soon as its answer in progress is written."""
        if self.ended is None:
            self.error = error
            if self.counted is not None:
                self.counted(error)
            self.ended = close_code(error) if code is None else (code, reason(str(error)))
            code, why = self.ended
            if self.waiting:
                self._closing = asyncio.ensure_future(self.ws.close(code=code, message=why))


class Streams:
    def __init__(self, dataplane: DataPlane, auth: HttpAuth, settings: Settings) -> None:
        self._dataplane = dataplane
        self._auth = auth
        self._settings = settings
        self._open: set[Socket] = set()
        self._idle = 0  # sockets not yet past their open: at most --max-streams-without-session

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), heartbeat=self._settings.websocket_heartbeat,
                                   max_msg_size=self._settings.max_message_bytes, timeout=CLOSE_TIMEOUT_S)
        idle = Idle(self)  # counted from the start: a socket not yet past its open
        await ws.prepare(request)
        name = request.match_info["name"]
        client = self._auth.client(request, offered)
        try:
            if isinstance(client, SeqServeError):
                raise client
            CLIENT.set(client)
            client.check_model(name)  # PERMISSION_DENIED now, before the open
            if not idle.admitted:
                raise ResourceExhausted(f"{self._idle} sockets are open without a session; send the open at once")
        except SeqServeError as exc:
            idle.leave()
            code, why = close_code(exc)
            await ws.close(code=code, message=why)
            return ws
        socket = Socket(ws)
        self._open.add(socket)
        try:
            await self._serve(socket, name, idle)
            if socket._closing is not None:
                await socket._closing
        finally:
            idle.leave()
            self._open.discard(socket)
            socket.finished.set()
        return ws

    async def cut(self, timeout: float) -> int:
        """A shutdown: end every open socket with 1001 (GOING_AWAY) and wait up to `timeout` s for their close
        frames to go out; how many were open."""
        sockets = list(self._open)
        for socket in sockets:
            socket.end(Unavailable(CUT_REASON), WSCloseCode.GOING_AWAY)
        if sockets:
            await asyncio.wait([asyncio.ensure_future(s.finished.wait()) for s in sockets], timeout=timeout)
        return len(sockets)

    async def _serve(self, socket: Socket, name: str, idle: Idle) -> None:
        ws = socket.ws
        session = StreamSession(self._dataplane, model=name,
                                on_expired=socket.end)
        stream = NativeStream(session)
        socket.counted = session.failed
        try:
            while socket.ended is None:
                binary, request = await self._next(socket, first=not stream.open)
                if request is None:  # the client closed (or went away): a stored session stays for a resume
                    break
                kind = request.WhichOneof("kind")
                if kind == "end":
                    await stream.end()
                    await ws.close(code=WSCloseCode.OK, message=b"session ended")
                    return
                answer = stream.answer(request, kind)
                response = answer if isinstance(answer, pb.StreamResponse) else await answer
                if stream.open:
                    idle.leave()
                if binary:
                    await ws.send_bytes(response.SerializeToString())
                else:
                    await ws.send_str(json_format.MessageToJson(response, indent=None, **EVERY_FIELD))
            if socket.ended is not None and socket._closing is None:  # ended from outside mid-answer (counted)
                await ws.close(code=socket.ended[0], message=socket.ended[1])
        except ConnectionResetError:  # the client went away while we wrote: nothing to tell it
            return
        except Exception as exc:
            session.failed(exc)
            if not ws.closed:
                code, why = close_code(exc)
                if code == 4000 + 13 and not isinstance(exc, SeqServeError):
                    code = WSCloseCode.INTERNAL_ERROR
                await ws.close(code=code, message=why)
        finally:
            session.close()

    async def _next(self, socket: Socket, first: bool) -> tuple[bool, pb.StreamRequest | None]:
        """The next request and whether it came binary; None once the client closed. The first must come within
        --first-message-timeout (else DEADLINE_EXCEEDED); a frame that is not a request is INVALID_ARGUMENT."""
        socket.waiting = True
        try:
            if first:
                try:
                    message = await asyncio.wait_for(socket.ws.receive(), self._settings.first_message_timeout)
                except TimeoutError:
                    raise FirstMessageTimeout(f"no open within {self._settings.first_message_timeout:g} s") from None
            else:
                message = await socket.ws.receive()
        finally:
            socket.waiting = False
        if message.type == WSMsgType.BINARY:
            try:
                return True, pb.StreamRequest.FromString(message.data)
            except (DecodeError, RecursionError, ValueError):
                raise InvalidInput("a binary frame that is not a serialized StreamRequest") from None
        if message.type == WSMsgType.TEXT:
            try:
                return False, json_format.Parse(message.data, pb.StreamRequest())
            except (json_format.ParseError, RecursionError, ValueError) as exc:
                raise InvalidInput(f"a text frame that is not a StreamRequest in JSON: {str(exc)[:60]}") from None
        if message.type == WSMsgType.ERROR:  # e.g. a frame over --max-message-bytes: aiohttp closes with 1009
            log.debug("stream socket error: %s", message.data)
        return False, None  # CLOSE (answered by aiohttp), CLOSING (ended from outside), CLOSED, ERROR


class Idle:
    """A socket's place among those without a session (`--max-streams-without-session`): taken as it connects if
    one is free (`admitted`), given back once, at its open or its end."""

    def __init__(self, streams: Streams) -> None:
        self._streams = streams
        self.admitted = streams._idle < streams._settings.max_streams_without_session
        self._held = self.admitted
        if self._held:
            streams._idle += 1

    def leave(self) -> None:
        if self._held:
            self._held = False
            self._streams._idle -= 1
