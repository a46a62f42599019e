"""`when_done`: a done-callback that runs before the awaiting caller goes on, also for a future already done.

A batch that runs inline as its step is queued (an idle model, service/engine/batching.py) resolves the step's
future before `submit` returns, and `add_done_callback` on a done future only schedules the callback: the caller
awaiting it would go on first (a session still counted busy, a request not yet counted). On a pending future the
callback is added as usual, and runs before the waiting task is woken (that task's wake-up is added later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound="asyncio.Future[Any]")


def when_done(future: F, callback: Callable[[F], object]) -> None:
    if future.done():
        callback(future)
    else:
        future.add_done_callback(callback)
