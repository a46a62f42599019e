"""`scripts/soak_rss.py`: the soak's RSS per process. The summed RSS of a recycling server jumps while a replacement
and the worker it replaces both run; the steady figure samples only N workers, the generation figure compares
workers at one age, and neither leaves a process out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import soak_rss


def child() -> subprocess.Popen[bytes]:
    """A child of this process that lives until its stdin closes."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_the_steady_sum_is_sampled_only_with_exactly_n_workers() -> None:
    rss = soak_rss.ProcessRss(os.getpid(), workers=2)
    procs = [child(), child()]
    try:
        rss.sample(0.0)
        procs.append(child())  # a replacement started, the old one not gone yet
        rss.sample(1.0)
        gone = procs.pop(0)
        assert gone.stdin is not None
        gone.stdin.close()
        gone.wait()
        rss.sample(2.0)
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
            p.wait()
    assert [t for t, _ in rss.total] == [0.0, 1.0, 2.0]
    assert [t for t, _ in rss.steady] == [0.0, 2.0]
    assert rss.total[1][1] > rss.total[0][1] and rss.total[1][1] > rss.parent[1][1]
    report = rss.report(warmup=0.0)
    assert report["most_processes"] == 3 and report["processes_at_end"] == 2
    assert len(rss.ages) == 3  # every worker seen, with its age
    assert rss.ages[procs[-1].pid][0][0] == 0.0 and rss.ages[procs[0].pid][-1][0] == 2.0


def generations(growth_per_generation: float) -> soak_rss.ProcessRss:
    """Workers born every 100 s, living 100 s, each 10 MiB larger at 100 s than at birth."""
    rss = soak_rss.ProcessRss(1, workers=2)
    for g in range(10):
        pid, born = 1000 + g, 100.0 * g
        rss.born[pid] = born
        rss.ages[pid] = [(a, 150.0 + g * growth_per_generation + a / 10) for a in range(0, 101, 10)]
    return rss


def test_the_generation_figure_compares_workers_at_one_age() -> None:
    assert generations(0.0).report(warmup=0.0)["generation_slope_mib_per_10min"] == pytest.approx(0.0, abs=1e-9)
    growing = generations(1.0).report(warmup=150.0)  # each worker 1 MiB larger than the one before: 6 MiB/10 min
    assert growing["generation_slope_mib_per_10min"] == pytest.approx(6.0)
    assert growing["generations"] == 8  # the first two, born in the warm-up, left out
    assert growing["generation_at_age_s"] == 100.0


def test_the_slope_leaves_the_warm_up_out() -> None:
    samples = [(t, 100.0 if t < 60 else 100.0 + t / 600) for t in range(0, 600, 10)]
    assert soak_rss.slope_mib_per_10min(samples, warmup=60) == pytest.approx(1.0)
