"""The state side of one batch: its input state gathered by slot index, its new state scattered back by slot index.

A batch of sessions only is gathered from the pool where the model runs (on CUDA: device to device, no host
copy). A batch that mixes in explicit state rows (stateless requests) is put together on the host. After the run,
only the rows that advance are written back: a row whose session was reset, closed or evicted while the step was in
flight (its generation changed), or whose caller cancelled, keeps the pool's current state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from service.engine.runtime import StateValue, to_host
from service.engine.state.pool import Arrays, StatePool


class StateOwner(Protocol):
    """A session as the batcher sees it: its pool slot, and a generation that changes on reset/close/expiry."""

    id: int
    slot: int
    generation: int


Row = tuple[StateOwner | None, Arrays | None]  # a session, or explicit state rows (a stateless request)


def _slots(owners: Sequence[StateOwner | None], rows: list[int]) -> np.ndarray:
    return np.fromiter((owners[i].slot for i in rows), dtype=np.int64, count=len(rows))  # type: ignore[union-attr]


def gather(pool: StatePool, rows: Sequence[Row]) -> dict[str, StateValue]:
    """The batch-first state to run `rows` with."""
    owners = [owner for owner, _ in rows]
    owned = [i for i, owner in enumerate(owners) if owner is not None]
    if len(owned) == len(rows):
        return pool.gather(_slots(owners, owned))
    pooled = pool.store.read(_slots(owners, owned)) if owned else {}
    state: dict[str, StateValue] = {}
    for pair in pool.pairs:
        values = np.empty((len(rows), *pair.shape), dtype=pair.dtype)
        if owned:
            values[owned] = pooled[pair.input]
        for i, (owner, explicit) in enumerate(rows):
            if owner is None:
                values[i] = explicit[pair.input]  # type: ignore[index]
        state[pair.input] = values
    return state


def settle(pool: StatePool, advancing: Sequence[StateOwner | None], state: dict[str, StateValue], host: bool) -> Arrays:
    """Write row i of `state` to `advancing[i]`'s slot (None: not written); the host copy of `state` if `host`."""
    keep = [i for i, owner in enumerate(advancing) if owner is not None]
    pool.scatter(_slots(advancing, keep), state, rows=np.array(keep, dtype=np.int64))
    return {name: to_host(v) for name, v in state.items()} if host else {}
