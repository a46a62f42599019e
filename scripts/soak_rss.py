"""The soak's RSS per process: the server's parent and each of its workers, with their ages.

Under recycling (`--workers N --recycle-after ...`) the sum over the server's processes jumps by a whole worker
while a replacement starts and the worker it replaces drains, and a young worker is smaller than an old one, so the
summed slope is no leak figure. Three figures that are, none of which leaves a process out:
- `steady`: the sum sampled only when exactly N workers run (none starting, none draining), and its slope;
- `parent`: the parent's own RSS and slope (it outlives every worker);
- `generations`: each worker's RSS at one age (`at_age_s`: most workers reach it), against when it started; its
  slope says whether each new worker is bigger than the one before.
`most_processes` and `processes_at_end` show leftover workers (a drained one that never exits).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from bench.procs import rss_bytes


def children(pid: int) -> set[int]:
    """The children of a process, whichever of its threads started them."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def slope_mib_per_10min(samples: list[tuple[float, float]], warmup: float) -> float:
    """The least-squares slope of the samples after `warmup` seconds."""
    steady = [s for s in samples if s[0] >= warmup]
    t = np.array([s[0] for s in steady])
    mib = np.array([s[1] for s in steady])
    return float(np.polyfit(t, mib, 1)[0] * 600) if len(steady) >= 2 else 0.0


class ProcessRss:
    """Samples a server's RSS per process; `workers` is how many it serves with (1: no children)."""

    def __init__(self, pid: int, workers: int) -> None:
        self.pid, self.workers = pid, workers
        self.total: list[tuple[float, float]] = []
        self.parent: list[tuple[float, float]] = []
        self.steady: list[tuple[float, float]] = []
        self.born: dict[int, float] = {}  # worker pid -> when first seen
        self.ages: dict[int, list[tuple[float, float]]] = {}  # worker pid -> (age, MiB) samples
        self.most = 0
        self.last_count = 0

    def sample(self, t: float) -> float:
        """Read every process once at `t` (seconds into the run); the summed MiB."""
        parent = rss_bytes(self.pid) / 2**20
        rss: dict[int, float] = {}
        for child in children(self.pid):
            with contextlib.suppress(OSError, RuntimeError):  # gone, or a zombie (no VmRSS) about to be reaped
                rss[child] = rss_bytes(child) / 2**20
        total = parent + sum(rss.values())
        self.total.append((t, total))
        self.parent.append((t, parent))
        if self.workers > 1 and len(rss) == self.workers:
            self.steady.append((t, total))
        for child, mib in rss.items():
            self.ages.setdefault(child, []).append((t - self.born.setdefault(child, t), mib))
        self.most, self.last_count = max(self.most, len(rss)), len(rss)
        return total

    def at_age(self, warmup: float) -> tuple[float, list[tuple[float, float]]]:
        """(age, [(born, MiB at that age)]) over the workers born after `warmup` (the first ones are left out: they
        warm up with the run); the age is the lower quartile of their ages when last seen."""
        lives = {p: s for p, s in self.ages.items() if self.born[p] >= warmup and s}
        if not lives:
            return 0.0, []
        age = float(np.percentile([s[-1][0] for s in lives.values()], 25))
        points = []
        for p, s in lives.items():
            upto = [mib for a, mib in s if a <= age]
            if s[-1][0] >= age and upto:
                points.append((self.born[p], upto[-1]))
        return age, sorted(points)

    def report(self, warmup: float) -> dict[str, object]:
        age, points = self.at_age(warmup)
        return {
            "parent_rss_first_mib": self.parent[0][1] if self.parent else 0.0,
            "parent_rss_last_mib": self.parent[-1][1] if self.parent else 0.0,
            "parent_slope_mib_per_10min": slope_mib_per_10min(self.parent, warmup),
            "steady_samples": len([s for s in self.steady if s[0] >= warmup]),
            "steady_slope_mib_per_10min": slope_mib_per_10min(self.steady, warmup),
            "generations": len(points), "generation_at_age_s": age,
            "generation_rss_first_mib": points[0][1] if points else 0.0,
            "generation_rss_last_mib": points[-1][1] if points else 0.0,
            "generation_slope_mib_per_10min": slope_mib_per_10min(points, warmup),
            "most_processes": self.most, "processes_at_end": self.last_count,
        }
