"""The soak's churn in miniature (`make soak`, `scripts/soak.py`): sessions ended, abandoned, dropped with their
connection, and Triton sequences never ended. Once they are gone, every per-session table of the server is empty
again (a table that kept one entry per connection, peer or sequence would grow for as long as the server runs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import numpy as np

from seqserve_client import Client
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from tests.service.grpc.helpers import RunningServer
from tests.service.grpc.test_auth import MODEL, triton_request

SAFETY_NET_S = 60.0  # a hung cleanup fails the test instead of hanging it; never a timed assertion


def test_every_table_is_empty_once_the_churning_clients_are_gone(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(max_sessions_per_client=64)  # the per-peer quota table takes part
    chunk = np.zeros((3, 12), np.float32)
    with Client(server.target) as client:
        for _ in range(3):  # opened, stepped, ended
            with client.stream(MODEL) as stream:
                stream.send(chunk)
        for _ in range(3):  # abandoned mid-way: the call cancelled, no end
            stream = client.stream(MODEL).__enter__()
            stream.send(chunk)
            stream.cancel()
    dropped = Client(server.target)  # its connection goes while the session is open (a SIGKILLed client)
    dropped.stream(MODEL).__enter__().send(chunk)
    dropped.close()
    with grpc.insecure_channel(server.target) as channel:  # Triton sequences started and never ended
        triton = tpb_grpc.GRPCInferenceServiceStub(channel)
        for sequence_id in (1, 2, 3):
            triton.ModelInfer(triton_request(chunk, sequence_id, start=True))
    model = server.registry.get(MODEL)

    async def settle() -> bool:
        model.evict_idle(time.monotonic() + 3600)  # what the idle reaper does once the Triton sequences go quiet
        ended = await server.registry.sessions_ended(SAFETY_NET_S)
        handlers = [watch.task for watch in server.serving.streams._open]  # stream RPCs still finishing
        if handlers:
            await asyncio.wait(handlers, timeout=SAFETY_NET_S)
        return ended

    assert server.call(settle())
    dataplane = server.serving.dataplane
    assert server.active_sessions(MODEL) == 0
    assert model._sessions == {} and model._on_close == {}
    assert len(model._batcher._company) == 0  # the sessions a batch waits for
    assert len(dataplane._sequences) == 0 and dataplane._sequences._tails == {}
    assert dataplane.quota._open == {}  # per peer host
    assert server.serving.streams._open == set()
