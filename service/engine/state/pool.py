"""The state pool of one model: every session's recurrent state in preallocated arrays with a slot axis.

One array per state tensor, shaped `(capacity, *StatePair.shape)`, a free list of slots and each slot's
last-use time. Capacity starts small and doubles on demand up to `max_slots`, so an idle session costs
about its state bytes. Only this module indexes the arrays; everything runs on the event loop thread.
"""

from __future__ import annotations

import numpy as np

from modelrepo import StatePair
from service.engine.errors import ResourceExhausted

INITIAL_CAPACITY = 8


class StatePool:
    def __init__(self, pairs: list[StatePair], max_slots: int, initial_capacity: int = INITIAL_CAPACITY) -> None:
        self.pairs = list(pairs)
        self.max_slots = max_slots
        capacity = max(1, min(initial_capacity, max_slots))
        self._arrays = {p.input: np.full((capacity, *p.shape), p.initial, dtype=p.dtype) for p in self.pairs}
        self._last_use = np.zeros(capacity, dtype=np.float64)
        self._in_use = np.zeros(capacity, dtype=bool)
        self._free = list(range(capacity - 1, -1, -1))  # pop() hands out the lowest slot first
        self._buffer_rows = 0
        self._buffers = {p.input: np.empty((0, *p.shape), dtype=p.dtype) for p in self.pairs}

    @property
    def capacity(self) -> int:
        return len(self._in_use)

    @property
    def used(self) -> int:
        return int(self._in_use.sum())

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

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
        for pair in self.pairs:
            self._arrays[pair.input][slot] = pair.initial

    def touch(self, slot: int, now: float) -> None:
        self._last_use[slot] = now

    def idle_slots(self, older_than: float) -> list[int]:
        """Slots in use whose last use is before `older_than` (a monotonic time)."""
        return np.flatnonzero(self._in_use & (self._last_use < older_than)).tolist()

    def read(self, slot: int) -> dict[str, np.ndarray]:
        """A copy of one slot's state, keyed by state input name."""
        self._check(slot)
        return {name: a[slot].copy() for name, a in self._arrays.items()}

    def gather(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The state rows of `slots`, batch-first: `{name: (len(slots), *shape)}`.

        Copied into preallocated buffers that the next `gather` reuses (the batcher runs one batch at a time).
        """
        n = len(slots)
        if n > self._buffer_rows:
            self._buffer_rows = n
            self._buffers = {p.input: np.empty((n, *p.shape), dtype=p.dtype) for p in self.pairs}
        return {name: np.take(a, slots, axis=0, out=self._buffers[name][:n]) for name, a in self._arrays.items()}

    def scatter(self, slots: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Write batch-first rows back to `slots` (row i of each array goes to `slots[i]`)."""
        for name, a in self._arrays.items():
            a[slots] = state[name]

    def _check(self, slot: int) -> None:
        if not self._in_use[slot]:
            raise KeyError(f"slot {slot} is not in use")

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for pair in self.pairs:
            grown = np.full((capacity, *pair.shape), pair.initial, dtype=pair.dtype)
            grown[:old] = self._arrays[pair.input]
            self._arrays[pair.input] = grown
        self._last_use = np.concatenate([self._last_use, np.zeros(capacity - old)])
        self._in_use = np.concatenate([self._in_use, np.zeros(capacity - old, dtype=bool)])
        self._free = list(range(capacity - 1, old - 1, -1)) + self._free
