"""Token ids and several data inputs in the engine: ids checked against the vocabulary (INVALID_ARGUMENT, state
unchanged), several inputs checked by name and packed through the batcher, equal to torch's whole-sequence run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.engine.errors import InvalidInput
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from tests.service.helpers import MANIFESTS, SHIPPED, cpu_settings, reference
from tests.training.modules import build, served_inputs
from tests.training.modules import reference as torch_reference
from training.export_module import export_module

ZEN = "zen_gru"


async def test_token_ids_outside_the_vocabulary_are_refused_and_the_state_kept() -> None:
    vocab = MANIFESTS[ZEN].input.vocab_size
    assert vocab is not None and MANIFESTS[ZEN].input.dtype == "int64"
    ids = np.random.default_rng(0).integers(0, vocab, (1, 9, 1)).astype(np.int64)
    want = reference(ZEN, ids)["logits"][0]
    registry = await Registry.load(cpu_settings(SHIPPED), Metrics())
    try:
        session = registry.get(ZEN).open_session()
        first = (await session.step(ids[0, :4]))["logits"]
        for bad in (np.array([[vocab]]), np.array([[-1]]), np.array([[2**40]])):
            with pytest.raises(InvalidInput, match=rf"token id -?\d+; ids must be in \[0, {vocab}\)"):
                await session.step(bad.astype(np.int64))
        with pytest.raises(InvalidInput, match="dtype float32 not accepted"):
            await session.step(np.zeros((1, 1), np.float32))
        rest = (await session.step(ids[0, 4:]))["logits"]
        session.close()
    finally:
        await registry.close()
    np.testing.assert_allclose(np.concatenate([first, rest]), want, atol=1e-5)


async def test_two_data_inputs_are_checked_by_name_packed_and_equal_torch(tmp_path: Path) -> None:
    module, kwargs = build("two_inputs")
    export_module(module, root=tmp_path, name="two", **kwargs)
    x = served_inputs("two_inputs", 12, np.random.default_rng(1))
    want = torch_reference("two_inputs", module, kwargs["state"], x)
    registry = await Registry.load(cpu_settings(tmp_path), Metrics())
    try:
        (status,) = registry.statuses()
        assert status.ready, status.reason
        model = registry.get("two")
        session = model.open_session()
        with pytest.raises(InvalidInput, match=r"takes 2 inputs \['x', 'cond'\]; send each by name"):
            await session.step(x["x"])
        with pytest.raises(InvalidInput, match=r"takes the inputs \['x', 'cond'\], got \['x'\]"):
            await session.step({"x": x["x"]})
        with pytest.raises(InvalidInput, match="must share their leading axes"):
            await session.step({"x": x["x"][:3], "cond": x["cond"][:2]})
        with pytest.raises(InvalidInput, match="expected 2 features"):
            await session.step({"x": x["x"][:3], "cond": x["x"][:3]})
        parts = [(await session.step({k: v[a:b] for k, v in x.items()}))["output"] for a, b in ((0, 1), (1, 5),
                                                                                               (5, 12))]
        session.close()
        whole, _ = await model.infer({k: v[None] for k, v in x.items()})
    finally:
        await registry.close()
    np.testing.assert_allclose(np.concatenate(parts), want, atol=1e-5)
    np.testing.assert_allclose(whole["output"][0], want, atol=1e-5)
