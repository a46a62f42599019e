"""The registry's model versions on /metrics: how many are in each state, and the loads that failed or worked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.engine.versions import STATES

if TYPE_CHECKING:
    from service.engine.registry import Registry


class StatesCollector(Collector):
    """Built at scrape time from the registry's tables (a scrape reads plain dicts; nothing on the hot path)."""

    def __init__(self, registry: Registry) -> None:
        self._tables = registry.tables

    def collect(self) -> Iterator[Metric]:
        t = self._tables
        states = GaugeMetricFamily("seqserve_model_versions", "Model versions found, by state",
                                   labels=["model", "state"])
        for name, versions in sorted(t.versions.copy().items()):
            counts = dict.fromkeys(STATES, 0)
            for entry in list(versions.values()):
                counts[entry.state] += 1
            for state, count in counts.items():
                states.add_metric([name, state], count)
        yield states
        for metric, doc, counts in (
            ("seqserve_model_load_failures", "Model version loads that failed (the reason is in the index and the log)",
             t.load_failures),
            ("seqserve_model_loads", "Model version loads that succeeded", t.loads),
        ):
            family = CounterMetricFamily(metric, doc, labels=["model"])
            for name, count in sorted(counts.copy().items()):
                family.add_metric([name], count)
            yield family
