"""ONNX export: one self-contained `model.onnx` with native recurrent operators, verified, plus its manifest.

The legacy TorchScript exporter (`dynamo=False`) is used for `nn.LSTM` / `nn.GRU` / `nn.RNN`: it maps them to
ONNX's `LSTM` / `GRU` / `RNN` operators with named dynamic axes, in about a second; its known deprecation and
tracer warnings are silenced around the call only. The explicit cells (peephole / coupled-gate LSTM, Jordan)
are written by `training/graphs.py`: the native `LSTM` operator with `P` / `input_forget`, or a `Scan`.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import onnx
import torch

from modelrepo import Manifest, OnnxInfo, OutputSpec, SequenceInput, StatePair, TrainingRecord, writer
from modelrepo.manifest import MODEL_FILE, Architecture, Normalization
from training.errors import ExportError
from training.graphs import explicit_onnx
from training.model import SequenceModel
from training.verify import verify_export

OPSET = 17
RECURRENT_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN", "peephole_lstm": "LSTM", "coupled_lstm": "LSTM",
                 "peephole_coupled_lstm": "LSTM", "jordan": "Scan"}  # manifest cell -> the graph's operator
LOOP_OPS = {"Loop", "Scan"}
EXPORTER = f"torch.onnx.export TorchScript exporter (dynamo=False), torch {torch.__version__.split('+')[0]}"
GRAPH_WRITER = f"training.graphs (hand-built with onnx.helper), onnx {onnx.__version__}"


def _hand_built(model: SequenceModel) -> bool:
    return model.cfg.explicit_lstm or model.cfg.cell == "jordan"


def output_name(model: SequenceModel) -> str:
    return "forecast" if model.cfg.head == "forecast" else "logits"


def to_onnx(model: SequenceModel) -> bytes:
    """Serialises `model` (eval mode) to ONNX bytes with batch and time axes dynamic."""
    model.eval()
    cfg = model.cfg
    if _hand_built(model):
        return explicit_onnx(model, output_name(model))
    x = torch.zeros(2, 3, 1, dtype=torch.int64) if cfg.vocab_size else torch.zeros(2, 3, cfg.input_size)  # (B, T, F)
    state = model.initial_state(2)
    inputs = ["input", *(i for i, _ in cfg.state_names)]
    outputs = [output_name(model), *(o for _, o in cfg.state_names)]
    axes = {"input": {0: "batch", 1: "time"}, outputs[0]: {0: "batch", 1: "time"}}
    axes |= {name: {0: "batch"} for name in inputs[1:] + outputs[1:]}
    return export_quietly(model, (x, *state), inputs, outputs, axes).SerializeToString()


def export_quietly(module: torch.nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str],
                   axes: dict[str, dict[int, str]], custom_opsets: dict[str, int] | None = None) -> onnx.ModelProto:
    """The TorchScript exporter's graph of `module(*args)`, its known warnings silenced, checked."""
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        path = Path(scratch) / MODEL_FILE
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, custom_opsets=custom_opsets)
        proto = onnx.load(path)  # also pulls in any external data file, so the bytes below are self-contained
    if not custom_opsets:  # placeholders of custom ops are checked once they are replaced
        onnx.checker.check_model(proto)
    return proto


def recurrent_ops(onnx_bytes: bytes) -> list[str]:
    """The recurrent operators (native RNN/GRU/LSTM, or Scan/Loop) at the top of the graph."""
    ops = {node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node}
    return sorted(ops & (set(RECURRENT_OPS.values()) | LOOP_OPS))


def build_manifest(model: SequenceModel, name: str, version: int, onnx_bytes: bytes, labels: list[str] | None,
                   training: TrainingRecord | None, description: str) -> Manifest:
    cfg = model.cfg
    ops = recurrent_ops(onnx_bytes)
    if ops != [RECURRENT_OPS[cfg.variant]]:
        raise ExportError(f"expected only the {RECURRENT_OPS[cfg.variant]} operator in the graph, found {ops}")
    state_shape = list(cfg.state_shape)
    kind: Literal["logits", "regression"] = "regression" if cfg.head == "forecast" else "logits"
    meaning = ("next value of the input (one step ahead), in the input's units" if kind == "regression"
               else "class logits at every step; the running answer is the argmax at the latest step")
    return Manifest(
        name=name,
        version=version,
        description=description,
        architecture=Architecture(cell=cfg.variant, layers=cfg.layers, hidden_size=cfg.hidden_size,  # type: ignore[arg-type]
                                  bidirectional=cfg.bidirectional),
        input=SequenceInput(features=1, dtype="int64", vocab_size=cfg.vocab_size) if cfg.vocab_size else
        SequenceInput(features=cfg.input_size, normalization=Normalization(mean=model.mean.tolist(),
                                                                           std=model.std.tolist())),
        outputs=[OutputSpec(name=output_name(model), kind=kind, size=cfg.output_size, description=meaning,
                            labels=labels)],
        state=[StatePair(input=i, output=o, shape=state_shape) for i, o in cfg.state_names],
        streamable=not cfg.bidirectional,
        training=training,
        verification=verify_export(model, onnx_bytes),
        onnx=OnnxInfo(opset=OPSET, exporter=GRAPH_WRITER if _hand_built(model) else EXPORTER,
                      sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                      recurrent_ops=ops),
    )


def check_destination(dest: Path, force: bool) -> None:
    try:
        writer.check_destination(dest, force)
    except writer.DestinationExists as exc:
        raise ExportError(str(exc)) from exc


def export_model(model: SequenceModel, root: Path, name: str, version: int, *, labels: list[str] | None = None,
                 training: TrainingRecord | None = None, description: str = "",
                 extra: dict[str, bytes] | None = None, force: bool = False) -> Manifest:
    """Exports, verifies and writes `root/name/version/`; returns the manifest written."""
    if not isinstance(model, SequenceModel):
        raise ExportError(f"export_model takes the trainer's SequenceModel, not {type(model).__name__}; export your "
                          "own module with training.export_module.export_module (docs/models.md)")
    dest = Path(root) / name / str(version)
    check_destination(dest, force)
    onnx_bytes = to_onnx(model)
    manifest = build_manifest(model, name, version, onnx_bytes, labels, training, description)
    writer.write_version_dir(dest, manifest, onnx_bytes, extra or {}, force)
    return manifest
