"""Model control: load, unload, the repository poll, and old versions draining (docs/model-control.md).

`apply(name)` brings one model in line with its folder and its version policy (`modelrepo/policy.py`): the
versions the policy lists are loaded in a worker thread (serving goes on), newest first; a version that fails
to load is reported (index, one log line, `seqserve_model_load_failures_total`) and passed over, so the version
before it goes on serving. A version the policy no longer lists, or a copy replaced by a reload, drains: no new
session starts on it, its live sessions continue, and it is unloaded when the last one ends, or at
`--version-drain-timeout`, when its sessions are ended with FAILED_PRECONDITION naming the newest version.
Every change of one model runs under that model's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelrepo import ModelVersionDir
from modelrepo.policy import ModelConfig, PolicyError, load_model_config
from service.engine.errors import ConfigurationError, FailedPrecondition, ModelNotFound, clip
from service.engine.loading import Fingerprint, LoadFailed, config_fingerprint, fingerprint, load_version
from service.engine.model import ServedModel
from service.engine.model_states import StatesCollector
from service.engine.versions import LOADING, READY, UNAVAILABLE, UNLOADING, Version

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.engine.registry import Registry

log = logging.getLogger("service.engine.registry")
T = TypeVar("T")
Found = dict[int, ModelVersionDir]
LOADER_NICE = 10  # the loader thread's nice value (serving threads keep the process's own)


class ModelControl:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._t = registry.tables
        self._settings = registry.settings
        self._root = Path(registry.settings.models)
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="seqserve-load", initializer=_lower_priority)
        self._locks: dict[str, asyncio.Lock] = {}
        self._seen: dict[str, Fingerprint | None] = {}  # the poll: each model's files when it was last applied
        self._unloaded: dict[str, Fingerprint | None] = {}  # unloaded by request: left alone until files change
        self._drains: dict[ServedModel, asyncio.Task[None]] = {}
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
        tasks = [t for t in (self._poller, *self._drains.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loader.shutdown(wait=True)

    async def load(self, name: str) -> None:
        """Load (or reload) `name` as a client asks; `FailedPrecondition` naming the reason when its newest
        version did not load (an older one may go on serving)."""
        folder = self._folder(name)
        self._unloaded.pop(name, None)
        self._seen[name] = await self._thread(model_fingerprint, folder)
        await self.apply(name, requested=True)
        versions = self._t.versions.get(name, {})
        failed = [(v, e.reason) for v, e in sorted(versions.items(), reverse=True) if e.failed]
        newest = self._t.serving.get(name)
        if failed and (newest is None or failed[0][0] > newest.version):
            still = f"; version {newest.version} goes on serving" if newest is not None else ""
            raise FailedPrecondition(f"model {name!r} version {failed[0][0]} failed to load: {failed[0][1]}{still}")
        if newest is None:
            raise FailedPrecondition(f"model {name!r} has no version to serve: "
                                     + "; ".join(f"version {v}: {e.reason}" for v, e in sorted(versions.items())))

    async def unload(self, name: str, force: bool = False) -> int:
        """Unload every version of `name`; how many live sessions `force` ended (else `FailedPrecondition`)."""
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
                if (task := self._drains.pop(copy, None)) is not None:
                    task.cancel()
                ended += copy.end_sessions(reason)
            await asyncio.gather(*(copy.close() for copy in copies))
            self._t.draining.difference_update(copies)
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
            self._update(name)
            policy = problem if config is None else \
                f"not listed by its version policy ({config.version_policy.describe()})"
            for version, folder in found.items():
                entry = versions.setdefault(version, Version(folder, UNAVAILABLE, policy))
                if version in served:
                    continue
                if entry.state == READY:
                    self._retire(name, entry, policy)
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
                self._reinstate(entry)
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
        self._t.loads[name] = self._t.loads.get(name, 0) + 1
        log.info("serving %s version %d on %s", name, found.version, model.provider)
        log.info("tuned %s version %d: %s", name, found.version, loaded.tuning.describe())
        if previous is not None:
            self._drain(previous, None, f"version {found.version} was reloaded")
        return True

    def _update(self, name: str) -> None:
        ready = [e.model for _, e in sorted(self._t.versions.get(name, {}).items()) if e.state == READY and e.model]
        if ready:
            self._t.serving[name] = ready[-1]
        else:
            self._t.serving.pop(name, None)

    def _retire(self, name: str, entry: Version, why: str) -> None:
        newest = self._t.serving.get(name)
        entry.state = UNLOADING
        entry.reason = why + ("" if newest is None else f"; new sessions start on version {newest.version}")
        assert entry.model is not None
        self._drain(entry.model, entry, why)

    def _reinstate(self, entry: Version) -> None:
        assert entry.model is not None
        if (task := self._drains.pop(entry.model, None)) is not None:
            task.cancel()
        self._t.draining.discard(entry.model)
        entry.state, entry.reason = READY, ""

    def _remove(self, name: str, version: int, entry: Version) -> None:
        entry.removed = True
        if entry.state == READY:
            self._retire(name, entry, "its folder was removed")
        elif entry.state != UNLOADING:
            del self._t.versions[name][version]

    def _drain(self, model: ServedModel, entry: Version | None, why: str) -> None:
        self._t.draining.add(model)
        self._drains[model] = asyncio.get_running_loop().create_task(self._drained(model, entry, why), name="drain")

    async def _drained(self, model: ServedModel, entry: Version | None, why: str) -> None:
        timeout = self._settings.version_drain_timeout
        try:
            await asyncio.wait_for(model.sessions_ended(), timeout or None)
        except TimeoutError:
            newest = self._t.serving.get(model.name)
            then = "" if newest is None else f"; continue on version {newest.version}"
            ended = model.end_sessions(f"model {model.name!r} version {model.version} was unloaded at the end of "
                                       f"its drain timeout ({timeout:g} s): {why}{then}, in a new session")
            log.warning("ended %d live sessions of %s version %d at its drain timeout", ended, model.name,
                        model.version)
        await model.close()
        self._t.draining.discard(model)
        self._drains.pop(model, None)
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
        folder = self._root / name
        if not name or name.startswith(".") or "/" in name or "\\" in name or not folder.is_dir():
            raise ModelNotFound(f"no model {clip(name)} in the repository")
        return folder

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._loader, function, *args)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.repository_poll_secs)
            try:
                await self.poll()
            except Exception:  # a poll never stops polling: the next one tries again
                log.exception("repository poll failed")


def _lower_priority() -> None:
    """The loader thread yields the CPU to serving threads (Linux nice is per thread): a load takes longer on a busy
    machine, the streams do not."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICE)


def read_model(folder: Path) -> tuple[Found, ModelConfig | None, str]:
    """Runs in the loader thread: the version folders of one model and its config (None and why when invalid)."""
    found: Found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_dir() and path.name.isdigit() and int(path.name) > 0:
                found[int(path.name)] = ModelVersionDir(folder.name, int(path.name), path)
    try:
        return found, load_model_config(folder), ""
    except PolicyError as exc:
        return found, None, str(exc)


def model_fingerprint(folder: Path) -> Fingerprint | None:
    """What a model's files look like now (None: its folder is gone)."""
    if not folder.is_dir():
        return None
    found, _, _ = read_model(folder)
    rows = [*config_fingerprint(folder)]
    for version in sorted(found):
        rows += [(f"{version}/{file}", mtime, size) for file, mtime, size in fingerprint(found[version])]
    return tuple(rows)


def model_fingerprints(root: Path) -> dict[str, Fingerprint]:
    """Every model folder under `root` (not hidden) and its files."""
    rows = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (files := model_fingerprint(folder)) is not None:
            rows[folder.name] = files
    return rows
