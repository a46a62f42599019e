"""The hand-written baseline: the native `Stream` RPC as a user would serve it in an afternoon without seqserve.

grpc.aio, one onnxruntime run per request on the event loop, each session's state in a dict; no batching, no
validation beyond what onnxruntime checks, one model. `python -m bench.baseline --models DIR --model NAME
[--port 0] [--threads 1]` prints `baseline listening on PORT` once serving and stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from modelrepo import Manifest, latest_versions
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc


class Baseline(pb_grpc.SeqServeServicer):
    def __init__(self, models: Path, model: str, threads: int) -> None:
        found = latest_versions(models)[model]
        self.manifest = Manifest.load(found.manifest_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(found.model_path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.states: dict[int, dict[str, np.ndarray]] = {}  # session id -> state inputs (1, *shape)
        self.ids = itertools.count(1)

    def step(self, session: int, x: np.ndarray) -> pb.ChunkResult:
        m = self.manifest
        values = self.session.run(self.output_names, {m.input.name: x[np.newaxis], **self.states[session]})
        by_name = dict(zip(self.output_names, values, strict=True))
        self.states[session] = {p.input: by_name[p.output] for p in m.state}
        result = pb.ChunkResult()
        for o in m.outputs:
            y = by_name[o.name][0]
            result.outputs[o.name].CopyFrom(pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=y.shape, data=y.tobytes()))
        return result

    async def Stream(self, requests: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext
                     ) -> AsyncIterator[pb.StreamResponse]:
        session = next(self.ids)
        self.states[session] = {p.input: np.full((1, *p.shape), p.initial, np.float32) for p in self.manifest.state}
        try:
            async for r in requests:
                if r.WhichOneof("kind") == "open":
                    yield pb.StreamResponse(seq=r.seq, opened=pb.Opened(model=self.manifest.name, session_id=session))
                elif r.WhichOneof("kind") == "chunk":
                    x = np.frombuffer(r.chunk.input.data, np.float32).reshape(tuple(r.chunk.input.shape))
                    yield pb.StreamResponse(seq=r.seq, result=self.step(session, x))
        finally:
            del self.states[session]


async def start_baseline(models: Path, model: str, threads: int = 1, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_SeqServeServicer_to_server(Baseline(models, model, threads), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def _serve(a: argparse.Namespace) -> None:
    server, bound = await start_baseline(a.models, a.model, a.threads, a.port)
    print(f"baseline listening on {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--model", default="vowels_lstm")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    asyncio.run(_serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()
