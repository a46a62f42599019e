"""Load and unload one model many times in a registry (what `RepositoryModelLoad/Unload` do) and print the RSS:
memory must come back (issue 19). `python scripts/model_churn.py [--model vowels_lstm] [--cycles 50]`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
from pathlib import Path

from modelrepo import latest_versions
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.memory import trim
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def churn(model: str, cycles: int, every: int) -> list[tuple[int, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        shipped = latest_versions(ROOT / "models")[model]
        shutil.copytree(shipped.path, Path(tmp) / model / str(shipped.version))
        settings = Settings(models=Path(tmp), device="cpu", intra_op_threads=1, model_control_mode="explicit")
        registry = await Registry.load(settings, Metrics())
        try:
            samples = []
            for cycle in range(cycles + 1):
                if cycle % every == 0:
                    gc.collect()
                    trim()  # what the server's --malloc-trim-interval does: free pages back to the OS
                    samples.append((cycle, rss_mib()))
                await registry.control.unload(model)
                await registry.control.load(model)
            return samples
        finally:
            await registry.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vowels_lstm")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    samples = asyncio.run(churn(args.model, args.cycles, args.every))
    for cycle, rss in samples:
        print(f"after {cycle:4d} unload+load cycles: RSS {rss:7.1f} MiB")
    print(f"growth from cycle {samples[1][0]} to {samples[-1][0]}: {samples[-1][1] - samples[1][1]:+.1f} MiB "
          f"(the first {samples[1][0]} cycles: {samples[1][1] - samples[0][1]:+.1f} MiB)")


if __name__ == "__main__":
    main()
