"""Per-chunk latency and outcome tallies: an HDR histogram of microseconds plus error counts by status code.

A `Tally` is filled by one client process and travels to the parent as plain bytes (`encode` / `decode`), where
the tallies of all processes are merged before the report is built.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: anything slower is clamped, never dropped
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass
class Tally:
    """What one client saw: latencies of answered chunks, and rejected chunks by status code name."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    started: float | None = None  # time.monotonic() when sending began (a system-wide clock on Linux)
    ended: float | None = None

    @property
    def elapsed_s(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)

    @property
    def chunks(self) -> int:
        return int(self.histogram.get_total_count())

    def record_ok(self, latency_s: float, steps: int) -> None:
        us = round(latency_s * 1e6)
        self.histogram.record_value(min(max(us, LOWEST_US), HIGHEST_US))
        self.steps += steps

    def record_error(self, code: str) -> None:
        self.errors[code] += 1

    def merge(self, other: Tally) -> None:
        self.histogram.add(other.histogram)
        self.errors.update(other.errors)
        self.steps += other.steps
        self.started = _pick(min, self.started, other.started)
        self.ended = _pick(max, self.ended, other.ended)

    def encode(self) -> bytes:
        head = {"errors": dict(self.errors), "steps": self.steps, "started": self.started, "ended": self.ended}
        return json.dumps(head).encode() + b"\n" + self.histogram.encode()

    @classmethod
    def decode(cls, data: bytes) -> Tally:
        head_line, _, hist = data.partition(b"\n")
        head = json.loads(head_line)
        return cls(HdrHistogram.decode(hist), Counter(head["errors"]), head["steps"], head["started"], head["ended"])


def _pick(choose: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    return choose(a, b)


def merge_all(tallies: list[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        total.merge(t)
    return total


def percentile_ms(histogram: HdrHistogram, percentile: float) -> float:
    """The latency at `percentile` (0..100) in milliseconds; 0.0 for an empty histogram."""
    if histogram.get_total_count() == 0:
        return 0.0
    return float(histogram.get_value_at_percentile(percentile)) / 1000.0


def max_ms(histogram: HdrHistogram) -> float:
    if histogram.get_total_count() == 0:
        return 0.0
    return float(histogram.get_max_value()) / 1000.0
