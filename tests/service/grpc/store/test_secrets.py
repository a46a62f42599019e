"""The session store's password never reaches the log: every line the server logs while Redis needs a password,
fails, stalls and the server drains is searched for it."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from service.engine.state.secret import redact
from tests.service.grpc.triton.test_sequences import first_output, make_sequences

if TYPE_CHECKING:
    from tests.redis_server import RedisServer
    from tests.service.grpc.helpers import Reference, RunningServer

PASSWORD = "s3cret-Pa55word"


def test_urls_are_logged_without_their_credentials() -> None:
    assert redact("store redis://:pw@host:6379/0 down") == "store redis://***@host:6379/0 down"
    assert redact("rediss://user:pw@h/1 and unix://u:p@/tmp/s?db=0&password=x") == (
        "rediss://***@h/1 and unix://***@/tmp/s?db=0&password=***")
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


def test_the_store_password_never_appears_in_the_log(
    start_server: Callable[..., RunningServer], redis_server: RedisServer, reference: Reference,
    streamable: list[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with redis_server.client() as redis:
        redis.config_set("requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    server = start_server(session_store=url, session_store_timeout=0.2, session_store_resolve_timeout=0.3)
    client = triton.InferenceServerClient(server.target)
    (s,) = make_sequences(reference, streamable[:1], 1, seed=5)
    s.outputs.append(first_output(client.infer(**s.request(0))))
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # a stalled store: timeouts, reads back, unknown outcome
    try:
        with pytest.raises(InferenceServerException):
            client.infer(**s.request(1))
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    redis_server.stop()  # a dead store: connection errors
    with pytest.raises(InferenceServerException):
        client.infer(**s.request(1))
    server.stop()  # the drain names the store
    lines = [record.getMessage() for record in caplog.records]
    lines += [record.exc_text or "" for record in caplog.records]
    assert any("session store" in line and "***@" in line for line in lines)
    assert not [line for line in lines if PASSWORD in line]
    assert PASSWORD not in caplog.text  # formatted, tracebacks included
