"""The newest state of the last batch's sessions, kept as the runtime returned it (device `OrtValue`s on CUDA).

When the next batch holds exactly the same sessions (the steady state of streams stepping together), the
batcher feeds these values straight back: no gather, no scatter, and on CUDA no trip through host memory.
Anything else first writes them back to the pool (`flush`). A row whose session was reset, closed or evicted
since (its generation changed) is never written back.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from service.runtime import StateValue, to_host
from service.state import StatePool


class StateOwner(Protocol):
    """A session as the batcher sees it: its pool slot, and a generation that changes on reset/close/expiry."""

    id: int
    slot: int
    generation: int


class ResidentState:
    def __init__(self, pool: StatePool) -> None:
        self._pool = pool
        self._rows: list[tuple[StateOwner, int]] = []  # (owner, its generation when this state was made)
        self.values: dict[str, StateValue] = {}  # batch-first, row i belongs to self._rows[i]
        self._dirty = False  # the pool does not hold these values yet

    def match(self, owners: list[StateOwner | None]) -> list[int] | None:
        """How to order `owners` so that row i is resident row i; None unless they are exactly the resident ones."""
        if not self._rows or len(owners) != len(self._rows):
            return None
        where = {id(owner): i for i, (owner, generation) in enumerate(self._rows) if owner.generation == generation}
        order = [0] * len(owners)
        for j, owner in enumerate(owners):
            i = where.pop(id(owner), None)
            if i is None:
                return None
            order[i] = j
        return order

    def keep(self, rows: list[tuple[StateOwner, int]], values: dict[str, StateValue]) -> None:
        """Make a finished batch's new state the resident one (the previous one is superseded, row for row)."""
        self._rows, self.values, self._dirty = rows, values, True

    def flush(self) -> None:
        """Write the resident state back to the pool (rows of unchanged sessions only)."""
        if not self._dirty:
            return
        keep = [i for i, (owner, generation) in enumerate(self._rows) if owner.generation == generation]
        if keep:
            slots = np.fromiter((self._rows[i][0].slot for i in keep), dtype=np.intp, count=len(keep))
            self._pool.scatter(slots, {name: to_host(v)[keep] for name, v in self.values.items()})
        self._dirty = False

    def drop(self) -> None:
        """Flush, then forget: the next batch gathers from the pool."""
        self.flush()
        self._rows, self.values = [], {}
