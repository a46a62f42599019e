"""The bench's reading of the server's batch-size histogram: run counts kept, the exact sum of sizes matched."""

from __future__ import annotations

import math

from bench.scrape import Histogram, batch_sizes

BOUNDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, math.inf)


def histogram_of(sizes: list[int]) -> Histogram:
    buckets = tuple((le, float(sum(1 for s in sizes if s <= le))) for le in BOUNDS)
    return Histogram(buckets, float(sum(sizes)), float(len(sizes)))


def test_single_sizes_are_recovered_exactly() -> None:
    assert batch_sizes(histogram_of([1] * 5 + [2] * 3), largest=64) == {1: 5, 2: 3}
    assert batch_sizes(histogram_of([64] * 10), largest=64) == {64: 10}


def test_estimate_keeps_runs_and_matches_the_sum() -> None:
    sizes = [1] * 4 + [6, 7, 8] + [20, 25, 30, 31] + [50] * 5
    estimated = batch_sizes(histogram_of(sizes), largest=64)
    assert sum(estimated.values()) == len(sizes)
    assert abs(sum(s * n for s, n in estimated.items()) - sum(sizes)) <= len(sizes) / 2
    assert all(1 <= s <= 64 for s in estimated)


def test_difference_of_two_scrapes_is_the_run_in_between() -> None:
    before, after = histogram_of([1, 1, 8]), histogram_of([1, 1, 8, 32, 32])
    assert batch_sizes(after.minus(before), largest=64) == {32: 2}
