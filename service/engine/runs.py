"""One model run of a batch, the pieces the batcher puts together (service/engine/batching.py): the batch's
inputs from the state pool, the run timed on whichever thread makes it, the write-through of a batch's new state
to the session store, and the refusal of every step of a batch whose run or write failed (no state changed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from service.engine.errors import ModelRunFailed, Unavailable
from service.engine.runtime import Runtime, StateValue
from service.engine.state import batch as batch_state
from service.engine.state.pool import Arrays, StatePool
from service.engine.state.store import RedisStore
from service.engine.state.through import write_through
from service.engine.steps import Step, advancing, fail

log = logging.getLogger(__name__)
Finish = Callable[[list[Step], Arrays, dict[str, StateValue], "dict[int, Exception] | None"], None]


def batch_inputs(pool: StatePool, batch: list[Step], copy_state: bool) -> tuple[np.ndarray, dict[str, StateValue]]:
    """The batch's input `(B, T, F)` and state, gathered from the pool and the explicit rows; `copy_state` when
    another run may be in flight (the host store gathers into buffers that the next gather reuses)."""
    state = batch_state.gather(pool, [(s.owner, s.state) for s in batch])
    if copy_state:
        state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}
    return np.stack([s.x for s in batch]), state


def timed_run(runtime: Runtime, input_name: str, x: np.ndarray, state: dict[str, StateValue]
              ) -> tuple[Arrays, dict[str, StateValue], int]:
    """The model run and its own duration (without the executor hop), on whichever thread calls it."""
    start = time.perf_counter_ns()
    outputs, new_state = runtime.run({input_name: x}, state)
    return outputs, new_state, time.perf_counter_ns() - start


def refuse(batch: list[Step], exc: Exception, what: str = "model run") -> None:
    """Every step of `batch` is refused (`ModelRunFailed`), the cause logged once; no state was written."""
    log.exception("%s failed (batch of %d); every step of it is refused, no state changed", what, len(batch))
    fail(batch, ModelRunFailed(), cause=exc)


async def commit(store: RedisStore, pool: StatePool, batch: list[Step], outputs: Arrays,
                 new_state: dict[str, StateValue], finish: Finish) -> bool:
    """One round trip to the session store for the whole batch, then its answers (`finish`, refused rows with
    why); whether it got that far."""
    try:
        refused = await write_through(store, pool.pairs, advancing(batch), new_state, outputs)  # type: ignore[arg-type]
        finish(batch, outputs, new_state, refused)
    except asyncio.CancelledError:
        fail(batch, Unavailable("the model is shutting down"))
        raise
    except Exception as exc:
        refuse(batch, exc, "write-through")
        return False
    return True
