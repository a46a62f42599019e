"""The compose topology on a shared Redis: the README's unary Triton example through round-robin nginx."""

from __future__ import annotations

import tritonclient.grpc as triton

from tests.deploy.topology import Balancer, Replica
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
