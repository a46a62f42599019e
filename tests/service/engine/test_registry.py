"""The registry: loads the shipped models; broken versions are reported not ready with a reason, others serve."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modelrepo import latest_versions
from service.engine.errors import ConfigurationError, ModelNotFound, Unavailable
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.validation import ModelInvalid, check_sha256
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, cpu_settings, sequence

GOOD = STREAMABLE[0]


async def test_loads_every_shipped_model(registry: Registry) -> None:
    statuses = registry.statuses()
    assert {s.name for s in statuses} == set(MANIFESTS)
    assert all(s.ready and s.provider == "CPUExecutionProvider" and s.reason == "" for s in statuses)
    for name, manifest in MANIFESTS.items():
        model = registry.get(name)
        assert model.manifest == manifest
        assert registry.get(name, manifest.version) is model
    with pytest.raises(ModelNotFound, match="unknown model"):
        registry.get("nope")
    with pytest.raises(ModelNotFound, match="no version 99"):
        registry.get(GOOD, 99)


def copy_model(root: Path, name: str, version: int, edit: Callable[[Path], object] | None = None) -> None:
    target = root / name / str(version)
    shutil.copytree(latest_versions(SHIPPED)[GOOD].path, target)
    raw = json.loads((target / "manifest.json").read_text())
    raw.update(name=name, version=version)
    (target / "manifest.json").write_text(json.dumps(raw))
    if edit is not None:
        edit(target)


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def edit(target: Path) -> None:
        raw = json.loads((target / "manifest.json").read_text())
        change(raw)
        (target / "manifest.json").write_text(json.dumps(raw))

    return edit


def garbage_graph(target: Path) -> None:
    (target / "model.onnx").write_bytes(b"not an onnx graph")
    digest = hash_of(target / "model.onnx")
    edit_manifest(lambda raw: raw["onnx"].update(sha256=digest))(target)


def hash_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BROKEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "bad_json": (lambda t: (t / "manifest.json").write_text("{"), "not valid JSON"),
    "bad_sha": (edit_manifest(lambda raw: raw["onnx"].update(sha256="0" * 64)), "sha256 of model.onnx"),
    "bad_graph": (garbage_graph, "cannot load the graph"),
    "bad_features": (edit_manifest(lambda raw: raw["input"].update(features=3)), "graph input 'input' has shape"),
    "bad_state": (
        edit_manifest(lambda raw: raw["state"][0].update(input="hidden")),
        "graph inputs are",
    ),
    "no_graph": (lambda t: (t / "model.onnx").unlink(), "model.onnx is missing"),
}


async def test_broken_versions_are_reported_while_the_others_serve(tmp_path: Path) -> None:
    copy_model(tmp_path, "fine", 1)
    for name, (edit, _) in BROKEN.items():
        copy_model(tmp_path, name, 1, edit)
    registry = await Registry.load(cpu_settings(tmp_path), Metrics())
    try:
        by_name = {s.name: s for s in registry.statuses()}
        assert by_name["fine"].ready
        for name, (_, reason) in BROKEN.items():
            status = by_name[name]
            assert not status.ready and status.provider is None
            assert reason in status.reason, (name, status.reason)
            assert str(tmp_path) not in status.reason and "\n" not in status.reason
            with pytest.raises(Unavailable, match="not available"):
                registry.get(name)
        session = registry.get("fine").open_session()
        x = sequence(registry.get("fine").manifest, 1, 4)[0]
        assert (await session.step(x))[MANIFESTS[GOOD].outputs[0].name].shape[0] == 4
    finally:
        await registry.close()


async def test_newest_ready_version_is_the_default_and_the_policy_says_which_are_served(tmp_path: Path) -> None:
    copy_model(tmp_path, "m", 1)
    copy_model(tmp_path, "m", 2)
    copy_model(tmp_path, "m", 3, BROKEN["bad_sha"][0])
    registry = await Registry.load(cpu_settings(tmp_path), Metrics())
    try:  # latest 1 (the default) counts versions that load: the broken 3 is passed over, 2 serves
        assert registry.get("m").version == 2
        assert [m.version for m in registry.models()] == [2]
        with pytest.raises(Unavailable, match="version 1 is not available: not listed by its version policy"):
            registry.get("m", 1)
        with pytest.raises(Unavailable, match="version 3 is not available: sha256"):
            registry.get("m", 3)
    finally:
        await registry.close()
    (tmp_path / "m" / "config.json").write_text('{"version_policy": {"all": {}}}')
    registry = await Registry.load(cpu_settings(tmp_path), Metrics())
    try:  # every version addressable
        assert registry.get("m").version == 2
        assert registry.get("m", 1).version == 1
        assert [m.version for m in registry.models()] == [1, 2]
    finally:
        await registry.close()


async def test_missing_repository_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        await Registry.load(cpu_settings(tmp_path / "absent"), Metrics())


async def test_cuda_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    copy_model(tmp_path, "m", 1)
    with pytest.raises(ConfigurationError, match="--device cuda"):
        await Registry.load(cpu_settings(tmp_path).model_copy(update={"device": "cuda"}), Metrics())


def test_sha256_check_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(np.arange(10).tobytes())
    check_sha256(path, hash_of(path))
    with pytest.raises(ModelInvalid, match="the manifest says"):
        check_sha256(path, "1" * 64)
