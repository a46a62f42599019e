"""Load over the web front (`--target` is then the HTTP port, e.g. 127.0.0.1:8000), closed loop, like the others:

- `websocket`: one socket per load stream at `/v2/models/{model}/stream`, the native `Stream` messages as binary
  frames (serialized protobuf, prebuilt as bytes: the gRPC driver's), `end` after the last chunk;
- `rest`: one Triton sequence per load stream over KServe v2 REST (`sequence_id`, START on the first request until
  one is answered, an unmeasured END after the last), binary tensor data both ways, as tritonclient.http sends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import numpy as np

from service.loadtest import protocol
from service.loadtest.closedloop import ClosedLoop
from service.loadtest.config import LoadConfig
from service.loadtest.stats import Tally

WS_PROTOCOL = "seqserve.v1"
HEADER_LENGTH = "Inference-Header-Content-Length"
ID_SPAN = 1_000_000  # sequence ids of one client process: seed * ID_SPAN + 1 ...
HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              409: "FAILED_PRECONDITION", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
              503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class StreamClosed(Exception):
    """A socket or request ended with a status; `code` is its gRPC name."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def base_url(config: LoadConfig) -> str:
    return f"{'https' if config.security.secure else 'http'}://{config.target}"


def headers(config: LoadConfig) -> dict[str, str]:
    return {} if config.security.token is None else {"Authorization": f"Bearer {config.security.token}"}


async def input_of(http: aiohttp.ClientSession, config: LoadConfig) -> tuple[str, int]:
    """The sequence input's name and feature size, from the REST model metadata."""
    async with http.get(f"{base_url(config)}/v2/models/{config.model}") as reply:
        reply.raise_for_status()
        tensor = (await reply.json())["inputs"][0]
        return str(tensor["name"]), int(tensor["shape"][-1])


async def fetch_features_http(config: LoadConfig) -> int:
    async with aiohttp.ClientSession(headers=headers(config)) as http:
        return (await input_of(http, config))[1]


Body = tuple[bytes, str]  # a REST request's body (JSON header + raw input bytes) and the header's length


def rest_requests(config: LoadConfig, name: str, index: int, x: np.ndarray) -> tuple[Body, Body, Body]:
    """(first, plain, end) bodies of load stream `index`: START, plain, END; the same chunk `x` (time, features)."""
    data = np.ascontiguousarray(x[np.newaxis], dtype="<f4").tobytes()

    def build(**flags: bool) -> Body:
        params = {"sequence_id": config.seed * ID_SPAN + index + 1, "binary_data_output": True, **flags}
        head = json.dumps({"parameters": params, "inputs": [{
            "name": name, "datatype": "FP32", "shape": [1, *x.shape], "parameters": {"binary_data_size": len(data)},
        }]}, separators=(",", ":")).encode()
        return head + data, str(len(head))

    return build(sequence_start=True), build(), build(sequence_end=True)


class WebDriver(ClosedLoop):
    """One client process of a web load: `run(wait_for_start) -> Tally`, like the gRPC drivers."""

    async def _open_socket(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse | None:
        url = f"{base_url(self.config).replace('http', 'ws', 1)}/v2/models/{self.config.model}/stream"
        try:
            ws = await http.ws_connect(url, protocols=(WS_PROTOCOL,), max_msg_size=0)
            await ws.send_bytes(protocol.open_request(self.config.model, self.config.version))
            _, error = protocol.reply_error(await _receive(ws))
        except StreamClosed as exc:
            error = exc.code
        except aiohttp.ClientError:
            error = "UNAVAILABLE"
        if error is not None:
            self.tally.record_error(error)
            return None
        return ws

    async def _socket(self, ws: aiohttp.ClientWebSocketResponse, x: np.ndarray, deadline: float) -> None:
        """The closed loop of one socket: a chunk, its answer, the next; `end` and the server's 1000 after."""
        chunks, seq = protocol.ChunkRequests(x), 1
        try:
            while self._more(seq - 1, deadline):
                sent_at = time.monotonic()
                await ws.send_bytes(chunks.build(seq))
                self._answer(protocol.reply_error(await _receive(ws))[1], sent_at)
                seq += 1
            await ws.send_bytes(protocol.end_request(seq))
            message = await ws.receive()
            if message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) or ws.close_code != 1000:
                raise StreamClosed(_close_name(ws.close_code))
        finally:
            await ws.close()

    async def _sequence(self, http: aiohttp.ClientSession, name: str, index: int, x: np.ndarray, deadline: float
                        ) -> None:
        url = f"{base_url(self.config)}/v2/models/{self.config.model}"
        if self.config.version:
            url += f"/versions/{self.config.version}"
        first, plain, end = rest_requests(self.config, name, index, x)

        async def ask(request: Body) -> str | None:
            body, length = request
            head = {HEADER_LENGTH: length, "Content-Type": "application/octet-stream"}
            async with http.post(f"{url}/infer", data=body, headers=head) as reply:
                await reply.read()
                return None if reply.status == 200 else HTTP_CODES.get(reply.status, f"HTTP_{reply.status}")

        sent, begun = 0, False
        while self._more(sent, deadline):
            sent_at = time.monotonic()
            begun = self._answer(await ask(plain if begun else first), sent_at) or begun
            sent += 1
        if begun:
            await ask(end)

    async def _guarded(self, body: Awaitable[None]) -> None:
        try:
            await body
        except StreamClosed as exc:
            self.tally.record_error(exc.code)
        except aiohttp.ClientError:
            self.tally.record_error("UNAVAILABLE")
        finally:
            self.tally.ended = time.monotonic()

    async def run(self, wait_for_start: Callable[[], Awaitable[None]]) -> Tally:
        config = self.config
        x = self._rng.standard_normal((config.chunk, config.features)).astype(np.float32)  # type: ignore[arg-type]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers(config)) as http:
            sockets, name = [], None
            if config.protocol == "rest":
                try:
                    name = (await input_of(http, config))[0]
                except aiohttp.ClientResponseError as exc:  # e.g. an unknown model: every stream fails with it
                    for _ in range(config.streams):
                        self.tally.record_error(HTTP_CODES.get(exc.status, f"HTTP_{exc.status}"))
            if config.protocol == "websocket":
                opened = await asyncio.gather(*(self._open_socket(http) for _ in range(config.streams)))
                sockets = [ws for ws in opened if ws is not None]
            await wait_for_start()
            self._measure_from = self.tally.started = time.monotonic() + config.warmup_s
            deadline = self.tally.started + (config.duration_s or 0.0)
            if config.protocol == "websocket":
                bodies = [self._socket(ws, x, deadline) for ws in sockets]
            else:
                bodies = [] if name is None else [self._sequence(http, name, i, x, deadline)
                                                  for i in range(config.streams)]
            await asyncio.gather(*(self._guarded(body) for body in bodies))
        if self.tally.ended is None:
            self.tally.ended = self.tally.started
        return self.tally


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    message = await ws.receive()
    if message.type != aiohttp.WSMsgType.BINARY:
        raise StreamClosed(_close_name(ws.close_code))
    return bytes(message.data)


def _close_name(code: int | None) -> str:
    """The status a socket closed with, by its close code (docs/web.md)."""
    if code is not None and code >= 4000:
        return protocol.code_name(code - 4000)
    return {1009: "INVALID_ARGUMENT", 1001: "UNAVAILABLE", 1011: "INTERNAL"}.get(code or 0, f"CLOSE_{code}")
