"""`--workers 2 --recycle-after N` with a shared store: workers are replaced one at a time under live Triton
sequences and SDK streams, and every answer still equals the whole-sequence run (nothing lost, nothing twice)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.deploy.topology import Replica
from tests.service.grpc.store.test_chaos import everyone_moves, finish, start_drivers

if TYPE_CHECKING:
    from tests.redis_server import RedisServer
    from tests.service.grpc.helpers import Reference

RECYCLE_AFTER = 40  # requests per worker


def children_of(pid: int) -> set[int]:
    """Every child of `pid`, whichever of its threads started it (replacements come from the recycler's)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(child) for child in (task / "children").read_text(encoding="ascii").split()}
    return children


def test_workers_are_recycled_one_at_a_time_without_losing_a_session(
    models_root: Path, redis_server: RedisServer, reference: Reference
) -> None:
    server = Replica(models_root, "--workers", "2", "--recycle-after", str(RECYCLE_AFTER), "--session-store",
                     redis_server.url, "--shutdown-grace", "5")
    try:
        first = children_of(server.process.pid)
        assert len(first) == 2
        drivers, progress = start_drivers(server, reference)  # type: ignore[arg-type]
        try:
            seen = set(first)
            deadline = time.monotonic() + 120  # a safety net, never a timed assertion
            tick = threading.Event()
            while len(seen - first) < 3:  # until three replacements have started (a real event: /proc)
                assert time.monotonic() < deadline, "no worker was recycled"
                everyone_moves(drivers, progress, "traffic while workers are recycled")
                seen |= children_of(server.process.pid)
                tick.wait(0.05)
            everyone_moves(drivers, progress, "traffic after the recycling")
        finally:
            finish(drivers)
        assert len(children_of(server.process.pid)) >= 2  # the parent still serves with its workers
    finally:
        server.stop()
