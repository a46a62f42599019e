"""`make soak`: the server under churning clients for a long time; does its memory stay flat?

A real `python -m service` serves `--streams` concurrent native streams from `--workers` client processes. Each
stream is a short session (open, 1..40 chunks, then end, or abandon it mid-way without ending); every
`--kill-every` seconds one worker is SIGKILLed (its streams vanish with their connections) and replaced. Triton
sequences started and never ended ride along, left to the idle eviction. The server's RSS is sampled every
`--sample` seconds; the report is the least-squares slope after the warm-up (target: < 1 MiB per 10 minutes)
and the sessions gauge once the clients have gone (target: 0).

    python scripts/soak.py --minutes 30 --streams 256          # what `make soak` runs

Recycling (issue 23): `--server-workers 2 --recycle-after N` serves with `--workers 2 --recycle-after N` and a private
`redis-server` as the shared session store (`--session-store` to name another), so that workers are replaced
under the churn; RSS is then the sum over the server's processes, which jumps by a whole worker while a replacement
and the worker it replaces both run, so the leak figures are per process (scripts/soak_rss.py): the sum sampled only
while exactly N workers serve (`steady_slope_mib_per_10min`), the parent's own (`parent_slope_mib_per_10min`) and
each worker's RSS at one age across generations (`generation_slope_mib_per_10min`). Every stream checks its
outputs: the k-th chunk's outputs must be the same in every session (the same chunk each time, from the initial
state), so a chunk lost or applied twice across a resume shows as a mismatch (`lost`, `duplicated`, target 0).

    make soak SOAK_FLAGS="--server-workers 2 --recycle-after 20000"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import signal
import sys
import time
import urllib.request
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soak_rss import ProcessRss, slope_mib_per_10min  # noqa: E402

from bench.procs import real_server  # noqa: E402
from seqserve_client import AsyncClient, ServerError  # noqa: E402

MODEL, FEATURES = "vowels_lstm", 12
IDLE_TIMEOUT_S = 5  # the server's session idle timeout during the soak: abandoned Triton sequences go quickly


async def churn(target: str, streams: int, seed: int, abandon: float, mismatches: SynchronizedArray[int]) -> None:
    """`streams` concurrent loops of short sessions, a share `abandon` of them abandoned mid-way; forever."""
    rng = random.Random(seed)
    chunk = np.random.default_rng(0).standard_normal((10, FEATURES)).astype(np.float32)  # the same in every worker
    expected: dict[int, np.ndarray] = {}  # the k-th chunk's outputs, as first seen
    async with AsyncClient(target) as client:
        async def loop() -> None:
            while True:
                try:
                    stream = await client.stream(MODEL).open()
                    for k in range(rng.randint(1, 40)):
                        got = next(iter((await stream.send(chunk)).values()))
                        if not np.allclose(expected.setdefault(k, got), got, atol=1e-4, rtol=0):
                            with mismatches.get_lock():
                                mismatches[kind_of_mismatch(expected, k, got)] += 1
                    if rng.random() < abandon:
                        stream.cancel()  # abandoned: no end, the call cancelled
                    else:
                        await stream.close()
                except ServerError:
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(loop() for _ in range(streams)))


def kind_of_mismatch(expected: dict[int, np.ndarray], k: int, got: np.ndarray) -> int:
    """0: a chunk lost (the k-th answer is the (k-1)-th's: one fewer applied), 1: applied twice (the (k+1)-th's),
    2: neither. The same chunk every time, so the answer says how many chunks the state has taken."""
    for kind, other in ((0, k - 1), (1, k + 1)):
        if other in expected and np.allclose(expected[other], got, atol=1e-4, rtol=0):
            return kind
    return 2


def worker(target: str, streams: int, seed: int, abandon: float, mismatches: SynchronizedArray[int]) -> None:
    asyncio.run(churn(target, streams, seed, abandon, mismatches))


def triton_leftovers(target: str, count: int, seed: int) -> None:
    """Start `count` Triton sequences and never end them (the idle eviction must free them)."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(target)
    x = np.zeros((1, 3, FEATURES), np.float32)
    for i in range(count):
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(MODEL, [tensor], sequence_id=seed * 100_000 + i + 1, sequence_start=True)
    client.close()


def scrape(metrics_url: str) -> str:
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        return reply.read().decode()


