"""Idle streams: one client's streams without a first message take only its own share of the count, and each ends
with DEADLINE_EXCEEDED after --first-message-timeout (native and Triton)."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.grpc.generated.inference import grpc_service_pb2_grpc as triton_grpc

if TYPE_CHECKING:
    from tests.service.grpc.helpers import RunningServer

MODEL = "vowels_lstm"
ALICE, BOB = (("authorization", "Bearer alice-token"),), (("authorization", "Bearer bob-token"),)


def test_idle_streams_take_their_clients_share_only_and_end_with_deadline_exceeded(
    start_server: Callable[..., RunningServer],
) -> None:
    tokens = json.dumps({"alice-token": {"principal": "alice"}, "bob-token": {"principal": "bob"}})
    server = start_server(auth_tokens=tokens, max_streams_without_session=8,
                          max_streams_without_session_per_client=3, first_message_timeout=1.0)
    never: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()  # nothing is ever sent on these
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.SeqServeStub(channel)
        calls = [stub.Stream(iter(never.get, None), metadata=ALICE) for _ in range(3)]  # one more than alice's share
        calls.append(triton_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(never.get, None),
                                                                                   metadata=ALICE))
        opened = next(stub.Stream(iter([pb.StreamRequest(seq=0, open=pb.Open(model=MODEL))]), metadata=BOB))
        assert opened.WhichOneof("kind") == "opened"  # another client is not locked out
        ends = []
        for call in calls:  # each ends by itself: refused at once, or once the first-message timeout has passed
            with pytest.raises(grpc.RpcError) as ended:
                next(call)
            ends.append((ended.value.code(), ended.value.details()))  # type: ignore[attr-defined]
        codes = sorted(code.name for code, _ in ends)
        assert codes == ["DEADLINE_EXCEEDED"] * 3 + ["RESOURCE_EXHAUSTED"]
        assert all("first message" in details for code, details in ends if code.name == "DEADLINE_EXCEEDED")
        assert all("its share" in details for code, details in ends if code.name == "RESOURCE_EXHAUSTED")
        for _ in calls:
            never.put(None)
        again = stub.Stream(iter([pb.StreamRequest(seq=0, open=pb.Open(model=MODEL))]), metadata=ALICE)
        assert next(again).WhichOneof("kind") == "opened"  # the share is free again
        again.cancel()
