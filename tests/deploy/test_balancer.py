"""The compose topology without containers: 16 streams through nginx, then one replica stops."""

from __future__ import annotations

import signal

import grpc

from seqserve_client import Client, ServerError
from tests.deploy.check_results import TOLERANCE, open_runs
from tests.deploy.topology import Balancer, Replica


def test_streams_through_the_balancer_equal_whole_runs_and_survive_a_replica_stopping(
    topology: tuple[Replica, Replica, Balancer],
) -> None:
    stopped, survivor, balancer = topology
    with Client(balancer.target) as client:
        runs = open_runs(client, 16)
        on_stopped, on_survivor = stopped.active_sessions(), survivor.active_sessions()
        assert on_stopped > 0 and on_survivor > 0 and on_stopped + on_survivor == 16  # spread, each stays put
        for run in runs:
            run.step()
            run.step()

        assert stopped.kill(signal.SIGTERM) == 0  # what `docker stop` / scaling down does
        alive, failed = [], []
        for run in runs:
            try:
                run.step()
                alive.append(run)
            except ServerError as exc:
                failed.append((exc.code, exc.message))
        # Ended by the replica itself once its grace was used up, and passed on by nginx as is.
        cut = (grpc.StatusCode.UNAVAILABLE, "the server is shutting down and has ended this stream")
        assert failed == [cut] * int(on_stopped)
        assert len(alive) == on_survivor
        assert max(run.finish() for run in alive) <= TOLERANCE  # their state was never touched

        fresh = open_runs(client, 8, seed=1)
        assert survivor.active_sessions() == 8  # every new session lands on the replica left
        assert max(run.finish() for run in fresh) <= TOLERANCE
    assert "[emerg]" not in balancer.log
