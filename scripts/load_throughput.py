"""Serving goes on while models load (issue 19): chunks/s of live native streams before, during and after a loop of
unloading and loading another model through `UnloadModel` / `LoadModel` on the same server.

    python scripts/load_throughput.py [--streams 16] [--seconds 5] [--model vowels_gru] [--churn vowels_lstm]
                                      [--cycles N | --rounds N]

The server runs in its own process (CPU, `--model-control-mode explicit`) on a copy of the two shipped models;
each stream sends 10-step chunks lock-step. Prints one line per phase and the ratio during / before.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from modelrepo import Manifest, latest_versions
from seqserve_client import AsyncClient
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(target: str, deadline: float) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SeqServeStub(channel)
        while time.monotonic() < deadline:
            try:
                await stub.ListModels(pb.ListModelsRequest(), timeout=1)
                return
            except grpc.RpcError:
                await asyncio.sleep(0.2)
    raise SystemExit("the server did not start")


async def drive(target: str, model: str, features: int, count: list[int], stop: asyncio.Event) -> None:
    x = np.random.default_rng(0).standard_normal((CHUNK, features)).astype(np.float32)
    async with AsyncClient(target) as client, client.stream(model) as stream:
        while not stop.is_set():
            await stream.send(x)
            count[0] += 1


async def churn(target: str, model: str, stop: asyncio.Event, cycles: int = 0) -> int:
    """Unload and load `model` until `stop` (or `cycles` times); how many cycles."""
    loads = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SeqServeStub(channel)
        while not stop.is_set() and (not cycles or loads < cycles):
            await stub.UnloadModel(pb.UnloadModelRequest(model=model))
            await stub.LoadModel(pb.LoadModelRequest(model=model))
            loads += 1
    return loads


async def paired(target: str, args: argparse.Namespace, count: list[int]) -> None:
    """`--rounds`: each round, one unload+load cycle, then a window of the same length without; the ratio of the
    two rates per round and their median (pairs close in time cancel the drift of a shared machine's load)."""
    ratios = []
    for round_ in range(args.rounds):
        start, first = time.perf_counter(), count[0]
        await churn(target, args.churn, asyncio.Event(), 1)
        took = time.perf_counter() - start
        during = (count[0] - first) / took
        first = count[0]
        await asyncio.sleep(took)
        without = (count[0] - first) / (time.perf_counter() - start - took)
        ratios.append(during / without)
        print(f"round {round_ + 1}: load of {args.churn} {took:.2f} s: {during:7.0f} chunks/s during, "
              f"{without:7.0f} after; ratio {ratios[-1]:.2f}", flush=True)
    print(f"median during / without over {args.rounds} rounds: {statistics.median(ratios):.2f}")


async def measure(target: str, args: argparse.Namespace, features: int) -> None:
    count, stop = [0], asyncio.Event()
    streams = [asyncio.create_task(drive(target, args.model, features, count, stop)) for _ in range(args.streams)]
    await asyncio.sleep(1.0)  # warm: every stream open and running
    if args.rounds:
        await paired(target, args, count)
        stop.set()
        await asyncio.gather(*streams)
        return
    rates = {}
    for phase in ("before", "during", "after"):
        stop_churn = asyncio.Event()
        looping = phase == "during" and not args.cycles
        churning = asyncio.create_task(churn(target, args.churn, stop_churn)) if looping else None
        start, first = time.perf_counter(), count[0]
        if phase == "during" and args.cycles:  # the window is exactly the time the cycles took
            await churn(target, args.churn, stop_churn, args.cycles)
        else:
            await asyncio.sleep(args.seconds)
        took = time.perf_counter() - start
        rates[phase] = (count[0] - first) / took
        loads = ""
        if phase == "during":
            stop_churn.set()
            done = await churning if churning is not None else args.cycles
            loads = f" ({done} unload+load cycles of {args.churn} in {took:.2f} s meanwhile)"
        print(f"{phase:>6}: {rates[phase]:8.0f} chunks/s over {args.streams} streams{loads}", flush=True)
    stop.set()
    await asyncio.gather(*streams)
    print(f"during / before: {rates['during'] / rates['before']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--model", default="vowels_gru")
    parser.add_argument("--churn", default="vowels_lstm")
    parser.add_argument("--rounds", type=int, default=0, help="paired rounds instead of the three phases: one load, "
                        "then as long without (default 0)")
    parser.add_argument("--cycles", type=int, default=0, help="during: exactly this many unload+load cycles, the "
                        "window their duration (default 0: cycles for --seconds)")
    args = parser.parse_args()
    shipped = latest_versions(ROOT / "models")
    with tempfile.TemporaryDirectory() as tmp:
        for name in (args.model, args.churn):
            shutil.copytree(shipped[name].path, Path(tmp) / name / str(shipped[name].version))
        port, metrics = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "client")])}
        server = subprocess.Popen([sys.executable, "-m", "service", "--models", tmp, "--port", str(port),
                                   "--http-port", "0", "--metrics-port", str(metrics), "--host", "127.0.0.1",
                                   "--device", "cpu", "--model-control-mode", "explicit", "--log-level", "WARNING"],
                                  env=env)
        try:
            target = f"127.0.0.1:{port}"
            asyncio.run(wait_ready(target, time.monotonic() + 120))
            features = Manifest.load(shipped[args.model].manifest_path).input.features
            asyncio.run(measure(target, args, features))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