def metric_sum(text: str, prefix: str) -> float:
    """The sum of the samples in the `/metrics` text whose line starts with `prefix` (a name and some labels)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def sessions(metrics_url: str) -> float:
    return metric_sum(scrape(metrics_url), "seqserve_active_sessions{")


def malloc_mib(text: str, kind: str) -> float:
    """malloc's own account of the server's heap (`seqserve_malloc_bytes`; 0 where the C library is not glibc)."""
    return metric_sum(text, f'seqserve_malloc_bytes{{kind="{kind}"') / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/soak.py", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--streams", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=None, help="seconds left out of the slope (default: 1/6)")
    p.add_argument("--kill-every", type=float, default=30.0,
                   help="seconds between SIGKILLs of a client worker (0: none, and no Triton leftovers either)")
    p.add_argument("--abandon", type=float, default=0.2, help="the share of sessions cancelled instead of ended")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--server-workers", type=int, default=1, help="server processes (--workers of the server)")
    p.add_argument("--recycle-after", type=int, default=0,
                   help="the server's --recycle-after (needs --server-workers 2+)")
    p.add_argument("--session-store", default=None,
                   help="the server's --session-store (default with --server-workers 2+: a private redis-server)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: the server stops, the client workers go too
    duration = args.minutes * 60
    warmup = duration / 6 if args.warmup is None else args.warmup
    context = multiprocessing.get_context("spawn")
    flags = ["--session-idle-timeout", str(IDLE_TIMEOUT_S), "--intra-op-threads", "1"]
    redis = None
    if args.server_workers > 1:
        flags += ["--workers", str(args.server_workers), "--recycle-after", str(args.recycle_after)]
        if args.session_store is None:
            from bench.redis_server import RedisServer

            redis = RedisServer()
            args.session_store = redis.url
    if args.session_store:
        flags += ["--session-store", args.session_store]
    mismatches = context.Array("i", 3)  # lost, duplicated, other (see kind_of_mismatch)
    try:
        return _soak(args, flags, duration, warmup, context, mismatches)
    finally:
        if redis is not None:
            redis.stop()


def _soak(args: argparse.Namespace, flags: list[str], duration: float, warmup: float,
          context: multiprocessing.context.SpawnContext, mismatches: SynchronizedArray[int]) -> int:
    with real_server(ROOT / "models", flags) as server:
        assert server.metrics_url is not None
        per_worker = max(1, args.streams // args.workers)
        workers = [context.Process(target=worker, args=(server.target, per_worker, i, args.abandon, mismatches),
                                   daemon=True) for i in range(args.workers)]
        for w in workers:
            w.start()
        began = time.monotonic()
        rss = ProcessRss(server.pid, args.server_workers)
        in_use: list[tuple[float, float]] = []  # malloc's bytes in use: a leak grows them, fragmentation does not
        free: list[tuple[float, float]] = []
        next_kill = began + args.kill_every if args.kill_every > 0 else math.inf
        seed, killed = args.workers, 0
        while (now := time.monotonic()) - began < duration:
            rss.sample(now - began)
            text = scrape(server.metrics_url)
            in_use.append((now - began, malloc_mib(text, "in_use")))
            free.append((now - began, malloc_mib(text, "free")))
            print(f"[soak] {now - began:7.0f} s  RSS {rss.total[-1][1]:7.1f} MiB ({rss.last_count} workers)  "
                  f"malloc in use {in_use[-1][1]:6.1f} "
                  f"free {free[-1][1]:5.1f} MiB  sessions {metric_sum(text, 'seqserve_active_sessions{'):5.0f}",
                  file=sys.stderr, flush=True)
            if now >= next_kill:
                victim = workers.pop(random.Random(seed).randrange(len(workers)))
                victim.kill()  # SIGKILL: its connections just drop
                victim.join()
                killed += 1
                workers.append(context.Process(
                    target=worker, args=(server.target, per_worker, seed, args.abandon, mismatches), daemon=True))
                workers[-1].start()
                triton_leftovers(server.target, 16, seed)
                seed += 1
                next_kill = now + args.kill_every
            time.sleep(args.sample)
        for w in workers:
            w.kill()
            w.join()
        # The clients are gone: every session must end (disconnects now, Triton leftovers by idle eviction).
        settle_deadline = time.monotonic() + 6 * IDLE_TIMEOUT_S
        while (left := sessions(server.metrics_url)) > 0 and time.monotonic() < settle_deadline:
            time.sleep(1.0)
        report = {
            "minutes": args.minutes, "streams": per_worker * args.workers, "abandon": args.abandon,
            "workers_killed": killed,
            "rss_first_mib": rss.total[0][1], "rss_last_mib": rss.total[-1][1],
            "rss_max_mib": max(s[1] for s in rss.total),
            "slope_mib_per_10min_after_warmup": slope_mib_per_10min(rss.total, warmup), "warmup_s": warmup,
            **rss.report(warmup),
            "malloc_in_use_slope_mib_per_10min": slope_mib_per_10min(in_use, warmup),
            "malloc_free_slope_mib_per_10min": slope_mib_per_10min(free, warmup),
            "samples": len(rss.total), "sessions_at_end": left,
            "requests_served": metric_sum(scrape(server.metrics_url), "seqserve_requests_total{"),
            "server_workers": args.server_workers, "recycle_after": args.recycle_after,
            "mismatches": sum(mismatches), "lost": mismatches[0], "duplicated": mismatches[1],
            "server_processes_seen": len(rss.ages),
        }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps({**report, "rss_samples": rss.total, "steady_rss_samples": rss.steady,
                                         "parent_rss_samples": rss.parent,
                                         "worker_samples": {str(pid): {"born": rss.born[pid], "age_mib": ages}
                                                            for pid, ages in rss.ages.items()},
                                         "malloc_in_use_samples": in_use,
                                         "malloc_free_samples": free}, indent=2))
    return 0 if left == 0 and sum(mismatches) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
