"""Strict checks at load: dynamic batch axes, warm-up at batch 1 and 3, onnxruntime's own message in the reason.

The graph is a 1-layer LSTM exported in torch's state layout `(layers, batch, hidden)` with a hand-written
manifest that claims batch-first state: what a user tries first. The same file imported is served.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from modelrepo import Manifest, OnnxInfo, OutputSpec, SequenceInput, StatePair
from modelrepo.importer import ImportOptions, import_onnx
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from tests.modelrepo.graphs import FEATURES, HIDDEN, torch_layout_lstm
from tests.service.helpers import cpu_settings


def hand_made(root: Path, name: str, **graph: object) -> None:
    """A version folder holding the torch-layout graph and a manifest that claims batch-first state."""
    folder = root / name / "1"
    folder.mkdir(parents=True)
    torch_layout_lstm(folder / "model.onnx", **graph)  # type: ignore[arg-type]
    Manifest(
        name=name, version=1, input=SequenceInput(features=FEATURES),
        outputs=[OutputSpec(name="output", kind="other", size=HIDDEN)],
        state=[StatePair(input=i, output=o, shape=[1, HIDDEN]) for i, o in (("h0", "hn"), ("c0", "cn"))],
        streamable=True,
        onnx=OnnxInfo(opset=17, exporter="by hand",
                      sha256=hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()),
    ).dump(folder / "manifest.json")


async def test_foreign_layouts_are_refused_with_the_reason_and_imported_ones_served(tmp_path: Path) -> None:
    hand_made(tmp_path, "fixed_axis0")  # state declared (1, batch, H): axis 0 is fixed
    hand_made(tmp_path, "undeclared", state_dims=(None, None, None))  # runs at batch 1, fails at batch 3
    hand_made(tmp_path, "fixed_batch", fixed_batch=True, state_dims=("batch", 1, HIDDEN))
    import_onnx(torch_layout_lstm(tmp_path / "mine.onnx"), tmp_path, ImportOptions(name="imported"))
    registry = await Registry.load(cpu_settings(tmp_path), Metrics())
    try:
        by_name = {s.name: s for s in registry.statuses()}
        expected = f"expected input input (batch, time, {FEATURES}), state h0 (batch, 1, {HIDDEN})"
        assert not by_name["fixed_axis0"].ready
        assert "graph input 'h0' has a fixed size 1 on axis 0" in by_name["fixed_axis0"].reason
        assert expected in by_name["fixed_axis0"].reason
        reason = by_name["undeclared"].reason
        assert not by_name["undeclared"].ready
        assert reason.startswith(f"warm-up at batch 3 failed; {expected}"), reason
        assert "onnxruntime: " in reason and "initial_h" in reason  # onnxruntime's own words
        assert not by_name["fixed_batch"].ready and "'input' has a fixed size 2 on axis 0" in by_name[
            "fixed_batch"].reason
        assert by_name["imported"].ready, by_name["imported"].reason
        model = registry.get("imported")
        x = np.random.default_rng(0).standard_normal((3, 5, FEATURES)).astype(np.float32)
        outputs, state = await model.infer(x)
        assert outputs["output"].shape == (3, 5, HIDDEN) and state["h0"].shape == (3, 1, HIDDEN)
        session = model.open_session()
        first = await session.step(x[0, :2])
        second = await session.step(x[0, 2:])
        np.testing.assert_allclose(np.concatenate([first["output"], second["output"]]), outputs["output"][0],
                                   atol=1e-6)
        session.close()
    finally:
        await registry.close()
