"""`python -m bench.store`: what write-through to Redis costs against the memory store, engine level.

For each model (the shipped `vowels_lstm` and an untrained 2x256 LSTM exported at bench time) and each store
(`memory`; `redis://` on a private `redis-server` on this machine), `--streams` sessions step concurrently for
`--duration` seconds, each awaiting its chunk before sending the next (as streaming clients do). Reported: chunks
per second, chunk latency p50 / p99, and the Redis round trips per model run (batch). The engine is driven
directly (no gRPC), so the difference is the store's alone. Results go to stdout (a table) and `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.models import SHIPPED
from bench.redis_server import RedisServer
from modelrepo import Manifest, latest_versions
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.state.store import new_token, stream_key
from service.settings import Settings

REFERENCE = "bench_lstm_2x256"
WARM_UP_S = 0.5


@dataclass(frozen=True)
class Result:
    model: str
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
    return Result(name, store, streams, len(latencies) / duration, float(ms[0]), float(ms[1]),
                  trips / max(runs, 1), len(latencies) / max(runs, 1))


def _trips(registry: Registry) -> int:
    return 0 if registry.store is None else registry.store.round_trips


def table(results: list[Result]) -> str:
    lines = ["| model | store | streams | chunks/s | p50 ms | p99 ms | Redis round trips / batch | mean batch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.model} | {r.store} | {r.streams} | {r.chunks_per_s:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{r.round_trips_per_batch:.2f} | {r.mean_batch:.1f} |" for r in results]
    by = {(r.model, r.store): r for r in results}
    for name in dict.fromkeys(r.model for r in results):
        if (name, "memory") in by and (name, "redis") in by:
            cost = 1 - by[(name, "redis")].chunks_per_s / by[(name, "memory")].chunks_per_s
            lines.append(f"\n{name}: write-through costs {cost:.1%} of throughput")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="where the shipped models are")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--chunk", type=int, default=10, help="steps per chunk")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per run")
    p.add_argument("--no-reference", action="store_true", help="only vowels_lstm (no torch needed)")
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
            for name in names:
                for store in ("memory", redis.url):
                    settings = Settings.model_validate(
                        {"models": root, "device": "cpu", "session_store": store, "max_sessions": max(1024, a.streams)}
                    )
                    results.append(asyncio.run(measure(settings, name, a.streams, a.chunk, a.duration)))
                    print(f"measured {name} on {results[-1].store}", file=sys.stderr)
    finally:
        redis.stop()
    print(table(results))
    if a.json is not None:
        a.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
