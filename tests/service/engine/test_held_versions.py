"""Which versions left out by the policy a replica loads for the sessions a real Redis store still holds: those
not loaded here (none failed), and, with the store away, none yet but a flag that asks again."""

from __future__ import annotations

from pathlib import Path

from modelrepo import ModelVersionDir
from service.engine.drain import held_versions
from service.engine.state.scripts import ANY
from service.engine.state.store import RedisStore, Write, sequence_key
from service.engine.versions import READY, UNAVAILABLE, Version
from tests.redis_server import RedisServer


def entry(version: int, state: str, failed: bool = False) -> Version:
    return Version(ModelVersionDir("m", version, Path(str(version))), state, failed=failed)


async def test_the_versions_the_store_holds_sessions_of_and_a_store_that_cannot_say(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url, ttl_s=60, timeout_s=0.5)
    try:
        for version in (1, 2, 3):
            assert await store.commit([Write(sequence_key("m", version, 7), ANY, "e:1", 1, b"s")]) == [""]
        versions = {2: entry(2, UNAVAILABLE, failed=True), 3: entry(3, READY), 4: entry(4, UNAVAILABLE)}
        assert await held_versions(None, "m", versions, [1, 2, 3, 4, 5]) == ([], False)  # memory store: none
        # 1 (never seen here) is held; 2 failed to load, 3 is loaded already, 4 and 5 hold no session
        assert await held_versions(store, "m", versions, [1, 2, 3, 4, 5]) == ([1], False)
        assert await held_versions(store, "other", versions, [1]) == ([], False)
        redis_server.stop()
        assert await held_versions(store, "m", versions, [1]) == ([], True)
    finally:
        await store.close()
