"""Quick native-API throughput: N concurrent streams, each sending chunks lock-step for a fixed time.

    python scripts/throughput.py --target 127.0.0.1:8001 --model vowels_lstm --streams 1 64 --chunk 10 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from seqserve_client import AsyncClient


async def one_stream(client: AsyncClient, model: str, chunk: np.ndarray, until: float) -> int:
    sent = 0
    async with client.stream(model) as stream:
        while time.perf_counter() < until:
            await stream.send(chunk)
            sent += 1
    return sent


async def measure(target: str, model: str, streams: int, steps: int, seconds: float) -> float:
    async with AsyncClient(target) as client:
        features = (await client.model(model)).input.shape[-1]
        chunk = np.random.default_rng(0).standard_normal((steps, features)).astype(np.float32)
        start = time.perf_counter()
        counts = await asyncio.gather(*(one_stream(client, model, chunk, start + seconds) for _ in range(streams)))
        return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:8001")
    parser.add_argument("--model", default="vowels_lstm")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--chunk", type=int, default=10, help="steps per chunk")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for streams in args.streams:
        rate = asyncio.run(measure(args.target, args.model, streams, args.chunk, args.seconds))
        print(f"{args.model} chunk {args.chunk}: {streams:>3} streams -> {rate:8.0f} chunks/s "
              f"({rate * args.chunk:.0f} steps/s)")


if __name__ == "__main__":
    main()
