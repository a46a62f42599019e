"""Engine fixtures: a fresh `Metrics` and a registry loaded over the shipped models (CPU)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.engine.metrics import Metrics
from service.engine.registry import Registry
from tests.service.helpers import SHIPPED, cpu_settings


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def registry(metrics: Metrics) -> AsyncIterator[Registry]:
    loaded = await Registry.load(cpu_settings(SHIPPED), metrics)
    yield loaded
    await loaded.close()
