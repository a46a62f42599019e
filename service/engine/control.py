"""Model control: load, unload, the repository poll, and old versions draining (docs/model-control.md).

`apply(name)` brings one model in line with its folder and its version policy (`modelrepo/policy.py`): the
versions the policy lists are loaded in a worker thread (serving goes on), newest first; a version that fails
to load is reported (index, one log line, `seqserve_model_load_failures_total`) and passed over, so the version
before it goes on serving. A version the policy no longer lists, or a copy replaced by a reload, drains: no new
session starts on it, its live sessions continue, and it is unloaded when the last one ends, or at
`--version-drain-timeout`, when its sessions are ended with FAILED_PRECONDITION naming the newest version. A
version left out that is not loaded here but whose sessions the shared store holds is loaded to drain the same way.
Every change of one model runs under that model's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelrepo import ModelVersionDir
from service.engine.drain import Drains, held_versions, migrate
from service.engine.errors import ConfigurationError, FailedPrecondition, ModelNotFound, clip
from service.engine.loading import (
    Fingerprint,
    LoadFailed,
    fingerprint,
    load_version,
    lower_priority,
    model_fingerprint,
    model_fingerprints,
    read_model,
)
from service.engine.model import ServedModel
from service.engine.model_states import StatesCollector
from service.engine.versions import LOADING, READY, UNAVAILABLE, UNLOADING, Version

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.engine.registry import Registry

log = logging.getLogger("service.engine.registry")
T = TypeVar("T")


class ModelControl:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._t = registry.tables
        self._settings = registry.settings
        self._root = Path(registry.settings.models)
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="seqserve-load", initializer=lower_priority)
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen: dict[str, Fingerprint | None] = {}  # the poll: each model's files when it was last applied
        self._unloaded: dict[str, Fingerprint | None] = {}  # unloaded by request: left alone until files change
        s = registry.settings
        self._drains = Drains(self._t, s.version_drain_timeout, self._changed, s.repository_poll_secs)
        self._poller: asyncio.Task[None] | None = None
        self._started = False
        self.on_change: Callable[[], None] | None = None  # called after models came or went (health follows)
        registry.metrics.registry.register(StatesCollector(registry))

    async def start(self) -> None:
        """Load every model found (a `ConfigurationError` stops the start); then poll in `poll` mode."""
        for name, files in (await self._thread(model_fingerprints, self._root)).items():
            self._seen[name] = files
            await self.apply(name)
        self._started = True
        if self._settings.model_control_mode == "poll":
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever(), name="repository-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self._drains.stop()
        self._loader.shutdown(wait=True)

    async def load(self, name: str) -> None:
        """Load (or reload) `name` as a client asks; `FailedPrecondition` naming the reason when its newest
        version did not load (an older one may go on serving)."""
        folder = self._folder(name)
        self._unloaded.pop(name, None)
        self._seen[name] = await self._thread(model_fingerprint, folder)
        await asyncio.shield(self.apply(name, requested=True))  # a client that goes away leaves no half load
        versions = self._t.versions.get(name, {})
        failed = [(v, e.reason) for v, e in sorted(versions.items(), reverse=True) if e.failed]
        newest = self._t.serving.get(name)
        if failed and (newest is None or failed[0][0] >= newest.version):  # (equal: its reload failed)
            still = f"; version {newest.version} goes on serving" if newest is not None else ""
            raise FailedPrecondition(f"model {name!r} version {failed[0][0]} failed to load: {failed[0][1]}{still}")
        if newest is None:
            raise FailedPrecondition(f"model {name!r} has no version to serve: "
                                     + "; ".join(f"version {v}: {e.reason}" for v, e in sorted(versions.items())))

    async def unload(self, name: str, force: bool = False) -> int:
        """Unload every version of `name`; how many live sessions `force` ended (else `FailedPrecondition`)."""
        return await asyncio.shield(self._unload(name, force))  # a client that goes away leaves no half unload

    async def _unload(self, name: str, force: bool) -> int:
        self._check_allowed()
        versions = self._t.versions.get(name)
        if not versions:
            raise ModelNotFound(f"unknown model {clip(name)}")
        async with self._lock(name):
            copies = self._registry.instances(name)
            live = sum(m.active_sessions for m in copies)
            if live and not force:
                raise FailedPrecondition(f"model {name!r} has {live} live sessions; unload it with force to end them")
            reason = f"model {name!r} was unloaded by request: open a new session once it is loaded again"
            ended = 0
            for copy in copies:
                self._drains.cancel(copy)
                ended += copy.end_sessions(reason)
            await asyncio.gather(*(copy.close() for copy in copies))
            for version, entry in list(versions.items()):
                entry.model, entry.state, entry.reason, entry.failed = None, UNAVAILABLE, "unloaded by request", False
                if entry.removed:
                    del versions[version]
            self._t.serving.pop(name, None)
            self._unloaded[name] = await self._thread(model_fingerprint, self._root / name)
        log.info("unloaded %s by request (%d live sessions ended)", name, ended)
        self._changed()
        return ended

    async def poll(self) -> None:
        """One look at the repository: apply every model whose files changed since, or that is gone."""
        current = await self._thread(model_fingerprints, self._root)
        for name in sorted({*current, *self._t.versions}):
            files = current.get(name)
            if name in self._seen and self._seen[name] == files:
                continue
            self._seen[name] = files
            if name in self._unloaded and self._unloaded[name] == files:
                continue
            self._unloaded.pop(name, None)
            await self.apply(name)

    async def apply(self, name: str, requested: bool = False) -> None:
        """Bring `name` in line with its folder and version policy (`requested`: retry failed versions too)."""
        async with self._lock(name):
            found, config, problem = await self._thread(read_model, self._root / name)
            versions = self._t.versions.setdefault(name, {})
            for version, entry in list(versions.items()):
                if version not in found:
                    self._remove(name, version, entry)
            served: set[int] = set()
            if config is None:  # an invalid config.json: what is served stays, nothing new loads
                served = {v for v, e in versions.items() if e.state == READY}
                self._failed(name, 0, problem)
            else:
                order, wanted = config.version_policy.candidates(found)
                for version in order:
                    if wanted is not None and len(served) >= wanted:
                        break
                    if await self._ensure(name, found[version], requested):
                        served.add(version)
                held, unsure = await held_versions(self._registry.store, name, versions, set(found) - served)
                for version in held:  # left out, but its stored sessions go on here: it loads to drain
                    await self._ensure(name, found[version], False)
                if unsure:  # the store could not say: the next poll applies this model again
                    self._seen.pop(name, None)
            self._update(name)
            policy = problem if config is None else \
                f"not listed by its version policy ({config.version_policy.describe()})"
            for version, folder in found.items():
                entry = versions.setdefault(version, Version(folder, UNAVAILABLE, policy))
                if version in served:
                    continue
                if entry.state == READY:
                    why = policy if config is None else migrate(entry.model, self._t.serving.get(name), config, policy)
                    self._drains.retire(name, entry, why)
                elif entry.state == UNAVAILABLE and not entry.failed:
                    entry.reason = policy if config is not None or not entry.reason else entry.reason
            if not versions:
                del self._t.versions[name]
        self._changed()

    async def _ensure(self, name: str, found: ModelVersionDir, requested: bool) -> bool:
        """Whether `found` is served after this (loaded now if it was not, or if its files changed)."""
        versions = self._t.versions[name]
        entry = versions.get(found.version)
        files = fingerprint(found)
        if entry is not None and entry.fingerprint == files:
            if entry.state == READY:
                return True
            if entry.state == UNLOADING and entry.model is not None:  # listed again before it drained
                self._drains.reinstate(entry)
                return True
            if entry.failed and not requested:
                return False
        if entry is None:
            entry = versions[found.version] = Version(found)
        previous = entry.model if entry.state == READY else None
        if previous is None:
            entry.state, entry.reason, entry.model = LOADING, "", None
        entry.found, entry.fingerprint = found, files
        try:
            loaded = await self._thread(load_version, found, self._settings)
        except (LoadFailed, ConfigurationError) as exc:
            if isinstance(exc, ConfigurationError) and not self._started:
                raise
            entry.failed = True
            self._failed(name, found.version, str(exc))
            if previous is not None:
                entry.reason = f"a reload failed, the copy loaded before goes on serving: {exc}"
                return True
            entry.state, entry.reason = UNAVAILABLE, str(exc)
            return False
        r = self._registry
        model = ServedModel(loaded.manifest, loaded.runtime, self._settings, r.metrics.for_model(name), r.executor,
                            loaded.tuning, r.store)
        model.draining = r.draining
        model.start()
        entry.model, entry.state, entry.reason, entry.failed = model, READY, "", False
        self._update(name)  # new sessions go to it now, not after the other versions' loads
        self._t.loads[name] = self._t.loads.get(name, 0) + 1
        log.info("serving %s version %d on %s", name, found.version, model.provider)
        log.info("tuned %s version %d: %s", name, found.version, loaded.tuning.describe())
        if previous is not None:
            self._drains.start(previous, None, f"version {found.version} was reloaded")
        return True

    def _update(self, name: str) -> None:
        ready = [e.model for _, e in sorted(self._t.versions.get(name, {}).items()) if e.state == READY and e.model]
        if ready:
            self._t.serving[name] = ready[-1]
        else:
            self._t.serving.pop(name, None)

    def _remove(self, name: str, version: int, entry: Version) -> None:
        entry.removed = True
        if entry.state == READY:
            self._drains.retire(name, entry, "its folder was removed")
        elif entry.state != UNLOADING:
            del self._t.versions[name][version]

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _failed(self, name: str, version: int, reason: str) -> None:
        self._t.load_failures[name] = self._t.load_failures.get(name, 0) + 1
        where = f"{name} version {version}" if version else name
        log.error("not serving %s: %s", where, " ".join(reason.split()))

    def _check_allowed(self) -> None:
        if self._settings.model_control_mode == "none":
            raise FailedPrecondition("model control is off (--model-control-mode none): models load at start only")

    def _folder(self, name: str) -> Path:
        self._check_allowed()
        # a name is one of the repository's folders, compared as text: no path is built from what a client sent
        names = {p.name for p in self._root.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if name not in names:
            raise ModelNotFound(f"no model {clip(name)} in the repository")
        return self._root / name

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._loader, function, *args)

    async def _poll_forever(self) -> None:
        failing = ""  # the last failure logged: a repository gone for a while is one line, not one per poll
        while True:
            await asyncio.sleep(self._settings.repository_poll_secs)
            try:
                await self.poll()
            except OSError as exc:  # e.g. the repository unmounted: what is served stays; the next poll tries again
                if str(exc) != failing:
                    log.warning("cannot read the model repository %s: %s; serving what is loaded", self._root, exc)
                failing = str(exc)
                continue
            except Exception:  # a poll never stops polling
                log.exception("repository poll failed")
            failing = ""
