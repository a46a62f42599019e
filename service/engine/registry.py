"""The registry: the model versions under `settings.models` and their states, while serving.

Each version found is READY (served), LOADING (in a worker thread: serving goes on), UNLOADING (its version policy
no longer lists it, or a newer copy replaced it: no new session starts on it, its live sessions continue until
they end) or UNAVAILABLE with the reason (failed to load, not in the policy, unloaded). `get(name)` is the newest
READY version, where requests without a version and new sessions go; `get(name, v)` a READY version. A session
keeps the `ServedModel` it opened on, so it stays on its version whatever is loaded later; `instances(name)` also
lists the draining ones, for a request that continues a session (`service/engine/control.py` loads, unloads, polls
and drains; docs/model-control.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from service.engine.control import ModelControl
from service.engine.errors import ConfigurationError, FailedPrecondition, ModelNotFound, Unavailable, clip
from service.engine.metrics import Metrics
from service.engine.model import ServedModel
from service.engine.state.store import RedisStore, open_store
from service.engine.versions import READY, UNLOADING, ModelStatus, Tables, Version
from service.settings import Settings

__all__ = ["ModelStatus", "Registry"]

log = logging.getLogger(__name__)

MODEL_WORKERS = 2  # threads running model batches, shared by every model (at least max_runs_in_flight)


class Registry:
    def __init__(self, settings: Settings, metrics: Metrics, store: RedisStore | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tables = Tables()
        self.executor = ThreadPoolExecutor(max_workers=max(MODEL_WORKERS, settings.max_runs_in_flight),
                                           thread_name_prefix="seqserve-model")
        self.store = store  # the session store every model shares (None: memory)
        self.draining = False
        self._reaper: asyncio.Task[None] | None = None
        self.control = ModelControl(self)

    @classmethod
    async def load(cls, settings: Settings, metrics: Metrics) -> Registry:
        """Load every model version its policy lists; raises `ConfigurationError` when the server cannot start."""
        if not settings.models.is_dir():
            raise ConfigurationError(f"model repository {settings.models} is not a directory")
        store = open_store(settings.session_store, settings.session_idle_timeout, settings.max_stored_sessions,
                           timeout_s=settings.session_store_timeout,
                           resolve_s=settings.session_store_resolve_timeout,
                           memory_fraction=settings.session_store_memory_fraction)
        if store is not None and not await store.ping():
            log.warning("session store %s is unreachable for now: stateful steps get UNAVAILABLE until it is back",
                        store.safe_url)
        metrics.store = store  # its counters on /metrics
        registry = cls(settings, metrics, store)
        try:
            await registry.control.start()
        except ConfigurationError:
            await registry.close()
            raise
        if not registry.tables.versions:
            log.warning("model repository %s holds no model (expected <models>/<name>/<version>/)", settings.models)
        loop = asyncio.get_running_loop()
        registry._reaper = loop.create_task(registry._evict_forever(settings.session_idle_timeout), name="reaper")
        return registry

    @property
    def names(self) -> set[str]:
        """Every model name found (a metrics label is one of these)."""
        return set(self.tables.versions)

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The model version (newest ready one by default); `ModelNotFound`, `Unavailable` with the reason, or
        `FailedPrecondition` for a version that only finishes its live sessions."""
        versions = self.tables.versions.get(name)
        if not versions:
            raise ModelNotFound(f"unknown model {clip(name)}")
        if version is None:
            served = self.tables.serving.get(name)
            if served is not None:
                return served
            newest = versions[max(versions)]
            raise Unavailable(f"model {name!r} version {newest.found.version} is not available: "
                              f"{newest.reason or newest.state.lower()}")
        entry = versions.get(version)
        if entry is None:
            raise ModelNotFound(f"model {name!r} has no version {clip(version)}")
        if entry.state == READY and entry.model is not None:
            return entry.model
        if entry.state == UNLOADING:
            raise FailedPrecondition(f"model {name!r} version {version} only finishes its live sessions: "
                                     f"{entry.reason}")
        raise Unavailable(f"model {name!r} version {version} is not available: {entry.reason or entry.state.lower()}")

    def instances(self, name: str) -> list[ServedModel]:
        """Every loaded copy of `name` (READY and draining), newest version first: where live sessions are."""
        ready = [e.model for e in self.tables.versions.get(name, {}).values() if e.state == READY and e.model]
        draining = [m for m in self.tables.draining if m.name == name]
        return sorted([*ready, *draining], key=lambda m: m.version, reverse=True)

    def statuses(self) -> list[ModelStatus]:
        rows = []
        for name, versions in sorted(self.tables.versions.items()):
            newest = self.tables.serving.get(name)
            for version, e in sorted(versions.items()):
                m = e.model
                rows.append(ModelStatus(
                    name, version, e.state == READY, e.reason, None if m is None else m.provider,
                    None if m is None else m.manifest, None if m is None else m.tuning, e.state,
                    0 if m is None else m.active_sessions, newest is not None and newest is m, e.failed,
                ))
        return rows

    def models(self) -> list[ServedModel]:
        """Every served (ready) model version, by name then version."""
        return [e.model for _, versions in sorted(self.tables.versions.items())
                for _, e in sorted(versions.items()) if e.state == READY and e.model is not None]

    def loaded(self) -> list[ServedModel]:
        """Every loaded copy, draining ones included."""
        copies = {id(e.model): e.model for e in self._entries() if e.model is not None}
        copies.update((id(m), m) for m in self.tables.draining)
        return list(copies.values())

    def begin_drain(self) -> None:
        """New sessions now raise `Unavailable`; open sessions continue."""
        self.draining = True
        for model in self.loaded():
            model.draining = True

    async def sessions_ended(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every session to end (client end, cancel, END, eviction); whether they did."""
        models = self.loaded()
        if not any(m.active_sessions for m in models):
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(m.sessions_ended() for m in models)), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop loading, drain every batcher, close every session, stop the threads."""
        self.begin_drain()
        await self.control.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(m.close() for m in self.loaded()))
        self.executor.shutdown(wait=True)
        if self.store is not None:
            await self.store.close()

    def _entries(self) -> list[Version]:
        return [e for versions in self.tables.versions.values() for e in versions.values()]

    async def _evict_forever(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(min(timeout / 4, 1.0))
            self._evict(time.monotonic())  # in a function: no model stays referenced by this frame while it sleeps

    def _evict(self, now: float) -> None:
        for model in self.loaded():
            if evicted := model.evict_idle(now):
                log.info("evicted %d idle sessions of %s version %d", evicted, model.name, model.version)
