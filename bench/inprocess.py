"""`python -m bench.inprocess`: the data plane's own CPU per request, native against Triton, without gRPC.

The same requests the fronts hand the data plane (a native `StreamRequest` chunk through `NativeStream`, a Triton
`ModelInferRequest` of an open sequence through `TritonServicer.start`), parsed from bytes and answered into a
serialised response, for `--streams` sessions at once (1: every chunk a batch of one, inline; 64: executor runs
of 64), on a real registry of one shipped model. The process's CPU per request over `--blocks` alternating blocks
of `--rounds` rounds: the minimum is the least disturbed, the median the typical. What the server spends beyond
this is the transport (the echo row of `make bench`). Single-threaded but for the runs, so steadier than the
load runs; still compare variants in one sitting.

    python -m bench.inprocess --model forecast_sunspots --streams 64
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from seqserve_client import codec
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from service.dataplane import DataPlane, StreamSession
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.grpc.cut import OpenStreams
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.idle import IdleStreams
from service.grpc.triton.servicer import TritonServicer
from service.settings import Settings
from service.streaming import NativeStream


def _triton_request(model: str, input_name: str, x: np.ndarray, sequence: int, start: bool) -> bytes:
    request = tpb.ModelInferRequest(model_name=model)
    request.parameters["sequence_id"].int64_param = sequence
    if start:
        request.parameters["sequence_start"].bool_param = True
    request.inputs.add(name=input_name, datatype="FP32", shape=[1, *x.shape])
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


async def measure(models: Path, model: str, streams: int, rounds: int, blocks: int) -> dict[str, list[float]]:
    """CPU microseconds per request of each path, one value per block."""
    with tempfile.TemporaryDirectory(prefix="seqserve-inprocess-") as tmp:
        shutil.copytree(models / model, Path(tmp) / model)
        metrics = Metrics()
        settings = Settings.from_args(["--models", tmp, "--device", "cpu", "--intra-op-threads", "1"])
        registry = await Registry.load(settings, metrics)
        try:
            return await _blocks(DataPlane(registry, metrics), registry, settings, model, streams, rounds, blocks)
        finally:
            await registry.close()


async def _blocks(dataplane: DataPlane, registry: Registry, settings: Settings, model: str, streams: int,
                  rounds: int, blocks: int) -> dict[str, list[float]]:
    manifest = registry.get(model).manifest
    x = np.random.default_rng(0).standard_normal((10, manifest.input.features)).astype(np.float32)
    sessions = [NativeStream(StreamSession(dataplane)) for _ in range(streams)]
    for session in sessions:
        session.session.open(model, None)
    chunk = pb.StreamRequest(seq=1)
    codec.fill_tensor(chunk.chunk.input, x)
    native_bytes = chunk.SerializeToString()
    triton = TritonServicer(dataplane, settings, OpenStreams(), IdleStreams(streams))
    for i in range(streams):
        opening = tpb.ModelInferRequest.FromString(_triton_request(model, manifest.input.name, x, i + 1, True))
        await triton.start(opening, tpb.ModelInferResponse())
    later = [_triton_request(model, manifest.input.name, x, i + 1, False) for i in range(streams)]

    async def native(i: int) -> None:
        (await sessions[i].chunk(pb.StreamRequest.FromString(native_bytes))).SerializeToString()

    async def sequence(i: int) -> None:
        answer = tpb.ModelStreamInferResponse()
        await triton.start(tpb.ModelInferRequest.FromString(later[i]), answer.infer_response)
        answer.SerializeToString()

    paths: dict[str, Callable[[int], Awaitable[None]]] = {"native": native, "triton": sequence}
    results: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(blocks):
        for name, one in paths.items():
            began = time.process_time_ns()
            for _ in range(rounds):
                if streams == 1:  # as a stream's own task awaits it: no task per request
                    await one(0)
                else:
                    await asyncio.gather(*(one(i) for i in range(streams)))
            results[name].append((time.process_time_ns() - began) / rounds / streams / 1000)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--model", default="forecast_sunspots")
    p.add_argument("--streams", type=int, default=64, help="sessions with a request in flight at once")
    p.add_argument("--rounds", type=int, default=40, help="rounds (one request per session) per block")
    p.add_argument("--blocks", type=int, default=12, help="alternating native / Triton blocks")
    a = p.parse_args(argv)
    results = asyncio.run(measure(a.models, a.model, a.streams, a.rounds, a.blocks))
    for name, values in results.items():
        print(f"{a.model} x{a.streams} {name}: min {min(values):.1f} us, median {statistics.median(values):.1f} us "
              "of CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
