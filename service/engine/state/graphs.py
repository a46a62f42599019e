"""The state pool's gather and scatter as two tiny ONNX graphs, so that they run where the model runs.

Built at load time with `onnx` (protobuf only, no torch) for one model's state tensors, numbered 0..n-1 in
manifest order (graph names never depend on the model's tensor names):

- gather: `pool_i (capacity, *shape)`, `slots (B,) int64` -> `state_i (B, *shape)` = `pool_i[slots]`;
- scatter: `pool_i`, `slots (K,) int64`, `rows (K,) int64`, `new_i (B, *shape)` -> `pool_out_i`, the pool with
  `pool_i[slots[k]] = new_i[rows[k]]` (only the rows that advance are written; slots are distinct).

`service/engine/runtime.py` runs them (`DeviceGraph`); `service/engine/state/device.py` keeps the pool arrays.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelrepo import StatePair

OPSET = 17


def _tensor(name: str, dtype: str, dims: list[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="seqserve")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model)
    return model.SerializeToString()


def gather_graph(pairs: list[StatePair]) -> bytes:
    inputs = [_tensor("slots", "int64", ["batch"])]
    outputs, nodes = [], []
    for i, p in enumerate(pairs):
        inputs.append(_tensor(f"pool_{i}", p.dtype, ["capacity", *p.shape]))
        outputs.append(_tensor(f"state_{i}", p.dtype, ["batch", *p.shape]))
        nodes.append(helper.make_node("Gather", [f"pool_{i}", "slots"], [f"state_{i}"], axis=0))
    return _model(helper.make_graph(nodes, "seqserve_gather", inputs, outputs))


def scatter_graph(pairs: list[StatePair]) -> bytes:
    inputs = [_tensor("slots", "int64", ["rows"]), _tensor("rows", "int64", ["rows"])]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Unsqueeze", ["slots", "axes"], ["where"])]  # (K, 1): ScatterND's index tuples
    outputs = []
    for i, p in enumerate(pairs):
        inputs.append(_tensor(f"pool_{i}", p.dtype, ["capacity", *p.shape]))
        inputs.append(_tensor(f"new_{i}", p.dtype, ["batch", *p.shape]))
        outputs.append(_tensor(f"pool_out_{i}", p.dtype, ["capacity", *p.shape]))
        nodes.append(helper.make_node("Gather", [f"new_{i}", "rows"], [f"kept_{i}"], axis=0))
        nodes.append(helper.make_node("ScatterND", [f"pool_{i}", "where", f"kept_{i}"], [f"pool_out_{i}"]))
    return _model(helper.make_graph(nodes, "seqserve_scatter", inputs, outputs, initializer=[axes]))
