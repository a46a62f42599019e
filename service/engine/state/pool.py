"""The state pool of one model: every session's recurrent state in slot-stable arrays, kept where the model runs.

One array per state tensor, shaped `(capacity, *StatePair.shape)`, a free list of slots and each slot's last-use
time. A session keeps its slot for life, and every batch gathers its rows by slot index and scatters the new state
back by slot index. Capacity starts small and doubles on demand up to `max_slots`, so an idle session costs about
its state bytes. The arrays live in a store: `HostStore` (numpy, in place) when the model runs on the CPU,
`DeviceStore` (`service/engine/state/device.py`, the same operations as graphs on the model's device) when it runs
on CUDA, so that state never goes through host memory between steps. Everything runs on the event loop thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from modelrepo import StatePair
from service.engine.errors import ResourceExhausted
from service.engine.runtime import StateValue, to_host

INITIAL_CAPACITY = 8
Arrays = dict[str, np.ndarray]  # name -> array, shared by the engine modules


class StateStore(Protocol):
    """The pool's arrays, keyed by state input name; slot indices are int64 numpy arrays."""

    def gather(self, slots: np.ndarray) -> dict[str, StateValue]:
        """Rows `slots`, batch-first, as the model takes them (valid until the next `gather`)."""
        ...

    def scatter(self, slots: np.ndarray, rows: np.ndarray, state: dict[str, StateValue]) -> None:
        """Write row `rows[k]` of each batch-first `state` array to slot `slots[k]` (slots distinct)."""
        ...

    def read(self, slots: np.ndarray) -> Arrays:
        """A host copy of rows `slots`."""
        ...

    def grow(self, capacity: int) -> None:
        """Add slots holding the initial state, keeping the existing ones."""
        ...

    @property
    def nbytes(self) -> int: ...


StoreFactory = Callable[[list[StatePair], int], StateStore]  # (pairs, initial capacity) -> store


class HostStore:
    """numpy arrays, updated in place (the model runs on the CPU: host memory is where it runs)."""

    def __init__(self, pairs: list[StatePair], capacity: int) -> None:
        self._pairs = pairs
        self._arrays = {p.input: np.full((capacity, *p.shape), p.initial, dtype=p.dtype) for p in pairs}
        self._buffer_rows = 0
        self._buffers = {p.input: np.empty((0, *p.shape), dtype=p.dtype) for p in pairs}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def gather(self, slots: np.ndarray) -> dict[str, StateValue]:
        n = len(slots)  # copied into buffers that the next gather reuses (one batch in flight per model)
        if n > self._buffer_rows:
            self._buffer_rows = n
            self._buffers = {p.input: np.empty((n, *p.shape), dtype=p.dtype) for p in self._pairs}
        return {name: np.take(a, slots, axis=0, out=self._buffers[name][:n]) for name, a in self._arrays.items()}

    def scatter(self, slots: np.ndarray, rows: np.ndarray, state: dict[str, StateValue]) -> None:
        for name, a in self._arrays.items():
            a[slots] = to_host(state[name])[rows]

    def read(self, slots: np.ndarray) -> Arrays:
        return {name: a[slots] for name, a in self._arrays.items()}

    def grow(self, capacity: int) -> None:
        for p in self._pairs:
            grown = np.full((capacity, *p.shape), p.initial, dtype=p.dtype)
            old = self._arrays[p.input]
            grown[: len(old)] = old
            self._arrays[p.input] = grown


class StatePool:
    def __init__(
        self,
        pairs: list[StatePair],
        max_slots: int,
        initial_capacity: int = INITIAL_CAPACITY,
        store: StoreFactory = HostStore,
    ) -> None:
        self.pairs = list(pairs)
        self.max_slots = max_slots
        capacity = max(1, min(initial_capacity, max_slots))
        self.store = store(self.pairs, capacity)
        self._initial: dict[str, StateValue] = {
            p.input: np.full((1, *p.shape), p.initial, dtype=p.dtype) for p in self.pairs
        }
        self._last_use = np.zeros(capacity, dtype=np.float64)
        self._in_use = np.zeros(capacity, dtype=bool)
        self._free = list(range(capacity - 1, -1, -1))  # pop() hands out the lowest slot first

    @property
    def capacity(self) -> int:
        return len(self._in_use)

    @property
    def used(self) -> int:
        return int(self._in_use.sum())

    @property
    def nbytes(self) -> int:
        return self.store.nbytes

    @property
    def initial(self) -> dict[str, StateValue]:
        """The initial state as one batch-first row."""
        return self._initial

    def alloc(self, now: float) -> int:
        """A slot holding the initial state; `ResourceExhausted` when `max_slots` are in use."""
        if not self._free:
            if self.capacity >= self.max_slots:
                raise ResourceExhausted(f"session limit reached ({self.max_slots} open sessions)")
            self._grow(min(self.capacity * 2, self.max_slots))
        slot = self._free.pop()
        self._in_use[slot] = True
        self._last_use[slot] = now
        self.reset(slot)
        return slot

    def free(self, slot: int) -> None:
        """Give the slot back; idempotent."""
        if self._in_use[slot]:
            self._in_use[slot] = False
            self._free.append(slot)

    def reset(self, slot: int) -> None:
        self._check(slot)
        self.store.scatter(np.array([slot], dtype=np.int64), np.zeros(1, dtype=np.int64), self._initial)

    def load(self, slot: int, state: Arrays) -> None:
        """Set one slot's state (shapes without the batch axis), e.g. from the session store."""
        self._check(slot)
        rows = {name: value[np.newaxis] for name, value in state.items()}
        self.store.scatter(np.array([slot], dtype=np.int64), np.zeros(1, dtype=np.int64), rows)  # type: ignore

    def touch(self, slot: int, now: float) -> None:
        self._last_use[slot] = now

    def idle_slots(self, older_than: float) -> list[int]:
        """Slots in use whose last use is before `older_than` (a monotonic time)."""
        return np.flatnonzero(self._in_use & (self._last_use < older_than)).tolist()

    def read(self, slot: int) -> Arrays:
        """A host copy of one slot's state, keyed by state input name."""
        self._check(slot)
        return {name: rows[0] for name, rows in self.store.read(np.array([slot], dtype=np.int64)).items()}

    def gather(self, slots: np.ndarray) -> dict[str, StateValue]:
        """The state rows of `slots`, batch-first: `{name: (len(slots), *shape)}`, where the model runs."""
        return self.store.gather(slots)

    def scatter(self, slots: np.ndarray, state: dict[str, StateValue], rows: np.ndarray | None = None) -> None:
        """Write batch-first rows back to `slots`: row `rows[k]` (default: k) goes to `slots[k]`."""
        if len(slots):
            self.store.scatter(slots, np.arange(len(slots)) if rows is None else rows, state)

    def _check(self, slot: int) -> None:
        if not self._in_use[slot]:
            raise KeyError(f"slot {slot} is not in use")

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        self.store.grow(capacity)
        self._last_use = np.concatenate([self._last_use, np.zeros(capacity - old)])
        self._in_use = np.concatenate([self._in_use, np.zeros(capacity - old, dtype=bool)])
        self._free = list(range(capacity - 1, old - 1, -1)) + self._free
