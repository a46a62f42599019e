"""Hand-built ONNX graphs for the explicit cells of `training/cells.py` (torch's exporter knows only nn.LSTM/GRU/RNN).

- peephole / coupled-gate LSTM: one native `LSTM` node per layer, weights mapped onto `W`, `R`, `B`, `P`,
  `input_forget=1` for the coupled gate;
- Jordan network: a `Scan` over time whose carried variable is the fed-back output, `y0 -> yn`.

Both keep the exported conventions: `input (B, T, F)` raw (normalisation inside), state batch-first.

onnxruntime couples the gates the other way round: with `input_forget=1` it computes i from the input gate's
weights and sets f = 1 - i. Since 1 - sigmoid(z) = sigmoid(-z), the cell's i = 1 - f, f = sigmoid(z_f) is
written exactly by giving the input-gate slot the negated forget-gate weights (W, R, B and peephole) and the
forget-gate slot the forget-gate weights: a runtime that follows either reading computes the same cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.cells import ExplicitLSTM, JordanNet, LSTMLayer
from training.model import SequenceModel

IR_VERSION = 8  # opset 17; what the onnxruntime in use reads


class _Graph:
    """Nodes and initialisers collected in order; names are unique per prefix."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | list[str], **attrs: Any) -> str:
        outs = [out] if isinstance(out, str) else out
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs[0]


def _np(t: object) -> np.ndarray:
    return t.detach().numpy().astype(np.float32)  # type: ignore[attr-defined]


