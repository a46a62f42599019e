"""The real `redis-server` of the session store tests (`bench/redis_server.py`), skipping where it is missing."""

from __future__ import annotations

import pytest

from bench.redis_server import RedisServer, redis_binary


def start_redis() -> RedisServer:
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (make deploy-deps installs Debian's package as root)")
    return RedisServer()


__all__ = ["RedisServer", "start_redis"]
