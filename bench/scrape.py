"""The server's own view of a run, from its Prometheus `/metrics`: batch sizes formed, model run and queue times.

Histograms are cumulative over the server's life, so a run is measured as the difference of two scrapes.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

BATCH = "seqserve_batch_size"
MODEL_RUN = "seqserve_model_run_seconds"
QUEUE_WAIT = "seqserve_queue_wait_seconds"


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]  # (upper bound `le`, cumulative count), ascending
    total: float  # _sum
    count: float  # _count

    def minus(self, before: Histogram) -> Histogram:
        old = dict(before.buckets)
        return Histogram(
            tuple((le, c - old.get(le, 0.0)) for le, c in self.buckets),
            self.total - before.total,
            self.count - before.count,
        )

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


EMPTY = Histogram((), 0.0, 0.0)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def histogram(text: str, name: str, model: str) -> Histogram:
    """One labelled histogram out of a scrape (empty when the server has not observed it yet)."""
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return Histogram(tuple(sorted(buckets)), total, count)


def batch_sizes(h: Histogram, largest: int) -> dict[int, int]:
    """Model runs by batch size, estimated from the buckets and made to agree with the exact `_sum`.

    A bucket `(lo, hi]` holds sizes lo+1 .. hi; every bucket's runs are placed at the same fraction of its range,
    the fraction that makes sum(size * runs) equal the histogram's sum. `largest` caps the open top bucket.
    """
    ranges: list[tuple[int, int, int]] = []  # (first size, last size, runs)
    lower, below = 0, 0.0
    for le, cumulative in h.buckets:
        runs = round(cumulative - below)
        upper = largest if math.isinf(le) else min(int(le), largest)
        if runs > 0:
            ranges.append((lower + 1, max(upper, lower + 1), runs))
        lower, below = int(le) if not math.isinf(le) else lower, cumulative
    fixed = sum(first * runs for first, _, runs in ranges)
    spread = sum((last - first) * runs for first, last, runs in ranges)
    fraction = min(1.0, max(0.0, (h.total - fixed) / spread)) if spread else 0.0
    sizes: dict[int, int] = {}
    for first, last, runs in ranges:
        size = round(first + fraction * (last - first))
        sizes[size] = sizes.get(size, 0) + runs
    return sizes


@dataclass(frozen=True)
class ServerView:
    """What the server saw during one run of one model."""

    batch_sizes: dict[int, int]  # size -> model runs
    mean_batch: float
    mean_model_run_ms: float
    mean_queue_wait_ms: float


def scrape(url: str, model: str) -> dict[str, Histogram]:
    text = fetch(url)
    return {name: histogram(text, name, model) for name in (BATCH, MODEL_RUN, QUEUE_WAIT)}


def server_view(before: dict[str, Histogram], after: dict[str, Histogram], largest: int) -> ServerView:
    d = {name: after[name].minus(before.get(name, EMPTY)) for name in after}
    return ServerView(
        batch_sizes=batch_sizes(d[BATCH], largest),
        mean_batch=d[BATCH].mean,
        mean_model_run_ms=d[MODEL_RUN].mean * 1e3,
        mean_queue_wait_ms=d[QUEUE_WAIT].mean * 1e3,
    )
