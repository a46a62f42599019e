"""The transport ceiling: a trivial gRPC server on raw bytes with the real `Stream` method and message sizes.

It answers the first message of a stream with an `Opened` reply and every later one with a chunk result of the
size the real server sends for that model and chunk length (zeros), without parsing anything. Driven by the same
load client as the real server, it measures what gRPC + the client allow: the ceiling for the real server.

`python -m service.loadtest.echo --model vowels_lstm --chunk 10 [--models models] [--port 0]` prints
`echo listening on PORT` once serving, and stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np

from modelrepo import Manifest, latest_versions
from service.loadtest import protocol

SERVICE = "seqserve.v1.SeqServe"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def replies_for(models_root: Path, model: str, chunk: int) -> tuple[bytes, bytes]:
    """(open reply, chunk reply) of the sizes the real server sends for `model` at `chunk` steps."""
    manifest = Manifest.load(latest_versions(models_root)[model].manifest_path)
    outputs = {o.name: np.zeros((chunk, o.size), np.float32) for o in manifest.outputs}
    return protocol.opened_reply(model), protocol.result_reply(1, outputs)


def echo_handler(opened: bytes, result: bytes) -> grpc.GenericRpcHandler:
    async def stream(requests: AsyncIterator[bytes], _: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        reply = opened
        async for _request in requests:
            yield reply
            reply = result

    return grpc.method_handlers_generic_handler(SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(stream)})


async def start_echo(
    opened: bytes, result: bytes, host: str = "127.0.0.1", port: int = 0
) -> tuple[grpc.aio.Server, int]:
    options = [(f"grpc.max_{way}_message_length", MAX_MESSAGE_BYTES) for way in ("receive", "send")]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((echo_handler(opened, result),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


async def _serve(opened: bytes, result: bytes, host: str, port: int) -> None:
    server, bound = await start_echo(opened, result, host, port)
    print(f"echo listening on {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m service.loadtest.echo", description=__doc__)
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--model", default="vowels_lstm")
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    asyncio.run(_serve(*replies_for(a.models, a.model, a.chunk), a.host, a.port))


if __name__ == "__main__":
    main()
