"""Export parity on tiny untrained models: torch == onnxruntime, chunked == whole, batched == alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from modelrepo import Manifest
from training.config import ModelConfig
from training.errors import ExportError
from training.export import export_model, to_onnx
from training.model import SequenceModel
from training.verify import TOLERANCE, OrtModel, batched_vs_alone, chunked_vs_whole, torch_vs_ort, verify_export


def _model(cell: str, layers: int, bidirectional: bool = False, **kw: object) -> SequenceModel:
    torch.manual_seed(layers)
    model = SequenceModel(ModelConfig(cell=cell, input_size=3, hidden_size=6, layers=layers, output_size=4,  # type: ignore[arg-type]
                                      bidirectional=bidirectional, **kw))
    model.set_normalization(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 1.0]))
    return model.eval()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_exported_graph_matches_torch_in_chunks_and_batches(tmp_path: Path, cell: str, layers: int) -> None:
    model = _model(cell, layers)
    manifest = export_model(model, tmp_path, "m", 1)
    path = tmp_path / "m" / "1" / "model.onnx"
    assert Manifest.load(tmp_path / "m" / "1" / "manifest.json") == manifest
    assert manifest.onnx.recurrent_ops == [cell.upper()]
    assert [s.input for s in manifest.state] == (["h0", "c0"] if cell == "lstm" else ["h0"])
    assert all(s.shape == [layers, 6] for s in manifest.state)
    _parity(model, path.read_bytes(), [s.input for s in manifest.state])  # fresh inputs, states, chunks


VARIANTS = {"peephole_lstm": {"peephole": True}, "coupled_lstm": {"coupled_gates": True},
            "peephole_coupled_lstm": {"peephole": True, "coupled_gates": True}}


def _parity(model: SequenceModel, onnx_bytes: bytes, state_inputs: list[str]) -> None:
    ort_model = OrtModel(onnx_bytes, state_inputs)
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        assert torch_vs_ort(model, ort_model, rng) <= TOLERANCE
        assert chunked_vs_whole(model, ort_model, rng) <= TOLERANCE
        assert batched_vs_alone(model, ort_model, rng) <= TOLERANCE


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_peephole_and_coupled_lstms_export_to_the_native_lstm_operator(tmp_path: Path, variant: str,
                                                                         layers: int) -> None:
    model = _model("lstm", layers, **VARIANTS[variant])
    with torch.no_grad():  # trained-looking peepholes and forget biases, not the initial ones
        for layer in model.rnn.lstm_layers:  # type: ignore[union-attr]
            layer.peephole.normal_() if layer.peephole is not None else None
            layer.bias.normal_()
    manifest = export_model(model, tmp_path, "m", 1)
    onnx_bytes = (tmp_path / "m" / "1" / "model.onnx").read_bytes()
    assert manifest.architecture.cell == variant and manifest.onnx.recurrent_ops == ["LSTM"]
    assert manifest.onnx.exporter.startswith("training.graphs")
    lstms = [n for n in onnx.load_from_string(onnx_bytes).graph.node if n.op_type == "LSTM"]
    assert len(lstms) == layers and all(len(n.input) == 8 and n.input[7] for n in lstms)  # P is wired
    coupled = [a.i for n in lstms for a in n.attribute if a.name == "input_forget"]
    assert coupled == [int(model.cfg.coupled_gates)] * layers
    expected = [("h0", "hn", [layers, 6]), ("c0", "cn", [layers, 6])]
    assert [(s.input, s.output, s.shape) for s in manifest.state] == expected
    _parity(model, onnx_bytes, ["h0", "c0"])


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("feedback", ["softmax", "linear"])
def test_jordan_network_exports_to_a_scan_with_its_output_as_state(tmp_path: Path, feedback: str,
                                                                   layers: int) -> None:
    model = _model("jordan", layers, feedback=feedback)
    manifest = export_model(model, tmp_path, "j", 1)
    onnx_bytes = (tmp_path / "j" / "1" / "model.onnx").read_bytes()
    assert manifest.architecture.cell == "jordan" and manifest.onnx.recurrent_ops == ["Scan"]
    assert [(s.input, s.output, s.shape) for s in manifest.state] == [("y0", "yn", [1, 4])]
    _parity(model, onnx_bytes, ["y0"])


def test_bidirectional_export_has_no_state_and_is_not_streamable(tmp_path: Path) -> None:
    manifest = export_model(_model("gru", 2, bidirectional=True), tmp_path, "bi", 1)
    graph = onnx.load(tmp_path / "bi" / "1" / "model.onnx").graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert not manifest.streamable and manifest.state == []
    assert manifest.verification is not None and manifest.verification.chunked_vs_whole is None


def test_single_file_with_dynamic_batch_and_time_axes() -> None:
    graph = onnx.load_from_string(to_onnx(_model("lstm", 1))).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]}
    assert dims == {"input": ["batch", "time", 3], "h0": ["batch", 1, 6], "c0": ["batch", 1, 6],
                    "logits": ["batch", "time", 4], "hn": ["batch", 1, 6], "cn": ["batch", 1, 6]}
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in graph.initializer)


def test_verification_catches_a_graph_that_differs_from_the_model() -> None:
    model = _model("gru", 1)
    onnx_bytes = to_onnx(model)
    with torch.no_grad():
        model.head.bias.add_(1e-2)
    with pytest.raises(ExportError, match="torch_vs_onnxruntime"):
        verify_export(model, onnx_bytes)
