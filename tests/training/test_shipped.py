"""Every shipped model under models/: loads in onnxruntime, manifest valid, sha256 recorded, graph as declared."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelrepo import Manifest, ModelVersionDir, latest_versions
from training.catalog import catalog_markdown
from training.export import RECURRENT_OPS
from training.verify import TOLERANCE, OrtModel

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(latest_versions(MODELS).values(), key=lambda d: d.name)


def test_the_shipped_set_is_complete() -> None:
    names = {d.name for d in SHIPPED}
    assert {"vowels_lstm", "vowels_gru", "vowels_bigru", "vowels_peephole_lstm", "vowels_jordan"} <= names
    assert any(n.startswith("forecast_") for n in names)


@pytest.mark.parametrize("found", SHIPPED, ids=lambda d: d.name)
def test_shipped_model_matches_its_manifest(found: ModelVersionDir) -> None:
    manifest = Manifest.load(found.manifest_path)
    onnx_bytes = found.model_path.read_bytes()
    assert manifest.name == found.name and manifest.version == found.version
    assert hashlib.sha256(onnx_bytes).hexdigest() == manifest.onnx.sha256
    assert len(onnx_bytes) < 5 * 2**20
    assert not list(found.path.glob("*.onnx.data"))
    assert manifest.verification is not None
    if manifest.source is not None and manifest.source.kind == "onnx":  # imported: say where from, verified
        assert manifest.source.licence and manifest.source.url and manifest.source.sha256
        assert manifest.verification.original_vs_wrapped is not None
    else:
        assert manifest.onnx.recurrent_ops == [RECURRENT_OPS[manifest.architecture.cell]]
        assert manifest.training is not None and manifest.training.metrics
    ort_model = OrtModel(onnx_bytes, [s.input for s in manifest.state])
    session = ort_model.session
    assert [i.name for i in session.get_inputs()] == [manifest.input.name, *(s.input for s in manifest.state)]
    assert [o.name for o in session.get_outputs()] == [o.name for o in manifest.outputs] + [
        s.output for s in manifest.state]
    rng = np.random.default_rng(0)
    spec = manifest.input
    x = (rng.integers(0, spec.vocab_size, (2, 5, spec.features)) if spec.vocab_size is not None  # token ids
         else rng.standard_normal((2, 5, spec.features))).astype(spec.dtype)
    state = [np.full((2, *s.shape), s.initial, dtype=np.float32) for s in manifest.state]
    outputs = ort_model(x, state)
    assert outputs[0].shape == (2, 5, manifest.outputs[0].size)
    assert [o.shape[1:] for o in outputs[1:]] == [tuple(s.shape) for s in manifest.state]
    if manifest.streamable:  # two chunks with carried state == one run
        first, *carried = ort_model(x[:, :2], state)
        second, *_ = ort_model(x[:, 2:], carried)
        assert np.max(np.abs(np.concatenate([first, second], axis=1) - outputs[0])) <= TOLERANCE


def test_shipped_vowels_classifiers_meet_the_accuracy_target() -> None:
    for name in ("vowels_lstm", "vowels_gru"):
        manifest = Manifest.load(MODELS / name / str(latest_versions(MODELS)[name].version) / "manifest.json")
        assert manifest.training is not None
        assert manifest.training.metrics["test_accuracy"] >= 0.95, name


def test_the_shipped_peephole_and_jordan_graphs_are_the_ones_the_cells_describe() -> None:
    versions = latest_versions(MODELS)
    peephole = onnx.load(versions["vowels_peephole_lstm"].model_path).graph
    (lstm,) = [n for n in peephole.node if n.op_type == "LSTM"]
    p = next(t for t in peephole.initializer if t.name == lstm.input[7])
    assert np.abs(onnx.numpy_helper.to_array(p)).max() > 0  # trained peephole weights, wired as P
    jordan = Manifest.load(versions["vowels_jordan"].manifest_path)
    assert [(s.input, s.output, s.shape) for s in jordan.state] == [("y0", "yn", [1, 9])]
    assert jordan.onnx.recurrent_ops == ["Scan"] and jordan.streamable


def test_models_readme_table_is_current() -> None:
    assert (MODELS / "README.md").read_text(encoding="utf-8") == catalog_markdown(MODELS)
