"""`nn.LSTM(proj_size=P)` to ONNX, which torch's exporter refuses ("LSTMs with projections").

ONNX's `LSTM` operator has no projection (its recurrent input is the cell's own `h`), so each layer and direction
is written by our graph builder instead: the input projection of every step in one `MatMul`, then a `Scan`
over time whose body is one LSTM step with the projection, carrying `h (B, P)` and `c (B, H)`:

    z = xw_t + h W_hh^T;  i, f, g, o = z (torch's gate order);  c' = sig(f) c + sig(i) tanh(g);
    h' = (sig(o) tanh(c')) W_hr^T

During the export every projected LSTM of the user's module is swapped for a stand-in whose ONNX form is one
placeholder node (`seqserve::ProjectedLSTM`); `replace_placeholders` then puts the builder's nodes in its place.
The rest of the module is torch's own export. Dropout between layers is off in eval mode, as exported.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

DOMAIN, OP = "seqserve", "ProjectedLSTM"


def _placeholder(lstm: nn.LSTM, index: int) -> type[torch.autograd.Function]:
    """A function that runs the real LSTM and exports as one `seqserve::ProjectedLSTM` node carrying `index`."""

    copy = deepcopy(lstm).requires_grad_(False)  # not a submodule: the tracer never sees its weights

    class Placeholder(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, ...]:
            with quiet():
                y, (h, c) = copy(x, (h0, c0))
            return y, h, c

        @staticmethod
        def symbolic(g: Any, x: Any, h0: Any, c0: Any) -> Any:
            outs = g.op(f"{DOMAIN}::{OP}", x, h0, c0, index_i=index, outputs=3)
            rows, width = lstm.num_layers * (2 if lstm.bidirectional else 1), lstm.proj_size
            sizes = [[None, None, width * rows // lstm.num_layers], [rows, None, width], [rows, None, lstm.hidden_size]]
            for out, like, size in zip(outs, (x, h0, c0), sizes, strict=True):  # what the builder's nodes give
                out.setType(like.type().with_sizes(size))
            return outs

    return Placeholder


class _StandIn(nn.Module):
    """Takes the place of one projected `nn.LSTM` during the export: same call, same results."""

    def __init__(self, lstm: nn.LSTM, index: int) -> None:
        super().__init__()
        self.lstm = lstm
        self.function = _placeholder(lstm, index)

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        lstm = self.lstm
        if hx is None:
            rows = lstm.num_layers * (2 if lstm.bidirectional else 1)
            batch = x.shape[0] if lstm.batch_first else x.shape[1]
            hx = (x.new_zeros(rows, batch, lstm.proj_size), x.new_zeros(rows, batch, lstm.hidden_size))
        y, h, c = self.function.apply(x, hx[0], hx[1])
        return y, (h, c)


@contextmanager
def quiet() -> Iterator[None]:
    """torch's own run of a projected LSTM warns once per call that oneDNN lacks it: known, not the user's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        yield


def projected(module: nn.Module) -> list[tuple[nn.Module, str, nn.LSTM]]:
    """(parent, attribute, lstm) of every `nn.LSTM` with a projection inside `module`."""
    return [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, nn.LSTM) and child.proj_size > 0]


@contextmanager
def stand_ins(module: nn.Module) -> Iterator[list[nn.LSTM]]:
    """Swaps every projected LSTM of `module` for its stand-in while the block runs; yields them by index."""
    found = projected(module)
    try:
        for index, (parent, name, lstm) in enumerate(found):
            setattr(parent, name, _StandIn(lstm, index))
        yield [lstm for _, _, lstm in found]
    finally:
        for parent, name, lstm in found:
            setattr(parent, name, lstm)


