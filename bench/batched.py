"""The minimal batched server: what a user would write in an afternoon instead of installing seqserve.

grpc.aio speaking Triton's `ModelStreamInfer` (and `ModelMetadata`), every sequence's state in a slot of a pool,
one onnxruntime run per batch in a worker thread, batching whatever queued while the previous run was in flight,
no queue delay, no validation. `python -m bench.batched --models DIR --model NAME [--port 0] [--threads 0]` prints
`batched listening on PORT` once serving and stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from modelrepo import Manifest, latest_versions
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc

SLOTS, MAX_BATCH = 1024, 64
Step = tuple[int, np.ndarray, str, bool, "asyncio.Future[tpb.ModelStreamInferResponse]"]


class Batched(tpb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: Path, model: str, threads: int) -> None:
        found = latest_versions(models)[model]
        self.m = Manifest.load(found.manifest_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(found.model_path), options, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.pool = {p.input: np.zeros((SLOTS, *p.shape), np.float32) for p in self.m.state}  # slot-first
        self.slots: dict[int, int] = {}  # sequence id -> slot
        self.free = list(range(SLOTS - 1, -1, -1))
        self.queue: list[Step] = []
        self.wake = asyncio.Event()

    async def batcher(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:  # everything that queued while the previous run was in flight
                batch: list[Step] = []
                rest: list[Step] = []
                seen: set[int] = set()
                for step in self.queue:  # one step per sequence per batch
                    (rest if step[0] in seen or len(batch) == MAX_BATCH else batch).append(step)
                    seen.add(step[0])
                self.queue = rest
                slots = [s[0] for s in batch]
                feeds = {self.m.input.name: np.stack([s[1] for s in batch]),
                         **{p.input: self.pool[p.input][slots] for p in self.m.state}}
                ran = await asyncio.to_thread(self.session.run, self.names, feeds)
                values = dict(zip(self.names, ran, strict=True))
                for p in self.m.state:
                    self.pool[p.input][slots] = values[p.output]
                for i, (slot, _, rid, end, future) in enumerate(batch):
                    reply = tpb.ModelInferResponse(model_name=self.m.name, model_version="1", id=rid)
                    for o in self.m.outputs:
                        y = values[o.name][i:i + 1]
                        reply.outputs.add(name=o.name, datatype="FP32", shape=y.shape)
                        reply.raw_output_contents.append(y.tobytes())
                    if end:
                        self.free.append(slot)
                    future.set_result(tpb.ModelStreamInferResponse(infer_response=reply))

    def slot(self, r: tpb.ModelInferRequest) -> int:
        sid = r.parameters["sequence_id"].int64_param
        if r.parameters["sequence_start"].bool_param or sid not in self.slots:
            slot = self.slots[sid] = self.slots[sid] if sid in self.slots else self.free.pop()
            for p in self.m.state:
                self.pool[p.input][slot] = p.initial
        return self.slots.pop(sid) if r.parameters["sequence_end"].bool_param else self.slots[sid]

    async def ModelStreamInfer(self, requests: AsyncIterator[tpb.ModelInferRequest], _: object
                               ) -> AsyncIterator[tpb.ModelStreamInferResponse]:
        answers: asyncio.Queue[asyncio.Future[tpb.ModelStreamInferResponse] | None] = asyncio.Queue()

        async def read() -> None:
            async for r in requests:
                x = np.frombuffer(r.raw_input_contents[0], np.float32).reshape(tuple(r.inputs[0].shape))[0]
                future = asyncio.get_running_loop().create_future()
                self.queue.append((self.slot(r), x, r.id, r.parameters["sequence_end"].bool_param, future))
                self.wake.set()
                answers.put_nowait(future)
            answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        while (future := await answers.get()) is not None:
            yield await future
        await reader

    async def ModelMetadata(self, request: tpb.ModelMetadataRequest, _: object) -> tpb.ModelMetadataResponse:
        return tpb.ModelMetadataResponse(name=self.m.name, inputs=[tpb.ModelMetadataResponse.TensorMetadata(
            name=self.m.input.name, datatype="FP32", shape=[-1, -1, self.m.input.features])])


async def _serve(a: argparse.Namespace) -> None:
    server, servicer = grpc.aio.server(), Batched(a.models, a.model, a.threads)
    tpb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{a.port}")
    await server.start()
    task = asyncio.ensure_future(servicer.batcher())
    print(f"batched listening on {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
    await server.stop(1.0)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.batched", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--model", default="vowels_lstm")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    asyncio.run(_serve(p.parse_args()))
