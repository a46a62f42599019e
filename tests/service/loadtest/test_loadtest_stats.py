"""HDR tallies: percentiles against a known distribution, merging, and the bytes that cross processes."""

from __future__ import annotations

import numpy as np
import pytest

from service.loadtest.stats import Tally, max_ms, merge_all, percentile_ms


def uniform_tally(low_us: int, high_us: int) -> Tally:
    tally = Tally()
    for us in range(low_us, high_us + 1):
        tally.record_ok(us / 1e6, steps=10)
    return tally


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.0, 99.9])
def test_percentiles_of_a_uniform_distribution_within_hdr_precision(percentile: float) -> None:
    tally = uniform_tally(1, 100_000)  # 1 us .. 100 ms, each value once
    expected_ms = percentile / 100 * 100.0
    assert percentile_ms(tally.histogram, percentile) == pytest.approx(expected_ms, rel=1e-3)
    assert max_ms(tally.histogram) == pytest.approx(100.0, rel=1e-3)


def test_percentiles_of_an_exponential_sample_match_numpy() -> None:
    rng = np.random.default_rng(7)
    latencies_s = rng.exponential(0.004, size=50_000) + 0.0005
    tally = Tally()
    for x in latencies_s:
        tally.record_ok(float(x), steps=1)
    for p in (50.0, 90.0, 99.0):
        assert percentile_ms(tally.histogram, p) == pytest.approx(np.percentile(latencies_s, p) * 1e3, rel=2e-3)


def test_out_of_range_latencies_are_clamped_not_dropped() -> None:
    tally = Tally()
    tally.record_ok(0.0, steps=1)
    tally.record_ok(10_000.0, steps=1)
    assert tally.chunks == 2


def test_merge_adds_counts_errors_steps_and_spans_both_windows() -> None:
    a, b = uniform_tally(1, 1000), uniform_tally(1001, 2000)
    a.started, a.ended, b.started, b.ended = 10.0, 12.0, 11.0, 13.5
    a.record_error("NOT_FOUND")
    b.record_error("NOT_FOUND")
    b.record_error("INVALID_ARGUMENT")
    total = merge_all([a, b])
    assert total.chunks == 2000
    assert total.steps == 20_000
    assert dict(total.errors) == {"NOT_FOUND": 2, "INVALID_ARGUMENT": 1}
    assert total.elapsed_s == pytest.approx(3.5)
    assert percentile_ms(total.histogram, 50.0) == pytest.approx(1.0, rel=1e-3)


def test_encode_decode_round_trip() -> None:
    tally = uniform_tally(100, 5000)
    tally.record_error("UNAVAILABLE")
    tally.started, tally.ended = 1.5, 4.0
    back = Tally.decode(tally.encode())
    assert back.chunks == tally.chunks
    assert back.steps == tally.steps
    assert back.errors == tally.errors
    assert (back.started, back.ended) == (1.5, 4.0)
    assert percentile_ms(back.histogram, 99.0) == percentile_ms(tally.histogram, 99.0)


def test_empty_tally_reports_zeros() -> None:
    tally = Tally()
    assert tally.elapsed_s == 0.0
    assert percentile_ms(tally.histogram, 99.0) == 0.0
    assert max_ms(tally.histogram) == 0.0
