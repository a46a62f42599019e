"""Old copies draining: a version its policy no longer lists (or a copy a reload replaced) takes no new session;
its live sessions continue, and it is unloaded when the last one ends, or at `--version-drain-timeout`, when the
sessions still open are ended with FAILED_PRECONDITION naming the newest version; or, with session migration, the
live sessions continue on the newest version's weights (docs/model-control.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from modelrepo.policy import ModelConfig
from service.engine.errors import Unavailable
from service.engine.model import ServedModel, incompatible
from service.engine.versions import READY, UNAVAILABLE, UNLOADING, Tables, Version

if TYPE_CHECKING:
    from service.engine.state.store import RedisStore

log = logging.getLogger("service.engine.registry")


def migrate(old: ServedModel | None, newest: ServedModel | None, config: ModelConfig, why: str) -> str:
    """With the model's session migration on (`config.json`) and the same tensors, `old`'s live sessions continue
    on `newest`'s weights from their next step (their state, slot and addressing stay); why `old` drains."""
    if config.session_migration is None or newest is None or old is None:
        return why
    if (problem := incompatible(old.manifest, newest.manifest)) is not None:
        log.warning("%s version %d: live sessions stay on it, no migration to version %d: %s", old.name,
                    old.version, newest.version, problem)
        return why
    old.continue_on(newest)
    who = config.session_migration.vouched_by
    log.info("live sessions of %s version %d continue on version %d's weights (vouched by %s)", old.name,
             old.version, newest.version, who)
    return f"{why}; its live sessions continue on version {newest.version}'s weights (session migration, vouched " \
           f"by {who})"


async def held_versions(store: RedisStore | None, name: str, versions: dict[int, Version],
                        left_out: Iterable[int]) -> tuple[list[int], bool]:
    """Of the versions the policy `left_out`, those not loaded here whose sessions the shared store still holds: the
    caller loads them to drain, so a replica started after a rollout serves them on their version. And whether the
    store could not be asked about one (then the caller asks again later)."""
    held: list[int] = []
    unsure = False
    if store is None:
        return held, unsure
    for version in sorted(left_out):
        entry = versions.get(version)
        if entry is not None and (entry.state != UNAVAILABLE or entry.failed):
            continue
        try:
            if await store.holds_version(name, version):
                held.append(version)
        except Unavailable as exc:  # the store is away: asked again at the next poll
            log.warning("cannot ask the session store for stored sessions of %s version %d: %s", name, version, exc)
            unsure = True
    return held, unsure


class Drains:
    def __init__(self, tables: Tables, timeout: float, changed: Callable[[], None], poll_s: float) -> None:
        self._t = tables
        self._timeout = timeout  # 0: until the sessions end
        self._poll_s = poll_s  # how often the shared store is asked whether sessions of a draining version remain
        self._changed = changed
        self._tasks: dict[ServedModel, asyncio.Task[None]] = {}

    def retire(self, name: str, entry: Version, why: str) -> None:
        """A READY version goes UNLOADING and drains."""
        newest = self._t.serving.get(name)
        entry.state = UNLOADING
        entry.reason = why + ("" if newest is None else f"; new sessions start on version {newest.version}")
        assert entry.model is not None
        self.start(entry.model, entry, why)

    def start(self, model: ServedModel, entry: Version | None, why: str) -> None:
        """Drain `model` (`entry`: the version it is the copy of, or None for a copy a reload replaced)."""
        self._t.draining.add(model)
        self._tasks[model] = asyncio.get_running_loop().create_task(self._drain(model, entry, why), name="drain")

    def reinstate(self, entry: Version) -> None:
        """A draining version listed again: back to READY, its copy kept."""
        assert entry.model is not None
        self.cancel(entry.model)
        entry.state, entry.reason = READY, ""

    def cancel(self, model: ServedModel) -> None:
        if (task := self._tasks.pop(model, None)) is not None:
            task.cancel()
        self._t.draining.discard(model)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sessions_gone(self, model: ServedModel) -> None:
        """Every live session ended: here, and with a shared store on every replica (its stored sessions gone)."""
        await model.sessions_ended()
        while model.store is not None and await self._stored(model):
            await asyncio.sleep(self._poll_s)
            await model.sessions_ended()

    async def _stored(self, model: ServedModel) -> bool:
        assert model.store is not None
        try:
            return await model.store.holds_version(model.name, model.version)
        except Unavailable:  # the store is away: keep the version until it can say
            return True

    async def _drain(self, model: ServedModel, entry: Version | None, why: str) -> None:
        try:
            await asyncio.wait_for(self._sessions_gone(model), self._timeout or None)
        except TimeoutError:
            newest = self._t.serving.get(model.name)
            then = "" if newest is None else f"; continue on version {newest.version}"
            ended = model.end_sessions(f"model {model.name!r} version {model.version} was unloaded at the end of "
                                       f"its drain timeout ({self._timeout:g} s): {why}{then}, in a new session")
            log.warning("ended %d live sessions of %s version %d at its drain timeout", ended, model.name,
                        model.version)
        await model.close()
        self._t.draining.discard(model)
        self._tasks.pop(model, None)
        if entry is not None and entry.model is model:
            entry.model = None
            if entry.state == UNLOADING:
                entry.state, entry.reason = UNAVAILABLE, f"unloaded: {why}"
            if entry.removed:
                self._t.versions.get(model.name, {}).pop(model.version, None)
                if not self._t.versions.get(model.name, True):
                    del self._t.versions[model.name]
        log.info("unloaded %s version %d (%s)", model.name, model.version, why)
        self._changed()
