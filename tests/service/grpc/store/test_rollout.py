"""A rollout with the Redis session store: the stored session records its version (in its key), so a Triton
sequence and a native stream opened on v1 continue on v1 after v2 serves, a native stream cut meanwhile resumes on
v1 without naming a version, and the outputs equal v1's whole-sequence run; new sessions start on v2. A replica
started after the rollout (its policy lists only v2) loads v1 for the stored v1 sessions and serves them on it."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tritonclient.grpc as triton

from seqserve_client import codec as convert
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from tests.service.grpc.test_rollout import CHUNK, STEPS, TOLERANCE, new_sessions, triton_step, wait_index
from tests.service.versions import MODEL, copy_shipped, publish, whole_run

if TYPE_CHECKING:
    from tests.redis_server import RedisServer
    from tests.service.grpc.helpers import RunningServer


def chunk_request(seq: int, x: np.ndarray) -> pb.StreamRequest:
    return pb.StreamRequest(seq=seq, chunk=pb.Chunk(input=convert.array_to_tensor(x)))


def logits(response: pb.StreamResponse) -> np.ndarray:
    return convert.tensors_to_arrays(response.result.outputs)["logits"]


def resume(stub: pb_grpc.SeqServeStub, opened: pb.StreamResponse, rest: np.ndarray) -> tuple[pb.Opened, np.ndarray]:
    """Resume a cut stream without naming a version (the one it started on), send `rest` and end it."""
    again = pb.Open(model=MODEL, resume=opened.opened.resume_token)
    call = stub.Stream(iter([pb.StreamRequest(seq=0, open=again), chunk_request(2, rest),
                             pb.StreamRequest(seq=3, end=pb.End())]))
    reopened, answer = next(call), next(call)
    assert list(call) == []
    return reopened.opened, logits(answer)


def test_stored_sessions_stay_on_their_version_and_resume_there(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, tmp_path: Path
) -> None:
    v1 = copy_shipped(tmp_path, MODEL, 1)
    server = start_server(models=tmp_path, session_store=redis_server.url, repository_poll_secs=0.05)
    xs = np.random.default_rng(5).standard_normal((2, STEPS, 12)).astype(np.float32)
    half = STEPS // 2
    sent: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
    for request in (pb.StreamRequest(seq=0, open=pb.Open(model=MODEL)), chunk_request(1, xs[0, :half])):
        sent.put(request)
    with triton.InferenceServerClient(server.target) as client, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.SeqServeStub(channel)
        call = stub.Stream(iter(sent.get, None))
        opened, first = next(call), next(call)
        assert opened.opened.version == 1 and opened.opened.resume_token
        pieces = [triton_step(client, 11, xs[1, i:i + CHUNK], i == 0, False) for i in range(0, half, CHUNK)]
        v2 = publish(tmp_path, MODEL, 2, scale=0.7)
        wait_index(server.target, 2, "READY")
        call.cancel()  # cut while v2 serves: the stored session stays for a resume
        sent.put(None)
        again, rest = resume(stub, opened, xs[0, half:])
        assert again.version == 1 and again.position == 1
        pieces += [triton_step(client, 11, xs[1, i:i + CHUNK], False, i + CHUNK >= STEPS)
                   for i in range(half, STEPS, CHUNK)]
    want1 = whole_run(v1, xs)["logits"]
    np.testing.assert_allclose(np.concatenate([logits(first), rest]), want1[0], atol=TOLERANCE)
    assert {v for v, _ in pieces} == {"1"}
    np.testing.assert_allclose(np.concatenate([y for _, y in pieces]), want1[1], atol=TOLERANCE)
    assert wait_index(server.target, 1, "UNAVAILABLE").startswith("unloaded")
    versions, outputs = new_sessions(server.target, xs[0])
    assert set(versions) == {"2"}
    for y in outputs:
        np.testing.assert_allclose(y, whole_run(v2, xs[:1])["logits"][0], atol=TOLERANCE)


def test_another_replica_keeps_the_old_version_for_the_stored_sessions(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, tmp_path: Path
) -> None:
    v1 = copy_shipped(tmp_path, MODEL, 1)
    a, b = (start_server(models=tmp_path, session_store=redis_server.url, repository_poll_secs=0.05)
            for _ in range(2))
    x = np.random.default_rng(8).standard_normal((STEPS, 12)).astype(np.float32)
    half = STEPS // 2
    with triton.InferenceServerClient(a.target) as on_a:
        pieces = [triton_step(on_a, 21, x[i:i + CHUNK], i == 0, False) for i in range(0, half, CHUNK)]
    publish(tmp_path, MODEL, 2, scale=0.7)
    for server in (a, b):
        wait_index(server.target, 2, "READY")
    # b never served the sequence, yet keeps v1 (UNLOADING) while the store holds a v1 session
    assert "new sessions start on version 2" in wait_index(b.target, 1, "UNLOADING")
    with triton.InferenceServerClient(b.target) as on_b:  # the sequence moves to b, without naming a version
        pieces += [triton_step(on_b, 21, x[i:i + CHUNK], False, i + CHUNK >= STEPS) for i in range(half, STEPS, CHUNK)]
    assert {v for v, _ in pieces} == {"1"}
    np.testing.assert_allclose(np.concatenate([y for _, y in pieces]), whole_run(v1, x[None])["logits"][0],
                               atol=TOLERANCE)
    assert wait_index(b.target, 1, "UNAVAILABLE").startswith("unloaded")  # the stored session ended


def test_a_replica_started_after_the_rollout_loads_the_old_version_for_its_stored_sessions(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, tmp_path: Path
) -> None:
    v1, half = copy_shipped(tmp_path, MODEL, 1), STEPS // 2
    a = replica(start_server, redis_server, tmp_path)
    xs = np.random.default_rng(13).standard_normal((2, STEPS, 12)).astype(np.float32)
    with triton.InferenceServerClient(a.target) as on_a, grpc.insecure_channel(a.target) as channel:
        call = pb_grpc.SeqServeStub(channel).Stream(iter([pb.StreamRequest(seq=0, open=pb.Open(model=MODEL)),
                                                          chunk_request(1, xs[0, :half])]))
        opened, first = next(call), next(call)
        call.cancel()  # cut on a: the stored v1 session waits for a resume
        pieces = [triton_step(on_a, 31, xs[1, i:i + CHUNK], i == 0, False) for i in range(0, half, CHUNK)]
    publish(tmp_path, MODEL, 2, scale=0.7)
    wait_index(a.target, 2, "READY")
    # b starts after the rollout: its policy (latest 1) lists only v2, yet it loads v1 for the stored v1 sessions
    b = replica(start_server, redis_server, tmp_path)
    assert "new sessions start on version 2" in wait_index(b.target, 1, "UNLOADING")
    with triton.InferenceServerClient(b.target) as on_b, grpc.insecure_channel(b.target) as channel:
        again, rest = resume(pb_grpc.SeqServeStub(channel), opened, xs[0, half:])
        pieces += [triton_step(on_b, 31, xs[1, i:i + CHUNK], False, i + CHUNK >= STEPS)
                   for i in range(half, STEPS, CHUNK)]
    assert again.version == 1 and again.position == 1
    want1 = whole_run(v1, xs)["logits"]
    np.testing.assert_allclose(np.concatenate([logits(first), rest]), want1[0], atol=TOLERANCE)
    assert {v for v, _ in pieces} == {"1"}
    np.testing.assert_allclose(np.concatenate([y for _, y in pieces]), want1[1], atol=TOLERANCE)
    assert wait_index(b.target, 1, "UNAVAILABLE").startswith("unloaded")  # its stored sessions ended
    assert set(new_sessions(b.target, xs[0])[0]) == {"2"}


def replica(start_server: Callable[..., RunningServer], redis_server: RedisServer, models: Path) -> RunningServer:
    return start_server(models=models, session_store=redis_server.url, repository_poll_secs=0.05)
