"""Bytes the server's heap keeps per native session, for sessions ended cleanly and for sessions the client cancelled.

A real `python -m service`; phases of `--sessions` sessions each (open, `--chunks` chunks, then `end` or a client
cancel), alternated, after a warm-up of both kinds. Before and after each phase the server's `/metrics` gives malloc's
bytes in use (`seqserve_malloc_bytes{kind="in_use"}`, glibc only); the growth divided by the sessions is the figure.
A cancelled stream leaves gRPC's receive batch unfinished; grpcio's asyncio layer (1.85 and earlier) then never frees
that batch's operation array, which this measures from outside (docs/internals.md, "Memory under churn").

    python scripts/leak_per_session.py --sessions 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soak import malloc_mib, scrape  # noqa: E402  (scripts/ is on the path: this file's folder)

from bench.procs import real_server  # noqa: E402
from seqserve_client import AsyncClient  # noqa: E402

MODEL, FEATURES, CONCURRENCY = "vowels_lstm", 12, 64


def in_use_bytes(metrics_url: str) -> float:
    text = scrape(metrics_url)
    if "seqserve_malloc_bytes{" not in text:
        raise SystemExit("the server shows no seqserve_malloc_bytes: its C library is not glibc")
    return malloc_mib(text, "in_use") * 2**20


async def phase(target: str, sessions: int, chunks: int, cancel: bool) -> None:
    """`sessions` sessions over `CONCURRENCY` concurrent streams of one connection."""
    chunk = np.zeros((10, FEATURES), np.float32)
    left = sessions
    async with AsyncClient(target) as client:
        async def loop() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                stream = await client.stream(MODEL).open()
                for _ in range(chunks):
                    await stream.send(chunk)
                if cancel:
                    stream.cancel()
                else:
                    await stream.close()

        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/leak_per_session.py", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20000, help="sessions per phase")
    p.add_argument("--chunks", type=int, default=3, help="chunks per session")
    p.add_argument("--rounds", type=int, default=2, help="pairs of phases (ended, cancelled)")
    args = p.parse_args(argv)
    rows = []
    with real_server(ROOT / "models", ["--session-idle-timeout", "5", "--intra-op-threads", "1"]) as server:
        assert server.metrics_url is not None
        for cancel in (False, True):  # warm-up: caches, pools and free lists reach their working size
            asyncio.run(phase(server.target, args.sessions // 10, args.chunks, cancel))
        for _ in range(args.rounds):
            for cancel in (False, True):
                before = in_use_bytes(server.metrics_url)
                asyncio.run(phase(server.target, args.sessions, args.chunks, cancel))
                grown = in_use_bytes(server.metrics_url) - before
                rows.append({"ending": "cancelled" if cancel else "ended", "sessions": args.sessions,
                             "chunks": args.chunks, "in_use_growth_kib": round(grown / 1024),
                             "bytes_per_session": round(grown / args.sessions, 1)})
                print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