def replace_placeholders(model: onnx.ModelProto, lstms: list[nn.LSTM]) -> onnx.ModelProto:
    """`model` with every placeholder node replaced by the builder's nodes (in its place: order kept)."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        index = next(a.i for a in node.attribute if a.name == "index")
        builder = _Builder(f"seqserve_proj{index}/")
        builder.lstm(lstms[index], *node.input, *node.output)
        nodes += builder.nodes
        inits += builder.inits
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    kept = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.checker.check_model(model)
    return model


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


class _Builder:
    """Nodes and initialisers of one projected LSTM, every name under `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), self.prefix + name))
        return self.prefix + name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def lstm(self, lstm: nn.LSTM, x: str, h0: str, c0: str, y: str, hn: str, cn: str) -> None:
        p = self.prefix
        dirs = 2 if lstm.bidirectional else 1
        seq = self.op("Transpose", [x], p + "x_tbf", perm=[1, 0, 2]) if lstm.batch_first else x  # (T, B, F)
        hs, cs = [], []
        axis0 = self.const("axis0", np.array([0], np.int64))
        for k in range(lstm.num_layers):
            ys = []
            for d in range(dirs):
                row = k * dirs + d
                idx = self.const(f"row{row}", np.array(row, np.int64))
                h = self.op("Gather", [h0, idx], f"{p}h0_{row}", axis=0)  # (B, P)
                c = self.op("Gather", [c0, idx], f"{p}c0_{row}", axis=0)  # (B, H)
                out = self._direction(lstm, k, d, seq, h, c)
                ys.append(out[0])
                hs.append(self.op("Unsqueeze", [out[1], axis0], f"{p}hn_{row}"))  # (1, B, P)
                cs.append(self.op("Unsqueeze", [out[2], axis0], f"{p}cn_{row}"))  # (1, B, H)
            seq = self.op("Concat", ys, f"{p}y{k}", axis=2) if dirs == 2 else ys[0]  # (T, B, D*P)
        self.op("Concat", hs, hn, axis=0)  # (L*D, B, P)
        self.op("Concat", cs, cn, axis=0)  # (L*D, B, H)
        self.op("Transpose", [seq], y, perm=[1, 0, 2]) if lstm.batch_first else self.op("Identity", [seq], y)

    def _direction(self, lstm: nn.LSTM, k: int, d: int, seq: str, h: str, c: str) -> tuple[str, str, str]:
        """One layer, one direction over `seq` (T, B, In): returns y (T, B, P), h_T (B, P), c_T (B, H)."""
        s = f"_l{k}{'_reverse' if d else ''}"
        tag = f"{self.prefix}{k}_{d}"
        w_ih = getattr(lstm, f"weight_ih{s}")  # (4H, In)
        bias = (_np(getattr(lstm, f"bias_ih{s}")) + _np(getattr(lstm, f"bias_hh{s}")) if lstm.bias
                else np.zeros(4 * lstm.hidden_size, np.float32))
        xw = self.op("Add", [self.op("MatMul", [seq, self.const(f"w_ih{k}_{d}", _np(w_ih).T)], tag + "_xw_mm"),
                             self.const(f"b{k}_{d}", bias)], tag + "_xw")  # (T, B, 4H)
        body = self._step(lstm, tag, _np(getattr(lstm, f"weight_hh{s}")).T, _np(getattr(lstm, f"weight_hr{s}")).T)
        outs = [tag + "_hT", tag + "_cT", tag + "_y"]
        self.nodes.append(helper.make_node("Scan", [h, c, xw], outs, name=tag + "_scan", body=body,
                                           num_scan_inputs=1, scan_input_directions=[d], scan_output_directions=[d]))
        return outs[2], outs[0], outs[1]

    def _step(self, lstm: nn.LSTM, tag: str, w_hh_t: np.ndarray, w_hr_t: np.ndarray) -> onnx.GraphProto:
        """The Scan body: (h (B, P), c (B, H), xw_t (B, 4H)) -> (h', c', y_t = h'); names under `tag/`."""
        b = _Builder(tag + "/")
        n = {k: f"{tag}/{k}" for k in ("h", "c", "xw_t", "h_next", "c_next", "y_t")}
        z = b.op("Add", [n["xw_t"], b.op("MatMul", [n["h"], self.const(f"{tag}_w_hh_t", w_hh_t)], f"{tag}/hw")],
                 f"{tag}/z")  # (B, 4H)
        gates = [f"{tag}/{g}" for g in "ifgo"]
        split = self.const(f"{tag}_split", np.array([lstm.hidden_size] * 4, np.int64))
        b.nodes.append(helper.make_node("Split", [z, split], gates, name=f"{tag}/split", axis=1))
        i, f, o = (b.op("Sigmoid", [gates[k]], f"{gates[k]}_sig") for k in (0, 1, 3))
        g = b.op("Tanh", [gates[2]], f"{tag}/g_tanh")
        fc, ig = b.op("Mul", [f, n["c"]], f"{tag}/fc"), b.op("Mul", [i, g], f"{tag}/ig")
        c_new = b.op("Add", [fc, ig], n["c_next"])  # (B, H)
        full = b.op("Mul", [o, b.op("Tanh", [c_new], f"{tag}/tanh_c")], f"{tag}/h_full")  # (B, H)
        b.op("MatMul", [full, self.const(f"{tag}_w_hr_t", w_hr_t)], n["h_next"])  # (B, P)
        b.op("Identity", [n["h_next"]], n["y_t"])
        value = helper.make_tensor_value_info
        return helper.make_graph(b.nodes, f"{tag}_step",
                                 [value(n[k], TensorProto.FLOAT, None) for k in ("h", "c", "xw_t")],
                                 [value(n[k], TensorProto.FLOAT, None) for k in ("h_next", "c_next", "y_t")])
