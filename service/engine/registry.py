"""The registry: every model version under `settings.models`, loaded, validated and warmed up.

A version that fails (bad manifest, hash, graph or warm-up) is kept with its reason and not served; the
others are. `get(name)` serves the newest ready version; every ready version is addressable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from modelrepo import Manifest, ManifestError, ModelVersionDir, scan_repository
from service.engine.errors import ConfigurationError, ModelNotFound, Unavailable, clip
from service.engine.metrics import Metrics
from service.engine.model import ServedModel
from service.engine.runtime import Runtime
from service.engine.state.store import RedisStore, open_store
from service.engine.tuning import Tuning, tune
from service.engine.validation import ModelInvalid, check_graph, check_sha256, warm_up
from service.settings import Settings

log = logging.getLogger(__name__)

MODEL_WORKERS = 2  # threads running model batches, shared by every model (one batch in flight per model)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: int
    ready: bool
    reason: str
    provider: str | None
    manifest: Manifest | None
    tuning: Tuning | None = None  # threads and inline decisions taken at load (ready versions)


class Registry:
    def __init__(
        self, statuses: list[ModelStatus], models: dict[tuple[str, int], ServedModel], executor: Executor,
        store: RedisStore | None = None,
    ) -> None:
        self._statuses = sorted(statuses, key=lambda s: (s.name, s.version))
        self._by_name: dict[str, list[ModelStatus]] = {}  # `get` runs on every request: no list scan
        for status in self._statuses:
            self._by_name.setdefault(status.name, []).append(status)
        self._models = models
        self._executor = executor
        self.store = store  # the session store every model shares (None: memory)
        self._reaper: asyncio.Task[None] | None = None
        self.draining = False

    @classmethod
    async def load(cls, settings: Settings, metrics: Metrics) -> Registry:
        """Load every model version; raises `ConfigurationError` when the server cannot start at all."""
        if not settings.models.is_dir():
            raise ConfigurationError(f"model repository {settings.models} is not a directory")
        store = open_store(settings.session_store, settings.session_idle_timeout, settings.max_stored_sessions)
        if store is not None and not await store.ping():
            log.warning("session store %s is unreachable for now: stateful steps get UNAVAILABLE until it is back",
                        settings.session_store)
        metrics.store = store  # its counters on /metrics
        executor = ThreadPoolExecutor(max_workers=MODEL_WORKERS, thread_name_prefix="seqserve-model")
        loop = asyncio.get_running_loop()
        statuses: list[ModelStatus] = []
        models: dict[tuple[str, int], ServedModel] = {}
        for versions in scan_repository(settings.models).values():
            for found in versions:
                try:
                    manifest, runtime, tuning = await loop.run_in_executor(executor, _load_version, found, settings)
                except (ManifestError, ModelInvalid) as exc:
                    statuses.append(_failed(found, str(exc), settings))
                    continue
                except ConfigurationError:
                    await cls(statuses, models, executor, store).close()
                    raise
                except Exception as exc:  # onnxruntime refusing the graph, unreadable file, ...
                    log.exception("cannot load %s version %d", found.name, found.version)
                    reason = f"cannot load the graph: {type(exc).__name__}: {exc}"
                    statuses.append(_failed(found, reason, settings))
                    continue
                model = ServedModel(
                    manifest, runtime, settings, metrics.for_model(found.name), executor, tuning, store
                )
                model.start()
                models[(found.name, found.version)] = model
                statuses.append(ModelStatus(found.name, found.version, True, "", runtime.provider, manifest, tuning))
                log.info("serving %s version %d on %s", found.name, found.version, runtime.provider)
                log.info("tuned %s version %d: %s", found.name, found.version, tuning.describe())
        if not statuses:
            log.warning("model repository %s holds no model (expected <models>/<name>/<version>/)", settings.models)
        registry = cls(statuses, models, executor, store)
        registry._reaper = loop.create_task(registry._evict_forever(settings.session_idle_timeout), name="reaper")
        return registry

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The model version (newest ready one by default); `ModelNotFound` or `Unavailable` with the reason."""
        found = self._by_name.get(name, [])
        if not found:
            raise ModelNotFound(f"unknown model {clip(name)}")
        if version is not None:
            found = [s for s in found if s.version == version]
            if not found:
                raise ModelNotFound(f"model {name!r} has no version {clip(version)}")
        ready = [s for s in found if s.ready]
        if not ready:
            raise Unavailable(f"model {name!r} version {found[-1].version} is not available: {found[-1].reason}")
        return self._models[(name, ready[-1].version)]

    def statuses(self) -> list[ModelStatus]:
        return list(self._statuses)

    def models(self) -> list[ServedModel]:
        """Every served (ready) model version, by name then version."""
        return [self._models[(s.name, s.version)] for s in self._statuses if s.ready]

    def begin_drain(self) -> None:
        """New sessions now raise `Unavailable`; open sessions continue."""
        self.draining = True
        for model in self._models.values():
            model.draining = True

    async def sessions_ended(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every session to end (client end, cancel, END, eviction); whether they did."""
        if not any(m.active_sessions for m in self._models.values()):
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(m.sessions_ended() for m in self._models.values())), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Drain every batcher, close every session, stop the threads."""
        self.begin_drain()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(m.close() for m in self._models.values()))
        self._executor.shutdown(wait=True)
        if self.store is not None:
            await self.store.close()

    async def _evict_forever(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(min(timeout / 4, 1.0))
            now = time.monotonic()
            for model in self._models.values():
                if evicted := model.evict_idle(now):
                    log.info("evicted %d idle sessions of %s version %d", evicted, model.name, model.version)


def _load_version(found: ModelVersionDir, settings: Settings) -> tuple[Manifest, Runtime, Tuning]:
    """Runs in a worker thread: manifest, hash, session, graph check, warm-up, tuning."""
    manifest = Manifest.load(found.manifest_path)
    if (manifest.name, manifest.version) != (found.name, found.version):
        raise ModelInvalid(f"manifest says {manifest.name} version {manifest.version}, the folder is {found.path}")
    if not found.model_path.is_file():
        raise ModelInvalid(f"{found.model_path} is missing")
    check_sha256(found.model_path, manifest.onnx.sha256)
    label = f"{found.name} version {found.version}"
    pairs = {p.input: p.output for p in manifest.state}
    def make(threads: int) -> Runtime:
        return Runtime(found.model_path, settings.device, threads, label, pairs)

    runtime = make(settings.intra_op_threads or 1)
    check_graph(manifest, runtime)
    warm_up(manifest, runtime)
    s = settings
    return manifest, *tune(manifest, runtime, make, s.intra_op_threads, s.max_batch_size, s.inline_run_max_us)


def _failed(found: ModelVersionDir, reason: str, settings: Settings) -> ModelStatus:
    """A not-ready status; the reason names files relative to the repository and stays one short line."""
    reason = reason.replace(f"{settings.models.resolve()}/", "").replace(f"{settings.models}/", "")
    reason = " ".join(reason.split())[:600]
    log.error("not serving %s version %d: %s", found.name, found.version, reason)
    return ModelStatus(found.name, found.version, False, reason, None, None)