def lstm_weights(layer: LSTMLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W (1, 4H, In), R (1, 4H, H), B (1, 8H), P (1, 3H) in ONNX's gate order (i, o, f, c) and P order (i, o, f)."""
    def gate(t: np.ndarray, g: str) -> np.ndarray:
        if g == "i" and layer.coupled:
            return -t[layer.gate_rows("f")]  # sigmoid(-z_f) = 1 - f: see the module docstring
        return t[layer.gate_rows(g)]

    w, r, b = _np(layer.weight_ih), _np(layer.weight_hh), _np(layer.bias)
    W = np.concatenate([gate(w, g) for g in "iofc"])[None]  # (1, 4H, In)
    R = np.concatenate([gate(r, g) for g in "iofc"])[None]  # (1, 4H, H)
    B = np.concatenate([*(gate(b, g) for g in "iofc"), np.zeros(4 * layer.hidden_size, np.float32)])[None]
    if layer.peephole is None:
        P = np.zeros((1, 3 * layer.hidden_size), np.float32)
    else:
        p_i, p_f, p_o = _np(layer.peephole)  # each (H,)
        P = np.concatenate([-p_f if layer.coupled else p_i, p_o, p_f])[None]  # (1, 3H)
    return W, R, B, P


def _normalised(g: _Graph, model: SequenceModel) -> str:
    mean = g.const("mean", _np(model.mean))
    std = g.const("std", _np(model.std))
    return g.op("Div", [g.op("Sub", ["input", mean], "centred"), std], "z")  # (B, T, F)


def _head(g: _Graph, model: SequenceModel, y: str, out: str) -> None:
    """y (B, T, ·) -> the per-step output; the forecast head adds the predicted change to the input."""
    if not isinstance(model.rnn, JordanNet):
        y = g.op("Add", [g.op("MatMul", [y, g.const("head_w", _np(model.head.weight).T)], "head_mm"),
                         g.const("head_b", _np(model.head.bias))], "head_out")  # (B, T, O)
    if model.cfg.head == "forecast":
        g.op("Add", ["input", g.op("Mul", [y, "std"], "change")], out)
    else:
        g.op("Identity", [y], out)


def _lstm_stack(g: _Graph, rnn: ExplicitLSTM, z: str, coupled: bool) -> str:
    """Native LSTM nodes, time-major inside; h0/c0 (B, L, H) -> hn/cn. Returns y (B, T, H)."""
    x = g.op("Transpose", [z], "x_tbf", perm=[1, 0, 2])  # (T, B, F)
    h_all = g.op("Transpose", ["h0"], "h0_lbh", perm=[1, 0, 2])  # (L, B, H)
    c_all = g.op("Transpose", ["c0"], "c0_lbh", perm=[1, 0, 2])  # (L, B, H)
    hs, cs = [], []
    for k, layer in enumerate(rnn.lstm_layers):
        W, R, B, P = lstm_weights(layer)
        idx = g.const(f"layer{k}", np.array([k], np.int64))
        h = g.op("Gather", [h_all, idx], f"h0_{k}", axis=0)  # (1, B, H)
        c = g.op("Gather", [c_all, idx], f"c0_{k}", axis=0)  # (1, B, H)
        inputs = [x, g.const(f"W{k}", W), g.const(f"R{k}", R), g.const(f"B{k}", B), "", h, c, g.const(f"P{k}", P)]
        y, hn, cn = f"Y{k}", f"hn_{k}", f"cn_{k}"
        g.op("LSTM", inputs, [y, hn, cn], hidden_size=layer.hidden_size, input_forget=int(coupled))
        x = g.op("Squeeze", [y, g.const(f"axis1_{k}", np.array([1], np.int64))], f"y{k}_tbh")  # (T, B, H)
        hs.append(hn)
        cs.append(cn)
    for name, parts in (("hn", hs), ("cn", cs)):
        stacked = g.op("Concat", parts, f"{name}_lbh", axis=0) if len(parts) > 1 else parts[0]  # (L, B, H)
        g.op("Transpose", [stacked], name, perm=[1, 0, 2])  # (B, L, H)
    return g.op("Transpose", [x], "y_bth", perm=[1, 0, 2])  # (B, T, H)


def _jordan_body(rnn: JordanNet) -> onnx.GraphProto:
    """One step: (s (B, O), x_t (B, H) already projected) -> (s', y_t). Weights are outer-scope initialisers."""
    b = _Graph()
    h = b.op("Tanh", [b.op("Add", ["x_t", b.op("MatMul", ["s", "U_t"], "fed_back")], "pre")], "h0")  # (B, H)
    for k in range(len(rnn.hidden)):
        h = b.op("Tanh", [b.op("Add", [b.op("MatMul", [h, f"Wh{k}_t"], f"mm{k}"), f"bh{k}"], f"pre{k}")],
                 f"h{k + 1}")  # (B, H)
    y = b.op("Add", [b.op("MatMul", [h, "V_t"], "ymm"), "d"], "y_t")  # (B, O)
    b.op("Softmax" if rnn.softmax else "Identity", [y], "s_next", **({"axis": -1} if rnn.softmax else {}))
    value = helper.make_tensor_value_info
    return helper.make_graph(b.nodes, "jordan_step",
                             [value("s", TensorProto.FLOAT, None), value("x_t", TensorProto.FLOAT, None)],
                             [value("s_next", TensorProto.FLOAT, None), value("y_t", TensorProto.FLOAT, None)])


def _jordan(g: _Graph, rnn: JordanNet, z: str) -> str:
    """Scan over the time axis (1) of the projected input; y0 (B, 1, O) -> yn. Returns y (B, T, O)."""
    g.const("U_t", _np(rnn.feedback.weight).T)  # (O, H)
    for k, layer in enumerate(rnn.hidden):
        g.const(f"Wh{k}_t", _np(layer.weight).T)
        g.const(f"bh{k}", _np(layer.bias))
    g.const("V_t", _np(rnn.output.weight).T)  # (H, O)
    g.const("d", _np(rnn.output.bias))
    proj = g.op("Add", [g.op("MatMul", [z, g.const("W_t", _np(rnn.input.weight).T)], "in_mm"),
                        g.const("b", _np(rnn.input.bias))], "x_proj")  # (B, T, H)
    s0 = g.op("Squeeze", ["y0", g.const("axis1", np.array([1], np.int64))], "s0")  # (B, O)
    g.op("Scan", [s0, proj], ["s_last", "y_bto"], body=_jordan_body(rnn), num_scan_inputs=1,
         scan_input_axes=[1], scan_output_axes=[1])
    g.op("Unsqueeze", ["s_last", "axis1"], "yn")  # (B, 1, O)
    return "y_bto"


def explicit_onnx(model: SequenceModel, output: str) -> bytes:
    """The model as an ONNX graph with batch and time axes dynamic (eval mode: dropout is off)."""
    model.eval()
    cfg, g = model.cfg, _Graph()
    z = _normalised(g, model)
    if isinstance(model.rnn, JordanNet):
        y = _jordan(g, model.rnn, z)
    else:
        assert isinstance(model.rnn, ExplicitLSTM)
        y = _lstm_stack(g, model.rnn, z, cfg.coupled_gates)
    _head(g, model, y, output)
    value = helper.make_tensor_value_info
    state: list[tuple[str, str, list[str | int | None]]] = [(i, o, ["batch", *cfg.state_shape])
                                                            for i, o in cfg.state_names]
    graph = helper.make_graph(
        g.nodes, f"seqserve_{cfg.variant}",
        [value("input", TensorProto.FLOAT, ["batch", "time", cfg.input_size]),
         *(value(i, TensorProto.FLOAT, shape) for i, _, shape in state)],
        [value(output, TensorProto.FLOAT, ["batch", "time", cfg.output_size]),
         *(value(o, TensorProto.FLOAT, shape) for _, o, shape in state)],
        g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION,
                              producer_name="seqserve training.graphs")
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()
