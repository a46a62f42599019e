"""What the registry knows of each version folder: its state, reason and loaded copy (no logic here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelrepo import Manifest, ModelVersionDir
from service.engine.loading import Fingerprint

if TYPE_CHECKING:
    from service.engine.model import ServedModel
    from service.engine.tuning import Tuning

READY, LOADING, UNLOADING, UNAVAILABLE = "READY", "LOADING", "UNLOADING", "UNAVAILABLE"
STATES = (READY, LOADING, UNLOADING, UNAVAILABLE)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: int
    ready: bool
    reason: str
    provider: str | None
    manifest: Manifest | None
    tuning: Tuning | None = None  # threads and inline decisions taken at load (ready versions)
    state: str = READY  # READY, LOADING, UNLOADING or UNAVAILABLE
    sessions: int = 0  # live sessions on this version
    newest: bool = False  # requests without a version, and new sessions, go here
    failed: bool = False  # its last load failed (not merely left out by the version policy)


@dataclass(eq=False)
class Version:
    """One version folder as the registry knows it (`model`: its loaded copy, READY or UNLOADING)."""

    found: ModelVersionDir
    state: str = LOADING
    reason: str = ""
    model: ServedModel | None = None
    fingerprint: Fingerprint = ()
    failed: bool = False  # a load failed on `fingerprint`: not tried again until the files change (or a request)
    removed: bool = False  # its folder is gone: the entry goes once its copy is unloaded


@dataclass
class Tables:
    versions: dict[str, dict[int, Version]] = field(default_factory=dict)  # by name, then version
    serving: dict[str, ServedModel] = field(default_factory=dict)  # the newest READY version: `get(name)`
    draining: set[ServedModel] = field(default_factory=set)  # copies no new session goes to, live sessions on
    load_failures: dict[str, int] = field(default_factory=dict)  # by model name (a metric)
    loads: dict[str, int] = field(default_factory=dict)  # successful loads by model name (a metric)
