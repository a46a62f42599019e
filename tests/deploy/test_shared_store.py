"""The compose topology on a shared Redis: the README's unary Triton example through round-robin nginx."""

from __future__ import annotations

import signal

import pytest
import tritonclient.grpc as triton

from seqserve_client import Client
from tests.deploy.check_results import TOLERANCE, open_runs
from tests.deploy.topology import Balancer, Replica, vanished
from tests.service.grpc.helpers import Reference
from tests.service.grpc.triton.test_sequences import assert_parity, first_output, interleaved, make_sequences
from tests.service.helpers import MANIFESTS, STREAMABLE


def test_unary_sequences_through_round_robin_nginx_equal_whole_runs(
    shared_topology: tuple[Replica, Replica, Balancer],
) -> None:
    first, second, balancer = shared_topology
    reference = Reference(MANIFESTS)
    sequences = make_sequences(reference, STREAMABLE, 32, seed=5)
    client = triton.InferenceServerClient(balancer.target)
    for s, k in interleaved(sequences):
        s.outputs.append(first_output(client.infer(**s.request(k))))
    client.close()
    assert_parity(sequences, reference)
    assert first.requests_served() > 0 and second.requests_served() > 0  # both replicas served the sequences
    assert "[emerg]" not in balancer.log


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_replica_killed_mid_run_every_stream_and_sequence_continues_on_the_other(
    shared_topology: tuple[Replica, Replica, Balancer], sig: signal.Signals,
) -> None:
    """16 native streams (two chunks in flight each when the signal lands) and 16 unary Triton sequences. SIGTERM
    hands every session off at once: the replica exits although its grace (600 s) is far from used up."""
    killed, survivor, balancer = shared_topology
    reference = Reference(MANIFESTS)
    sequences = make_sequences(reference, STREAMABLE, 16, seed=9)
    triton_client = triton.InferenceServerClient(balancer.target)
    with Client(balancer.target) as client:
        runs = open_runs(client, 16)
        assert killed.active_sessions() > 0 and survivor.active_sessions() > 0
        for run in runs:
            run.step()
        for s in sequences:
            s.outputs.append(first_output(triton_client.infer(**s.request(0))))
        for run in runs:  # two chunks in flight on every stream
            run.stream.submit(run.chunks[1])
            run.stream.submit(run.chunks[2])
        assert killed.kill(sig) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        for run in runs:
            run.received += [run.stream.receive()[run.output], run.stream.receive()[run.output]]
        for s, k in interleaved(sequences):
            if k > 0:
                s.outputs.append(first_output(triton_client.infer(**s.request(k))))
        mismatched = [i for i, run in enumerate(runs) if run.finish() > TOLERANCE]
        resumed = sum(run.stream.resumes for run in runs)
    triton_client.close()
    lost = sum(len(run.chunks) - len(run.received) for run in runs)
    assert (lost, mismatched) == (0, [])  # no chunk lost, none applied twice (the outputs would differ)
    assert 0 < resumed <= 16  # the streams the killed replica held resumed, once each
    assert_parity(sequences, reference)


def test_a_replica_gone_from_the_network_its_streams_resume_before_their_sessions_expire(
    short_lived_topology: tuple[Replica, Replica, Balancer],
) -> None:
    """What the compose smoke test meets: a SIGKILLed container's address swallows connects instead of refusing
    them. nginx must give up on it and pass the resume to the other replica well within the stored sessions'
    idle timeout (it waited its default 60 s before; the sessions had expired by then: NOT_FOUND)."""
    killed, survivor, balancer = short_lived_topology
    with Client(balancer.target) as client:
        runs = open_runs(client, 8)
        for run in runs:
            run.step()
        assert killed.active_sessions() > 0 and survivor.active_sessions() > 0
        killed.kill(signal.SIGKILL)
        with vanished(killed.port):
            mismatched = [i for i, run in enumerate(runs) if run.finish() > TOLERANCE]
        resumed = sum(run.stream.resumes for run in runs)
    assert mismatched == []
    assert 0 < resumed <= 8  # the streams the killed replica held resumed, once each
    assert "upstream timed out" in balancer.log  # the replica's address did swallow a connect
