"""A new version rolls out under live traffic through the real server (poll mode, memory store): native streams and
Triton sequences opened on v1 keep going while v2 is published, loaded and served; none sees an error, each equals
v1's whole-sequence run; new sessions get v2 and equal v2's run; v1 is unloaded once its last session ended. A
corrupt v2 leaves v1 serving with the reason in the index. Everything waits on real events (the index polled until
it changes, bounded), never on a sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from seqserve_client import Client
from tests.service.grpc.helpers import RunningServer
from tests.service.versions import MODEL, copy_shipped, publish, whole_run

STREAMS = 8  # of each kind: native streams and Triton sequences
STEPS, CHUNK = 24, 4  # 6 chunks: 2 before the publish, 2 while v2 loads, 2 once it serves
SAFETY_NET_S = 120.0  # a bounded wait, never a timed assertion
TOLERANCE = 1e-4


def wait_index(target: str, version: int, wanted: str, name: str = MODEL) -> str:
    """Poll Triton's RepositoryIndex until `name` `version` is in state `wanted`; its reason."""
    with triton.InferenceServerClient(target) as client:
        deadline = time.monotonic() + SAFETY_NET_S
        while time.monotonic() < deadline:
            rows = {(m.name, m.version): m for m in client.get_model_repository_index().models}
            row = rows.get((name, str(version)))
            if row is not None and row.state == wanted:
                return str(row.reason)
            time.sleep(0.02)
    raise AssertionError(f"{name} version {version} never became {wanted}: {rows}")


def triton_step(client: triton.InferenceServerClient, sequence_id: int, chunk: np.ndarray, start: bool, end: bool
                ) -> tuple[str, np.ndarray]:
    tensor = triton.InferInput("input", [1, *chunk.shape], "FP32")
    tensor.set_data_from_numpy(chunk[None])
    result = client.infer(MODEL, [tensor], sequence_id=sequence_id, sequence_start=start, sequence_end=end)
    return result.get_response().model_version, result.as_numpy("logits")[0]


def run_live(target: str, x: np.ndarray, stages: list[threading.Event], arrived: threading.Barrier,
             triton_kind: bool, index: int, out: dict[str, object]) -> None:
    """One live session through the stages: 2 chunks, then 2 more after each event; records versions seen."""
    chunks = [x[i:i + CHUNK] for i in range(0, STEPS, CHUNK)]
    pieces, versions = [], []
    try:
        if triton_kind:
            with triton.InferenceServerClient(target) as client:
                for k, chunk in enumerate(chunks):
                    if k in (2, 4):
                        arrived.wait(SAFETY_NET_S)
                        stages[k // 2 - 1].wait(SAFETY_NET_S)
                    version, y = triton_step(client, 1000 + index, chunk, k == 0, k == len(chunks) - 1)
                    pieces.append(y)
                    versions.append(version)
        else:
            with Client(target) as client, client.stream(MODEL) as stream:
                versions.append(str(stream.info.version))
                for k, chunk in enumerate(chunks):
                    if k in (2, 4):
                        arrived.wait(SAFETY_NET_S)
                        stages[k // 2 - 1].wait(SAFETY_NET_S)
                    pieces.append(stream.send(chunk)["logits"])
        out["logits"], out["versions"] = np.concatenate(pieces), versions
    except Exception as exc:  # recorded: the test asserts there is none
        out["error"] = repr(exc)


def new_sessions(target: str, x: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    with Client(target) as client, client.stream(MODEL) as stream:
        native = (str(stream.info.version), np.concatenate([stream.send(x[i:i + CHUNK])["logits"]
                                                            for i in range(0, STEPS, CHUNK)]))
    with triton.InferenceServerClient(target) as client:
        steps = [triton_step(client, 5000, x[i:i + CHUNK], i == 0, i + CHUNK >= STEPS) for i in range(0, STEPS, CHUNK)]
    return [native[0], *(v for v, _ in steps)], [native[1], np.concatenate([y for _, y in steps])]


@pytest.fixture
def poll_server(start_server: Callable[..., RunningServer], tmp_path: Path) -> Callable[..., RunningServer]:
    def start(**overrides: object) -> RunningServer:
        return start_server(models=tmp_path, model_control_mode="poll", repository_poll_secs=0.05, **overrides)
    return start


def test_live_sessions_finish_on_v1_while_v2_rolls_out(poll_server: Callable[..., RunningServer], tmp_path: Path
                                                      ) -> None:
    v1 = copy_shipped(tmp_path, MODEL, 1)
    server = poll_server()
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((2 * STREAMS, STEPS, 12)).astype(np.float32)
    stages = [threading.Event(), threading.Event()]
    arrived = threading.Barrier(2 * STREAMS + 1)
    outs: list[dict[str, object]] = [{} for _ in range(2 * STREAMS)]
    threads = [threading.Thread(target=run_live, args=(server.target, xs[i], stages, arrived, i >= STREAMS, i, outs[i]))
               for i in range(2 * STREAMS)]
    for thread in threads:
        thread.start()
    arrived.wait(SAFETY_NET_S)  # every session open on v1, 2 chunks in
    v2 = publish(tmp_path, MODEL, 2, scale=0.7)
    stages[0].set()  # 2 more chunks each while v2 is picked up and loaded
    arrived.wait(SAFETY_NET_S)
    wait_index(server.target, 2, "READY")
    assert "new sessions start on version 2" in wait_index(server.target, 1, "UNLOADING")
    stages[1].set()  # the last 2 chunks once v2 serves
    for thread in threads:
        thread.join(SAFETY_NET_S)
    assert [o.get("error") for o in outs] == [None] * (2 * STREAMS)
    want1 = whole_run(v1, xs)["logits"]
    for i, out in enumerate(outs):
        assert set(out["versions"]) == {"1"}, out["versions"]  # type: ignore[arg-type]
        np.testing.assert_allclose(out["logits"], want1[i], atol=TOLERANCE)  # type: ignore[arg-type]
    assert wait_index(server.target, 1, "UNAVAILABLE").startswith("unloaded")  # its last session ended
    versions, outputs = new_sessions(server.target, xs[0])
    assert set(versions) == {"2"}
    want2 = whole_run(v2, xs[:1])["logits"][0]
    for y in outputs:
        np.testing.assert_allclose(y, want2, atol=TOLERANCE)
    assert not np.allclose(want2, want1[0], atol=1e-3)


def test_a_corrupt_v2_leaves_v1_serving_and_says_why(poll_server: Callable[..., RunningServer], tmp_path: Path
                                                    ) -> None:
    v1 = copy_shipped(tmp_path, MODEL, 1)
    server = poll_server()
    x = np.random.default_rng(3).standard_normal((STEPS, 12)).astype(np.float32)
    with Client(server.target) as client, client.stream(MODEL) as stream:
        first = stream.send(x[:CHUNK])["logits"]
        publish(tmp_path, MODEL, 2, corrupt=True)
        reason = wait_index(server.target, 2, "UNAVAILABLE")
        assert reason.startswith("cannot load the graph"), reason
        rest = stream.send(x[CHUNK:])["logits"]
    np.testing.assert_allclose(np.concatenate([first, rest]), whole_run(v1, x[None])["logits"][0], atol=TOLERANCE)
    assert wait_index(server.target, 1, "READY") == ""
    versions, _ = new_sessions(server.target, x)
    assert set(versions) == {"1"}
    assert server.metric("seqserve_model_load_failures_total", model=MODEL) == 1
