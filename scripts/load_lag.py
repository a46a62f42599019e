"""How late the event loop runs while models load in the loader thread (issue 19: loading happens off the loop).

    python scripts/load_lag.py [--model silero_vad] [--cycles 3] [--seconds 3]

A coroutine sleeps 1 ms over and over and records how much later than asked it wakes, first with nothing else
going on (for --seconds), then while the model is unloaded and loaded --cycles times in a registry (CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from modelrepo import latest_versions
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - start - 0.001)


async def measure(model: str, cycles: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shipped = latest_versions(ROOT / "models")[model]
        shutil.copytree(shipped.path, Path(tmp) / model / str(shipped.version))
        registry = await Registry.load(Settings(models=Path(tmp), device="cpu", model_control_mode="explicit"),
                                       Metrics())
        try:
            for phase in ("idle", "loading"):
                stop, lags = asyncio.Event(), []
                task = asyncio.create_task(lag(stop, lags))
                start = time.perf_counter()
                if phase == "loading":
                    for _ in range(cycles):
                        await registry.control.unload(model)
                        await registry.control.load(model)
                else:
                    await asyncio.sleep(seconds)
                stop.set()
                await task
                lags.sort()
                p50, p99 = lags[len(lags) // 2] * 1e3, lags[int(len(lags) * 0.99)] * 1e3
                print(f"{phase:>7}: {time.perf_counter() - start:5.2f} s, loop late by p50 {p50:.2f} ms, "
                      f"p99 {p99:.2f} ms, max {lags[-1] * 1e3:.1f} ms ({len(lags)} wake-ups)")
        finally:
            await registry.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="silero_vad")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(measure(args.model, args.cycles, args.seconds))


if __name__ == "__main__":
    main()
