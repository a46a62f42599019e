"""Write-through: a batch's new state goes to the session store, in one round trip, before any answer is released.

Only rows of sessions with a store key are written (the memory store never comes here). Each row is a
compare-and-set on the session's version: a row whose session moved on elsewhere (a concurrent step won it)
is refused with `Aborted` and neither written locally nor answered; a new session beyond the store's limits
(sessions, memory) with `ResourceExhausted`; an unreachable store refuses every row with `Unavailable`; a row whose
write went unanswered is resolved by the store first (`RedisStore.commit`): applied (a success), not applied and
fenced off (`Unavailable`: retry it; the session takes the fence's epoch), or unknown (`OutcomeUnknown`). A written
row advances its session's version and position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from modelrepo import StatePair
from service.engine.errors import Aborted, OutcomeUnknown, ResourceExhausted, Unavailable
from service.engine.runtime import StateValue, to_host
from service.engine.state.codec import encode, encode_answers
from service.engine.state.scripts import ABSENT, ANY, FENCED, FULL, MEMORY
from service.engine.state.store import UNKNOWN, RedisStore, Write, new_epoch

NOT_APPLIED = ("the session store did not answer this step's write in time; it was not applied (and never will be); "
               "retry it")
UNKNOWN_OUTCOME = ("the session store did not answer in time: this step may or may not have been applied; a native "
                   "stream resumes by its token (Opened.position says which), a Triton sequence restarts with "
                   "sequence_start")


class Durable(Protocol):
    """A session as write-through sees it."""

    key: str | None  # None: not in the store
    expected: str  # the version the store holds for it (store.ANY: overwrite, after an open or START)
    epoch: str
    writes: int
    position: int  # steps applied
    ending: bool  # this step ends the session: delete it from the store
    answers: bool  # keep each step's answer for a resuming client (native streams)


async def write_through(
    store: RedisStore, pairs: Sequence[StatePair], owners: Sequence[Durable | None], state: dict[str, StateValue],
    outputs: dict[str, np.ndarray],
) -> dict[int, Exception]:
    """Commit row i of `state` (and of `outputs`, kept as its answer) for `owners[i]` (None: not written); the
    refused rows and why."""
    rows = [i for i, owner in enumerate(owners) if owner is not None and owner.key is not None]
    if not rows:
        return {}
    host = {p.input: to_host(state[p.input]) for p in pairs}
    kept = [i for i in rows if owners[i].answers]  # type: ignore[union-attr]
    answers = dict(zip(kept, encode_answers(outputs, kept), strict=True)) if kept else {}
    writes = []
    for i, state_bytes in zip(rows, encode(pairs, host, rows), strict=True):
        owner = owners[i]
        assert owner is not None and owner.key is not None
        version = f"{owner.epoch}:{owner.writes + 1}"
        writes.append(Write(owner.key, owner.expected, version, owner.position + 1, state_bytes, answers.get(i),
                            owner.ending))
    try:
        results = await store.commit(writes)
    except Unavailable as exc:
        return dict.fromkeys(rows, exc)
    refused: dict[int, Exception] = {}
    for i, write, stored in zip(rows, writes, results, strict=True):
        owner = owners[i]
        assert owner is not None
        if stored == FULL:
            refused[i] = ResourceExhausted(f"the session store holds its limit of {store.max_sessions} sessions")
            continue
        if stored == MEMORY:
            refused[i] = ResourceExhausted("the session store is near its memory limit: no new sessions for now "
                                           "(open ones go on)")
            continue
        if stored.startswith(FENCED):
            fence = stored[len(FENCED):]
            owner.epoch = fence.rpartition(":")[0] if fence and owner.expected != ANY else new_epoch()
            if owner.expected != ANY:
                owner.expected = fence
            refused[i] = Unavailable(NOT_APPLIED)
            continue
        if stored == UNKNOWN:
            refused[i] = OutcomeUnknown(UNKNOWN_OUTCOME)
            continue
        if stored:
            store.conflicts += 1
            gone = "ended or expired" if stored == ABSENT else "advanced by another step"
            refused[i] = Aborted(f"a concurrent step won the session (it was {gone}); retry from its stored position")
            continue
        owner.expected, owner.writes, owner.position = write.version, owner.writes + 1, owner.position + 1
    return refused


async def reset_through(store: RedisStore, pairs: Sequence[StatePair], owner: Durable, initial: dict[str, StateValue]
                        ) -> None:
    """Write a session's reset (the initial state, one batch-first row; its answer has no outputs) before it applies
    locally; raises `Aborted` or `Unavailable` when refused."""
    refused = await write_through(store, pairs, [owner], initial, {})
    if refused:
        raise refused[0]
