"""`python -m bench.inprocess` on a shipped model: both paths measured, every request answered."""

from __future__ import annotations

from bench.inprocess import measure
from tests.service.helpers import SHIPPED


async def test_both_paths_are_measured_per_request() -> None:
    results = await measure(SHIPPED, "forecast_sunspots", streams=3, rounds=2, blocks=2)
    assert set(results) == {"native", "triton"}
    assert all(len(values) == 2 and all(v > 0 for v in values) for values in results.values())
