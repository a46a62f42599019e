"""Loading one model version from its folder, in a worker thread: manifest, hash, session, graph check, warm-up,
tuning. A failure becomes one short reason line (files named relative to the repository); `fingerprint` tells
the repository poll whether a version folder changed since it was last loaded; `read_model` reads one model's
folder (its versions and config.json).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from modelrepo import Manifest, ManifestError, ModelVersionDir
from modelrepo.policy import CONFIG_FILE, ModelConfig, PolicyError, load_model_config
from service.engine.errors import ConfigurationError
from service.engine.runtime import Runtime
from service.engine.tuning import Tuning, tune
from service.engine.validation import ModelInvalid, check_graph, check_sha256, warm_up
from service.settings import Settings

log = logging.getLogger(__name__)
REASON_CHARS = 600
Fingerprint = tuple[tuple[str, int, int], ...]  # (file, mtime_ns, size) of every file that makes a version
Found = dict[int, ModelVersionDir]
LOADER_NICE = 10  # the loader thread's nice value (serving threads keep the process's own)


@dataclass(frozen=True)
class Loaded:
    manifest: Manifest
    runtime: Runtime
    tuning: Tuning


class LoadFailed(Exception):
    """A version that cannot be served; `str()` is the one-line reason the index, the log and the client see."""


def load_version(found: ModelVersionDir, settings: Settings) -> Loaded:
    """Runs in a worker thread. `LoadFailed` with the reason; `ConfigurationError` when no model can load at all
    (e.g. `--device cuda` without CUDA)."""
    try:
        return _load(found, settings)
    except ConfigurationError:
        raise
    except (ManifestError, ModelInvalid) as exc:
        raise LoadFailed(short_reason(str(exc), settings.models)) from None
    except Exception as exc:  # onnxruntime refusing the graph, unreadable file, ...
        log.debug("cannot load %s version %d", found.name, found.version, exc_info=True)
        reason = f"cannot load the graph: {type(exc).__name__}: {exc}"
        raise LoadFailed(short_reason(reason, settings.models)) from None


def _load(found: ModelVersionDir, settings: Settings) -> Loaded:
    manifest = Manifest.load(found.manifest_path)
    if (manifest.name, manifest.version) != (found.name, found.version):
        raise ModelInvalid(f"manifest says {manifest.name} version {manifest.version}, the folder is {found.path}")
    if not found.model_path.is_file():
        raise ModelInvalid(f"{found.model_path} is missing")
    check_sha256(found.model_path, manifest.onnx.sha256)
    label = f"{found.name} version {found.version}"
    pairs = {p.input: p.output for p in manifest.state}

    def make(threads: int, spinning: bool = False) -> Runtime:
        return Runtime(found.model_path, settings.device, threads, label, pairs, spinning=spinning)

    runtime = make(settings.intra_op_threads or 1)
    check_graph(manifest, runtime)
    warm_up(manifest, runtime)
    s = settings
    runtime, tuning = tune(manifest, runtime, make, s.intra_op_threads, s.max_batch_size, s.inline_run_max_us)
    return Loaded(manifest, runtime, tuning)


def short_reason(reason: str, models: Path) -> str:
    """One short line; files named relative to the repository."""
    reason = reason.replace(f"{models.resolve()}/", "").replace(f"{models}/", "")
    return " ".join(reason.split())[:REASON_CHARS]


def fingerprint(found: ModelVersionDir) -> Fingerprint:
    """What the files of a version folder look like now (a changed or replaced file changes it)."""
    return _stats(found.path, ("manifest.json", "model.onnx"))


def config_fingerprint(model_dir: Path) -> Fingerprint:
    return _stats(model_dir, (CONFIG_FILE,))


def _stats(folder: Path, names: tuple[str, ...]) -> Fingerprint:
    rows = []
    for name in names:
        try:
            stat = (folder / name).stat()
        except OSError:
            rows.append((name, -1, -1))
            continue
        rows.append((name, stat.st_mtime_ns, stat.st_size))
    return tuple(rows)


def lower_priority() -> None:
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
