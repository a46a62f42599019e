"""Session lifecycle through the real server: end, cancel, disconnect and idle eviction free the slot at once
(the active-sessions gauge returns to 0); the session limit refuses and recovers; reset starts over."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from seqserve_client import Client, ServerError
from service.engine.sessions import Session

MODEL = "vowels_lstm"
SAFETY_TIMEOUT_S = 60.0  # only against a hang; the waits below end on a condition
DISCONNECTING_CLIENT = """
import sys
import numpy as np
from seqserve_client import Client
stream = Client(sys.argv[1]).stream(sys.argv[2])
stream.send(np.zeros((4, 12), np.float32))
print("streaming", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def session_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Condition]:
    """A condition notified every time the server closes a session (end, cancel, eviction, ...)."""
    condition = threading.Condition()
    close = Session.close

    def close_and_notify(self: Session) -> None:
        close(self)
        with condition:
            condition.notify_all()

    monkeypatch.setattr(Session, "close", close_and_notify)
    yield condition


def wait_for(condition: threading.Condition, predicate: Callable[[], bool]) -> bool:
    with condition:
        return condition.wait_for(predicate, timeout=SAFETY_TIMEOUT_S)


def test_end_frees_the_slot_before_the_stream_closes(start_server: Callable) -> None:
    server = start_server()
    with Client(server.target) as client:
        stream = client.stream(MODEL)
        stream.send(np.zeros((3, 12), np.float32))
        assert server.active_sessions(MODEL) == 1
        stream.close()
        assert server.active_sessions(MODEL) == 0


def test_cancel_frees_the_slot(start_server: Callable, session_closed: threading.Condition) -> None:
    server = start_server()
    with Client(server.target) as client:
        stream = client.stream(MODEL)
        stream.send(np.zeros((3, 12), np.float32))
        stream.cancel()
        assert wait_for(session_closed, lambda: server.active_sessions(MODEL) == 0)


def test_a_client_that_disappears_frees_the_slot(
    start_server: Callable, session_closed: threading.Condition, repo_root
) -> None:
    server = start_server()
    client = subprocess.Popen(
        [sys.executable, "-c", DISCONNECTING_CLIENT, server.target, MODEL],
        cwd=repo_root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "streaming"
        assert server.active_sessions(MODEL) == 1
    finally:
        client.kill()
        client.communicate()
    assert wait_for(session_closed, lambda: server.active_sessions(MODEL) == 0)


def test_idle_sessions_are_evicted_and_their_stream_is_told(
    start_server: Callable, session_closed: threading.Condition
) -> None:
    # Long enough that a loaded machine does not evict the session between its open and its first chunk.
    server = start_server(session_idle_timeout=1.0)
    with Client(server.target) as client:
        stream = client.stream(MODEL)
        stream.send(np.zeros((3, 12), np.float32))
        assert wait_for(session_closed, lambda: server.active_sessions(MODEL) == 0)
        assert server.metric("seqserve_evictions_total", model=MODEL) == 1
        with pytest.raises(ServerError) as caught:
            stream.send(np.zeros((3, 12), np.float32))
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and "expired" in caught.value.message


def test_the_session_limit_refuses_new_sessions_and_recovers(start_server: Callable) -> None:
    server = start_server(max_sessions=2)
    with Client(server.target) as client:
        first, second = client.stream(MODEL), client.stream(MODEL)
        with pytest.raises(ServerError) as caught:
            client.stream(MODEL)
        assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert server.active_sessions(MODEL) == 2
        first.close()
        with client.stream(MODEL) as third:
            assert third.send(np.zeros((2, 12), np.float32))["logits"].shape[0] == 2
        second.close()
    assert server.active_sessions(MODEL) == 0


def test_reset_starts_a_new_sequence_on_the_same_stream(start_server: Callable, reference) -> None:
    server = start_server()
    rng = np.random.default_rng(8)
    x, y = reference.sequence(MODEL, 9, rng), reference.sequence(MODEL, 11, rng)
    with Client(server.target) as client, client.stream(MODEL) as stream:
        stream.send(x)
        stream.reset()
        got = stream.send(y)["logits"]
    np.testing.assert_allclose(got, reference.run(MODEL, y)["logits"], rtol=0, atol=1e-4)
