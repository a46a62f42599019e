"""Start-up checks that turn an unusable configuration into one clear line (`ConfigurationError`, exit 2)."""

from __future__ import annotations

import socket

from service.engine.errors import ConfigurationError


def check_port_free(host: str, port: int, what: str) -> None:
    """`ConfigurationError` if `host:port` cannot be bound now (in use, no such address, not permitted)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(f"cannot bind the {what} port {host}:{port}: {exc.strerror or exc}") from None
