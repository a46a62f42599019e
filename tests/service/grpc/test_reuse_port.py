"""A single server keeps SO_REUSEPORT off (grpc's default is on): a second one cannot silently share its port."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from service.engine.errors import ConfigurationError
from tests.service.grpc.helpers import RunningServer


def test_a_second_server_on_the_same_port_does_not_start(start_server: Callable[..., RunningServer]) -> None:
    first = start_server()
    with pytest.raises(ConfigurationError, match="cannot bind"):
        start_server(port=first.serving.port)
    with grpc.insecure_channel(first.target) as channel:  # the first one is untouched
        grpc.channel_ready_future(channel).result(timeout=30)
