"""The state side of a batch: where its input state comes from and where its new state goes.

The newest state of the last batch's sessions is kept as the runtime returned it (device `OrtValue`s on CUDA).
When the next batch holds exactly the same sessions (the steady state of streams stepping together), it is fed
straight back: no gather, no scatter, and on CUDA no trip through host memory. Any other batch first writes it back
to the pool (`flush`) and gathers its rows from the pool slots (sessions) or from explicit state rows (stateless
requests). A row whose session was reset, closed or evicted since (its generation changed) is never written back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from service.engine.runtime import StateValue, to_host
from service.engine.state.pool import StatePool


class StateOwner(Protocol):
    """A session as the batcher sees it: its pool slot, and a generation that changes on reset/close/expiry."""

    id: int
    slot: int
    generation: int


Arrays = dict[str, np.ndarray]  # name -> array, shared by the engine modules
Version = tuple[StateOwner, int]  # a session and its generation when a state row was made
Row = tuple[StateOwner | None, Arrays | None]  # a session, or explicit state rows (a stateless request)


class ResidentState:
    def __init__(self, pool: StatePool) -> None:
        self._pool = pool
        self._rows: list[Version] = []
        self.values: dict[str, StateValue] = {}  # batch-first, row i belongs to self._rows[i]
        self._dirty = False  # the pool does not hold these values yet

    def _match(self, owners: list[StateOwner | None]) -> list[int] | None:
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

    def arrange(self, rows: Sequence[Row]) -> tuple[list[int] | None, dict[str, StateValue]]:
        """The state to run `(owner, explicit state rows)` rows with, and the order to run them in (None: as given)."""
        order = self._match([owner for owner, _ in rows])
        if order is not None:
            return order, self.values
        self.drop()
        return None, self._gather(rows)

    def settle(self, advancing: list[Version | None], values: dict[str, StateValue]) -> Arrays:
        """Keep a finished batch's new state for the rows that advance (None: a row that does not).

        When every row advances, the state stays resident; otherwise the advancing rows are written to the pool and
        the whole new state is returned on the host (the rows of stateless requests are answered from it).
        """
        if all(version is not None for version in advancing):
            self._rows, self.values, self._dirty = advancing, values, True  # type: ignore[assignment]
            return {}
        self.drop()  # rows that do not advance keep their previous state
        host = {name: to_host(v) for name, v in values.items()}
        self._write([i for i, version in enumerate(advancing) if version is not None], advancing, host)  # type: ignore[arg-type]
        return host

    def flush(self) -> None:
        """Write the resident state back to the pool (rows of unchanged sessions only)."""
        if not self._dirty:
            return
        keep = [i for i, (owner, generation) in enumerate(self._rows) if owner.generation == generation]
        self._write(keep, self._rows, {name: to_host(v) for name, v in self.values.items()})
        self._dirty = False

    def drop(self) -> None:
        """Flush, then forget: the next batch gathers from the pool."""
        self.flush()
        self._rows, self.values = [], {}

    def _write(self, keep: list[int], rows: Sequence[Version], host: Arrays) -> None:
        """Scatter rows `keep` of `host` to their sessions' pool slots."""
        if keep:
            slots = np.fromiter((rows[i][0].slot for i in keep), dtype=np.intp, count=len(keep))
            self._pool.scatter(slots, {name: v[keep] for name, v in host.items()})

    def _gather(self, rows: Sequence[Row]) -> dict[str, StateValue]:
        owned = [i for i, (owner, _) in enumerate(rows) if owner is not None]
        slots = np.fromiter((rows[i][0].slot for i in owned), dtype=np.intp, count=len(owned))  # type: ignore[union-attr]
        pooled = self._pool.gather(slots)
        if len(owned) == len(rows):
            return dict(pooled)
        state: dict[str, StateValue] = {}
        for pair in self._pool.pairs:
            values = np.empty((len(rows), *pair.shape), dtype=pair.dtype)
            values[owned] = pooled[pair.input]
            for i, (owner, explicit) in enumerate(rows):
                if owner is None:
                    values[i] = explicit[pair.input]  # type: ignore[index]
            state[pair.input] = values
        return state
