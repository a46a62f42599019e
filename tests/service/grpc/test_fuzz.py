"""The bounded live fuzz (`make fuzz` runs a longer one): thousands of mutated messages on every RPC of both
services through the real server. No answer is INTERNAL or UNKNOWN, none hangs past its deadline, the server is
alive afterwards, and a clean stream running all along gets exactly its whole-sequence outputs."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from seqserve_client import Client
from service.grpc.generated.inference import grpc_service_pb2 as tpb
from service.grpc.generated.inference import grpc_service_pb2_grpc as tpb_grpc
from tests.service.grpc import fuzzing
from tests.service.grpc.helpers import Reference, RunningServer
from tests.service.helpers import MANIFESTS

MESSAGES = int(os.environ.get("FUZZ_MESSAGES", "6000"))  # `make fuzz` sets more
STREAM_SHARE = 0.2  # of the messages, sent inside streams
PER_STREAM = 10
SEED = int(os.environ.get("FUZZ_SEED", "12"))
MODEL = "vowels_lstm"


def clean_stream(target: str, reference: Reference, stop: threading.Event, failures: list[str]) -> None:
    """Whole sequences streamed chunk by chunk, over and over until `stop`; each must equal its whole run."""
    rng = np.random.default_rng(SEED)
    with Client(target) as client:
        while not stop.is_set():
            x = reference.sequence(MODEL, 40, rng)
            expected = reference.run(MODEL, x)
            with client.stream(MODEL) as stream:
                got = [stream.send(chunk) for chunk in reference.chunks(x, rng)]
            for name, want in expected.items():
                if not np.allclose(np.concatenate([g[name] for g in got]), want, atol=1e-4):
                    failures.append(f"{name} differs from the whole-sequence run")


def test_mutated_messages_on_every_rpc_never_get_internal_or_unknown_nor_hang(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = start_server()
    rng = random.Random(SEED)
    tally = fuzzing.Tally()
    stop, failures = threading.Event(), []
    clean = threading.Thread(target=clean_stream, args=(server.target, reference, stop, failures))
    clean.start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            streamed = int(MESSAGES * STREAM_SHARE)
            fuzzing.send_unary(channel, fuzzing.unary_mutants(MANIFESTS, rng, MESSAGES - streamed), tally)
            for i in range(streamed // PER_STREAM):
                if i % 2:
                    fuzzing.native_stream(channel, MANIFESTS[MODEL], rng, PER_STREAM, tally)
                else:
                    fuzzing.triton_stream(channel, MANIFESTS, rng, PER_STREAM, tally)
            live = tpb_grpc.GRPCInferenceServiceStub(channel).ServerLive(tpb.ServerLiveRequest(), timeout=10)
    finally:
        stop.set()
        clean.join()
    print(f"fuzz: {tally.messages} mutated messages; answers by code: {dict(tally.codes.most_common())}")
    assert tally.messages >= MESSAGES - PER_STREAM
    assert tally.bad() == {}, tally.codes
    assert live.live
    assert failures == []


GARBAGE = b"\xff\xff\xff\xff"  # a field tag whose varint never ends: protobuf cannot parse it
OPEN = fuzzing.npb.StreamRequest(open=fuzzing.npb.Open(model=MODEL)).SerializeToString()


def test_an_undecodable_message_is_invalid_argument_on_every_rpc_and_streams_end_with_it(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    services = [s for pb in (fuzzing.npb, fuzzing.tpb, health_pb2) for s in pb.DESCRIPTOR.services_by_name.values()]
    methods = [(service.full_name, method) for service in services for method in service.methods]
    with grpc.insecure_channel(server.target) as channel:
        for service, method in methods:
            path = f"/{service}/{method.name}"
            try:
                if method.client_streaming:  # inside a stream, after a valid first message where there is one
                    first = [OPEN] if method.name == "Stream" else []
                    list(channel.stream_stream(path)(iter([*first, GARBAGE]), timeout=fuzzing.DEADLINE_S))
                else:
                    channel.unary_unary(path)(GARBAGE, timeout=fuzzing.DEADLINE_S)
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT, (path, exc)  # type: ignore[attr-defined]
                assert "cannot be decoded" in exc.details(), (path, exc)  # type: ignore[attr-defined]
            else:
                raise AssertionError(f"{path} accepted an undecodable message")
