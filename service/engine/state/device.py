"""The state pool's arrays as `OrtValue`s on the model's device, gathered and scattered there by slot index.

A batch's state is one gather graph run (device to device) and its new state one scatter graph run, which
writes only the rows that advance and returns the updated pool (the previous pool buffer is then released).
Host copies happen only where the host needs the values: `read` (`Session.state()`), a mixed batch with
explicit state rows (stateless requests, answered on the host anyway), and growth (rare: capacity doubles).
On the CPU provider the same store runs with CPU `OrtValue`s, which is how the tests exercise the CUDA path.
"""

from __future__ import annotations

import numpy as np

from modelrepo import StatePair
from service.engine.runtime import DeviceGraph, StateValue, to_host
from service.engine.state.graphs import gather_graph, scatter_graph
from service.engine.state.pool import Arrays, HostStore, StoreFactory


class DeviceStore:
    def __init__(self, pairs: list[StatePair], capacity: int, provider: str) -> None:
        self._pairs = pairs
        self._gather = DeviceGraph(gather_graph(pairs), provider)
        self._scatter = DeviceGraph(scatter_graph(pairs), provider)
        self._capacity = capacity
        self._pool = [self._gather.upload(np.full((capacity, *p.shape), p.initial, dtype=p.dtype)) for p in pairs]

    @property
    def nbytes(self) -> int:
        return sum(self._capacity * int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize for p in self._pairs)

    def gather(self, slots: np.ndarray) -> dict[str, StateValue]:
        feeds: dict[str, StateValue] = {"slots": slots.astype(np.int64, copy=False)}
        feeds.update((f"pool_{i}", v) for i, v in enumerate(self._pool))
        out = self._gather.run(feeds)
        return {p.input: out[f"state_{i}"] for i, p in enumerate(self._pairs)}

    def scatter(self, slots: np.ndarray, rows: np.ndarray, state: dict[str, StateValue]) -> None:
        feeds: dict[str, StateValue] = {
            "slots": slots.astype(np.int64, copy=False), "rows": rows.astype(np.int64, copy=False)
        }
        for i, p in enumerate(self._pairs):
            feeds[f"pool_{i}"] = self._pool[i]
            feeds[f"new_{i}"] = state[p.input]
        out = self._scatter.run(feeds)
        self._pool = [out[f"pool_out_{i}"] for i in range(len(self._pairs))]

    def read(self, slots: np.ndarray) -> Arrays:
        return {name: to_host(v) for name, v in self.gather(slots).items()}

    def grow(self, capacity: int) -> None:
        grown = []
        for value, p in zip(self._pool, self._pairs, strict=True):
            host = np.full((capacity, *p.shape), p.initial, dtype=p.dtype)
            host[: self._capacity] = to_host(value)
            grown.append(self._gather.upload(host))
        self._pool, self._capacity = grown, capacity


def device_store(provider: str) -> StoreFactory:
    """The factory `StatePool(store=...)` takes: pools on `provider`'s device (a model without state has no arrays
    to place, and no graph can be built for it: the host store, which then holds nothing)."""
    return lambda pairs, capacity: DeviceStore(pairs, capacity, provider) if pairs else HostStore(pairs, capacity)
