"""`python -m bench.store`: what write-through to Redis costs against the memory store, at two levels.

For each model (the shipped `vowels_lstm` and an untrained 2x256 LSTM exported at bench time) and each store
(`memory`; `redis://` on a private `redis-server` on this machine), `--streams` sessions step concurrently for
`--duration` seconds, each awaiting its chunk before sending the next (as streaming clients do):

- `server`: the real server (`python -m service --session-store ...`) under the load generator's native streams,
  what a user sees (the gRPC work per chunk is part of every cycle, so the store's share is smaller);
- `engine`: the engine driven directly in one process, no gRPC: the store's cost alone, the strictest view.

Reported: chunks per second, chunk latency p50 / p99, the mean batch and the Redis round trips per model run
(batch). Results go to stdout (a table) and `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench import procs, serverstats
from bench.models import SHIPPED
from bench.redis_server import RedisServer
from modelrepo import Manifest, latest_versions
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.state.store import new_token, stream_key
from service.loadtest import LoadConfig, run_load
from service.settings import Settings

REFERENCE = "bench_lstm_2x256"
WARM_UP_S = 0.5


@dataclass(frozen=True)
class Result:
    model: str
    level: str  # "server" (through gRPC) or "engine" (in-process)
    store: str
    streams: int
    chunks_per_s: float
    p50_ms: float
    p99_ms: float
    round_trips_per_batch: float
    mean_batch: float


def export_reference(root: Path, like: Manifest) -> None:
    """The 2x256 LSTM, untrained (speed does not depend on the weights); imports torch only here."""
    from training.config import ModelConfig
    from training.export import export_model
    from training.model import SequenceModel

    cfg = ModelConfig(cell="lstm", input_size=like.input.features, hidden_size=256, layers=2,
                      output_size=like.outputs[0].size)
    export_model(SequenceModel(cfg), root, REFERENCE, 1, description="bench only: untrained 2x256 LSTM")


async def measure(settings: Settings, name: str, streams: int, chunk: int, duration: float) -> Result:
    registry = await Registry.load(settings, Metrics())
    try:
        model = registry.get(name)
        x = np.random.default_rng(0).standard_normal((chunk, model.manifest.input.features)).astype(np.float32)
        sessions = []
        for _ in range(streams):
            if registry.store is None:
                sessions.append(model.open_session())
            else:  # what a native stream does with a store: keyed by its token, answers kept for a resume
                session = model.open_session(stream_key(model.name, model.version, new_token()))
                session.answers = True
                sessions.append(session)
        loop = asyncio.get_running_loop()
        start = loop.time()
        measured_from, until = start + WARM_UP_S, start + WARM_UP_S + duration
        latencies: list[float] = []
        marks: dict[str, tuple[int, int]] = {}

        async def drive(session_index: int) -> None:
            session = sessions[session_index]
            while (now := loop.time()) < until:
                if now >= measured_from and "begin" not in marks:
                    marks["begin"] = (model.stats().execution_count, _trips(registry))
                began = time.perf_counter()
                await session.step(x)
                if now >= measured_from:
                    latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(drive(i) for i in range(streams)))
        runs = model.stats().execution_count - marks["begin"][0]
        trips = _trips(registry) - marks["begin"][1]
        for session in sessions:
            session.close()
    finally:
        await registry.close()
    store = "memory" if settings.session_store == "memory" else "redis"
    ms = np.percentile(np.array(latencies) * 1e3, [50, 99])
    return Result(name, "engine", store, streams, len(latencies) / duration, float(ms[0]), float(ms[1]),
                  trips / max(runs, 1), len(latencies) / max(runs, 1))


def measure_server(root: Path, store: str, name: str, streams: int, chunk: int, duration: float) -> Result:
    """The real server with `store` under `streams` native streams of the load generator."""
    extra = [] if store == "memory" else ["--session-store", store]
    features = Manifest.load(latest_versions(root)[name].manifest_path).input.features
    with procs.real_server(root, extra) as server:
        before, trips = serverstats.snapshot(server.target, name), _scraped_trips(server.metrics_url)
        report = run_load(LoadConfig(target=server.target, model=name, streams=streams, chunk=chunk,
                                     duration_s=duration, warmup_s=WARM_UP_S, features=features, progress=False))
        view = serverstats.server_view(before, serverstats.snapshot(server.target, name))
        trips = _scraped_trips(server.metrics_url) - trips
    runs = sum(view.batch_sizes.values())
    return Result(name, "server", "memory" if store == "memory" else "redis", streams,
                  report.throughput_chunks_per_s, report.p50_ms, report.p99_ms, trips / max(runs, 1), view.mean_batch)


def _scraped_trips(metrics_url: str | None) -> float:
    """The server's store round trips so far, from its /metrics (0 with the memory store)."""
    assert metrics_url is not None
    with urllib.request.urlopen(metrics_url, timeout=30) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("seqserve_session_store_round_trips_total"))


def _trips(registry: Registry) -> int:
    return 0 if registry.store is None else registry.store.round_trips


def table(results: list[Result]) -> str:
    lines = ["| model | level | store | streams | chunks/s | p50 ms | p99 ms | Redis round trips / batch "
             "| mean batch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.model} | {r.level} | {r.store} | {r.streams} | {r.chunks_per_s:.0f} | {r.p50_ms:.2f} | "
              f"{r.p99_ms:.2f} | {r.round_trips_per_batch:.2f} | {r.mean_batch:.1f} |" for r in results]
    by = {(r.model, r.level, r.store): r for r in results}
    lines.append("")
    for name, level in dict.fromkeys((r.model, r.level) for r in results):
        if (name, level, "memory") in by and (name, level, "redis") in by:
            cost = 1 - by[(name, level, "redis")].chunks_per_s / by[(name, level, "memory")].chunks_per_s
            lines.append(f"{name} ({level}): write-through costs {cost:.1%} of throughput")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="where the shipped models are")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--chunk", type=int, default=10, help="steps per chunk")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per run")
    p.add_argument("--no-reference", action="store_true", help="only vowels_lstm (no torch needed)")
    p.add_argument("--levels", default="server,engine", help="server (through gRPC), engine (in-process) or both")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    redis = RedisServer()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="seqserve-bench-store-") as tmp:
            root = Path(tmp)
            lstm = latest_versions(a.models)[SHIPPED[0]]
            (root / SHIPPED[0]).mkdir()
            (root / SHIPPED[0] / str(lstm.version)).symlink_to(lstm.path.resolve())
            names = [SHIPPED[0]]
            if not a.no_reference:
                export_reference(root, Manifest.load(lstm.manifest_path))
                names.append(REFERENCE)
            levels = a.levels.split(",")
            for name in names:
                for level in ("server", "engine"):
                    if level not in levels:
                        continue
                    for store in ("memory", redis.url):  # side by side: the two stores one after the other
                        if level == "server":
                            results.append(measure_server(root, store, name, a.streams, a.chunk, a.duration))
                        else:
                            settings = Settings.model_validate({"models": root, "device": "cpu", "session_store": store,
                                                                "max_sessions": max(1024, a.streams)})
                            results.append(asyncio.run(measure(settings, name, a.streams, a.chunk, a.duration)))
                        print(f"measured {name} ({level}) on {results[-1].store}", file=sys.stderr)
    finally:
        redis.stop()
    print(table(results))
    if a.json is not None:
        a.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
