"""Two servers sharing one real Redis (`--session-store redis://`): any replica serves any Triton sequence.

Each server has its own event loop, pools and sequence table; only the store is shared, as between two processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.service.grpc.triton.test_sequences import (
    StreamAnswers,
    assert_parity,
    first_output,
    interleaved,
    make_sequences,
)

if TYPE_CHECKING:
    from tests.redis_server import RedisServer
    from tests.service.grpc.helpers import Reference, RunningServer


def test_sequences_alternating_between_two_servers_equal_whole_runs(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
    streamable: list[str],
) -> None:
    servers = [start_server(session_store=redis_server.url) for _ in range(2)]
    clients = [triton.InferenceServerClient(s.target) for s in servers]
    sequences = make_sequences(reference, streamable, 32, seed=11)
    for s, k in interleaved(sequences):
        s.outputs.append(first_output(clients[k % 2].infer(**s.request(k))))  # each request on the other server
    assert_parity(sequences, reference)
    for server in servers:  # on /metrics: round trips, and steps redone after the other server advanced them
        assert server.metric("seqserve_session_store_round_trips_total") > 0
        assert server.metric("seqserve_session_store_conflicts_total") > 0
    with redis_server.client() as redis:
        assert redis.dbsize() == 0  # END deleted every stored sequence


def test_redis_down_is_unavailable_with_a_clear_message_and_the_server_recovers(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
    streamable: list[str],
) -> None:
    server = start_server(session_store=redis_server.url)
    client = triton.InferenceServerClient(server.target)
    (s,) = make_sequences(reference, streamable[:1], 1, seed=2)
    s.outputs.append(first_output(client.infer(**s.request(0))))
    redis_server.stop()
    with pytest.raises(InferenceServerException) as refused:
        client.infer(**s.request(1))
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    assert "session store is unreachable" in refused.value.message()
    assert client.is_server_live() and client.is_server_ready()
    assert server.metric("seqserve_session_store_failures_total") > 0
    redis_server.start()
    s.outputs.clear()
    for k in range(len(s.chunks)):  # the store came back empty: the sequence starts again, and runs exactly
        s.outputs.append(first_output(client.infer(**s.request(k))))
    assert_parity([s], reference)


def test_streamed_sequences_move_from_one_server_to_the_other_halfway(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
    streamable: list[str],
) -> None:
    """32 sequences multiplexed on one ModelStreamInfer stream per server: the first half of every sequence on one
    server, the rest on the other (its requests queue behind each other and load from the store)."""
    servers = [start_server(session_store=redis_server.url) for _ in range(2)]
    sequences = make_sequences(reference, streamable, 32, seed=6)
    by_id = {str(s.sequence_id): s for s in sequences}
    sends = interleaved(sequences)
    first = [(s, k) for s, k in sends if k < len(s.chunks) // 2]
    halves = (first, [(s, k) for s, k in sends if k >= len(s.chunks) // 2])
    for server, half in zip(servers, halves, strict=True):
        client = triton.InferenceServerClient(server.target)
        answers = StreamAnswers()
        client.start_stream(callback=answers)
        for s, k in half:
            client.async_stream_infer(**s.request(k))
        arrived = answers.take(len(half))
        client.stop_stream()
        for result, error in arrived:
            assert error is None, error
            assert result is not None
            by_id[result.get_response().id.rsplit(":", 1)[0]].outputs.append(first_output(result))
    assert_parity(sequences, reference)
