"""Model control in the engine: a new version rolls out while live sessions finish on theirs, a bad one never takes
the old one down, unloads refuse or end live sessions, policies pick versions, memory comes back.

The repository poll is called directly (`control.poll()`, in explicit mode no poll task runs), so every change
happens at a known point; what happens after it (a drain) is awaited by polling the statuses, bounded."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from modelrepo import Manifest
from modelrepo.writer import write_version_dir
from service.engine.errors import FailedPrecondition, Unavailable
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from tests.service.engine.test_load_checks import hand_made
from tests.service.engine.test_registry import BROKEN
from tests.service.helpers import cpu_settings, sequence
from tests.service.versions import copy_shipped, publish, whole_run

POLLS = 2000  # bounded waits: the statuses are looked at this many times, 10 ms apart, before a test fails


async def start(root: Path, **overrides: object) -> Registry:
    return await Registry.load(cpu_settings(root, model_control_mode="explicit", **overrides), Metrics())


def state(registry: Registry, name: str, version: int) -> tuple[str, str, int]:
    (status,) = [s for s in registry.statuses() if (s.name, s.version) == (name, version)]
    return status.state, status.reason, status.sessions


async def wait_state(registry: Registry, name: str, version: int, wanted: str) -> str:
    for _ in range(POLLS):
        found = [s for s in registry.statuses() if (s.name, s.version) == (name, version)]
        if (found[0].state if found else "GONE") == wanted:
            return found[0].reason if found else ""
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} version {version} never became {wanted}: {found}")


async def test_live_sessions_finish_on_their_version_new_ones_start_on_the_new_one(tmp_path: Path) -> None:
    v1 = copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path)
    try:
        model = registry.get("m")
        x = sequence(model.manifest, 4, 30, seed=1)
        sessions = [model.open_session() for _ in range(4)]
        first = [await s.step(x[i, :12]) for i, s in enumerate(sessions)]
        v2 = publish(tmp_path, "m", 2, scale=0.7)
        await registry.control.poll()
        assert registry.get("m").version == 2
        assert state(registry, "m", 1)[0] == "UNLOADING" and state(registry, "m", 1)[2] == 4
        assert "new sessions start on version 2" in state(registry, "m", 1)[1]
        with pytest.raises(FailedPrecondition, match="only finishes its live sessions"):
            registry.get("m", 1)
        rest = [await s.step(x[i, 12:]) for i, s in enumerate(sessions)]
        want1 = whole_run(v1, x)["logits"]
        for i in range(4):
            got = np.concatenate([first[i]["logits"], rest[i]["logits"]])
            np.testing.assert_allclose(got, want1[i], atol=1e-4)
        fresh = registry.get("m").open_session()
        got2 = (await fresh.step(x[0]))["logits"]
        np.testing.assert_allclose(got2, whole_run(v2, x[:1])["logits"][0], atol=1e-4)
        assert not np.allclose(got2, want1[0], atol=1e-3)  # really another model
        for s in sessions:
            s.close()
        reason = await wait_state(registry, "m", 1, "UNAVAILABLE")
        assert reason.startswith("unloaded: not listed by its version policy (latest 1)")
        assert [m.version for m in registry.loaded()] == [2]
    finally:
        await registry.close()


async def test_a_bad_new_version_leaves_the_old_one_serving(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    copy_shipped(tmp_path, "m", 1)
    metrics = Metrics()
    registry = await Registry.load(cpu_settings(tmp_path, model_control_mode="explicit"), metrics)
    try:
        session = registry.get("m").open_session()
        publish(tmp_path, "m", 2, corrupt=True)
        with caplog.at_level(logging.ERROR):
            await registry.control.poll()
        assert registry.get("m").version == 1 and state(registry, "m", 1)[0] == "READY"
        status, reason, _ = state(registry, "m", 2)
        assert status == "UNAVAILABLE" and reason.startswith("cannot load the graph"), reason
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [f"not serving m version 2: {reason}"]
        assert metrics.registry.get_sample_value("seqserve_model_load_failures_total", {"model": "m"}) == 1
        await registry.control.poll()  # unchanged files: not tried again
        assert metrics.registry.get_sample_value("seqserve_model_load_failures_total", {"model": "m"}) == 1
        assert (await session.step(sequence(registry.get("m").manifest, 1, 3)[0]))["logits"].shape == (3, 9)
        with pytest.raises(FailedPrecondition, match=r"version 2 failed to load: cannot load the graph.*version 1 "
                                                      r"goes on serving"):
            await registry.control.load("m")
        publish_over = tmp_path / "m" / "2"
        shutil.rmtree(publish_over)
        publish(tmp_path, "m", 2, scale=0.9)  # fixed: the next poll serves it
        await registry.control.poll()
        assert registry.get("m").version == 2
    finally:
        await registry.close()


async def test_unload_refuses_live_sessions_unless_forced(tmp_path: Path) -> None:
    copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path)
    try:
        session = registry.get("m").open_session()
        x = sequence(registry.get("m").manifest, 1, 3)[0]
        with pytest.raises(FailedPrecondition, match="has 1 live sessions; unload it with force"):
            await registry.control.unload("m")
        assert registry.get("m").version == 1
        assert await registry.control.unload("m", force=True) == 1
        with pytest.raises(FailedPrecondition, match="'m' was unloaded by request"):
            await session.step(x)
        assert state(registry, "m", 1)[:2] == ("UNAVAILABLE", "unloaded by request")
        with pytest.raises(Unavailable, match="unloaded by request"):
            registry.get("m")
        await registry.control.poll()  # its files did not change: it stays unloaded
        assert state(registry, "m", 1)[0] == "UNAVAILABLE"
        await registry.control.load("m")
        assert (await registry.get("m").open_session().step(x))["logits"].shape == (3, 9)
    finally:
        await registry.close()


async def test_sessions_left_at_the_drain_timeout_end_naming_the_new_version(tmp_path: Path) -> None:
    copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path, version_drain_timeout=0.05)
    try:
        session = registry.get("m").open_session()
        x = sequence(registry.get("m").manifest, 1, 3)[0]
        await session.step(x)
        publish(tmp_path, "m", 2, scale=0.7)
        await registry.control.poll()
        assert (await wait_state(registry, "m", 1, "UNAVAILABLE")).startswith("unloaded")
        with pytest.raises(FailedPrecondition, match=r"drain timeout.*continue on version 2"):
            await session.step(x)
    finally:
        await registry.close()


async def test_version_policies_and_removed_folders(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        publish(tmp_path, "m", version, scale=1.0 + version / 10)
    (tmp_path / "m" / "config.json").write_text('{"version_policy": {"specific": {"versions": [1, 3]}}}')
    registry = await start(tmp_path)
    try:
        assert [m.version for m in registry.models()] == [1, 3]
        assert state(registry, "m", 2)[1] == "not listed by its version policy (specific 1,3)"
        (tmp_path / "m" / "config.json").write_text('{"version_policy": {"latest": {"num_versions": 2}}}')
        await registry.control.poll()
        assert [m.version for m in registry.models()] == [2, 3]
        await wait_state(registry, "m", 1, "UNAVAILABLE")
        shutil.rmtree(tmp_path / "m" / "3")
        await registry.control.poll()
        assert [m.version for m in registry.models()] == [1, 2]  # latest 2 of what is left
        await wait_state(registry, "m", 3, "GONE")
        (tmp_path / "m" / "config.json").write_text('{"version_policy": {"newest": {}}}')
        await registry.control.poll()  # an invalid config: what is served stays
        assert [m.version for m in registry.models()] == [1, 2]
    finally:
        await registry.close()


async def test_loading_and_unloading_gives_the_memory_back(tmp_path: Path) -> None:
    copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path)
    try:
        await registry.control.unload("m")
        gc.collect()
        threads = threading.active_count()
        copies = []
        for _ in range(50):
            await registry.control.load("m")
            copies.append(weakref.ref(registry.get("m")))
            copies.append(weakref.ref(registry.get("m")._batcher._runtime))  # type: ignore[attr-defined]
            await registry.control.unload("m")
        gc.collect()
        assert [c for c in copies if c() is not None] == []  # every copy and its onnxruntime session freed
        assert threading.active_count() == threads
    finally:
        await registry.close()


async def test_a_version_replaced_in_place_is_reloaded_live_sessions_finish_on_the_old_copy(tmp_path: Path) -> None:
    v1 = copy_shipped(tmp_path, "m", 1)
    want_old = whole_run(v1, sequence(Manifest.load(v1 / "manifest.json"), 1, 8, seed=2))["logits"][0]
    registry = await start(tmp_path)
    try:
        old = registry.get("m")
        x = sequence(old.manifest, 1, 8, seed=2)[0]
        session = old.open_session()
        first = (await session.step(x[:4]))["logits"]
        changed = publish(tmp_path / "scratch", "m", 1, scale=0.7)
        write_version_dir(v1, Manifest.load(changed / "manifest.json"), (changed / "model.onnx").read_bytes(), {},
                          force=True)
        await registry.control.poll()
        assert registry.get("m") is not old and state(registry, "m", 1)[0] == "READY"
        assert old in registry.loaded()  # draining: its live session goes on
        rest = (await session.step(x[4:]))["logits"]
        np.testing.assert_allclose(np.concatenate([first, rest]), want_old, atol=1e-4)
        fresh = (await registry.get("m").open_session().step(x))["logits"]
        np.testing.assert_allclose(fresh, whole_run(v1, x[None])["logits"][0], atol=1e-4)
        session.close()
        for _ in range(POLLS):
            if old not in registry.loaded():
                break
            await asyncio.sleep(0.01)
        assert old not in registry.loaded()
    finally:
        await registry.close()


@pytest.mark.parametrize("kind", sorted(BROKEN))
async def test_every_kind_of_bad_new_version_leaves_the_old_one_serving(tmp_path: Path, kind: str) -> None:
    copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path)
    try:
        session = registry.get("m").open_session()
        edit, reason = BROKEN[kind]
        edit(publish(tmp_path / "staging", "m", 2, scale=0.9))
        shutil.move(tmp_path / "staging" / "m" / "2", tmp_path / "m" / "2")
        await registry.control.poll()
        assert registry.get("m").version == 1
        status, why, _ = state(registry, "m", 2)
        assert status == "UNAVAILABLE" and reason in why, why
        assert (await session.step(sequence(registry.get("m").manifest, 1, 3)[0]))["logits"].shape == (3, 9)
    finally:
        await registry.close()


async def test_a_new_version_failing_its_warm_up_leaves_the_old_one_serving(tmp_path: Path) -> None:
    copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path)
    try:
        hand_made(tmp_path / "staging", "m", state_dims=(None, None, None))  # runs at batch 1, fails at batch 3
        folder = tmp_path / "staging" / "m" / "1"
        manifest = Manifest.load(folder / "manifest.json").model_copy(update={"version": 2})
        manifest.dump(folder / "manifest.json")
        shutil.move(folder, tmp_path / "m" / "2")
        await registry.control.poll()
        assert registry.get("m").version == 1
        status, why, _ = state(registry, "m", 2)
        assert status == "UNAVAILABLE" and why.startswith("warm-up at batch 3 failed"), why
    finally:
        await registry.close()


async def test_with_session_migration_live_sessions_continue_on_the_new_weights(tmp_path: Path) -> None:
    v1 = copy_shipped(tmp_path, "m", 1)
    (tmp_path / "m" / "config.json").write_text('{"session_migration": {"vouched_by": "the test: v2 is v1 scaled"}}')
    registry = await start(tmp_path)
    try:
        old = registry.get("m")
        x = sequence(old.manifest, 2, 20, seed=4)
        sessions = [old.open_session() for _ in range(2)]
        first = [(await s.step(x[i, :8]))["logits"] for i, s in enumerate(sessions)]
        v2 = publish(tmp_path, "m", 2, scale=0.7)
        await registry.control.poll()
        status, reason, live = state(registry, "m", 1)
        assert (status, live) == ("UNLOADING", 2)
        assert "continue on version 2's weights (session migration, vouched by the test: v2 is v1 scaled)" in reason
        rest = [(await s.step(x[i, 8:]))["logits"] for i, s in enumerate(sessions)]
        before = whole_run(v1, x[:, :8])
        after = whole_run(v2, x[:, 8:], {"h0": before["hn"]})["logits"]  # v2's weights from v1's state
        for i in range(2):
            np.testing.assert_allclose(first[i], before["logits"][i], atol=1e-4)
            np.testing.assert_allclose(rest[i], after[i], atol=1e-4)
            assert not np.allclose(rest[i], whole_run(v1, x)["logits"][i, 8:], atol=1e-3)  # not v1's any more
        for s in sessions:
            s.close()
        assert (await wait_state(registry, "m", 1, "UNAVAILABLE")).startswith("unloaded")
    finally:
        await registry.close()


async def test_a_repository_gone_for_a_while_is_one_warning_and_serving_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "repo"
    copy_shipped(root, "m", 1)
    registry = await Registry.load(cpu_settings(root, repository_poll_secs=0.01), Metrics())
    polls = []
    real_poll = registry.control.poll

    async def counted() -> None:
        polls.append(1)
        await real_poll()

    registry.control.poll = counted  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING):
            root.rename(tmp_path / "away")
            for _ in range(POLLS):  # until the poll task has met the missing repository 5 times
                if len(polls) >= 6:
                    break
                await asyncio.sleep(0.01)
        warnings = [r.getMessage() for r in caplog.records if "cannot read the model repository" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert registry.get("m").version == 1
    finally:
        await registry.close()


async def test_a_load_request_reports_a_failed_reload_of_the_served_version(tmp_path: Path) -> None:
    v1 = copy_shipped(tmp_path, "m", 1)
    registry = await start(tmp_path)
    try:
        old = registry.get("m")
        (v1 / "model.onnx").write_bytes(b"not a graph")  # replaced in place by something broken
        with pytest.raises(FailedPrecondition, match="version 1 failed to load: a reload failed, the copy loaded "
                                                     "before goes on serving: sha256"):
            await registry.control.load("m")
        assert registry.get("m") is old and state(registry, "m", 1)[0] == "READY"
    finally:
        await registry.close()
