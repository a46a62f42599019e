"""Small stateful ONNX graphs in foreign layouts, built with onnx.helper (no torch): what users bring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES, HIDDEN = 3, 4


def _init(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> onnx.TensorProto:
    return numpy_helper.from_array((0.5 * rng.standard_normal(shape)).astype(np.float32), name)


def torch_layout_lstm(path: Path, *, opset: int = 17, state_dims: tuple[object, ...] = (1, "batch", HIDDEN),
                      fixed_batch: bool = False, seed: int = 0) -> Path:
    """A 1-layer LSTM as torch exports it: input (batch, time, F), state h0/c0 (1, batch, H) with the batch on
    axis 1, output (batch, time, H). `fixed_batch` declares the input's batch axis as 2 (a bad export)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Transpose", ["input"], ["x_tbf"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["x_tbf", "W", "R", "B", "", "h0", "c0"], ["y", "hn", "cn"], hidden_size=HIDDEN),
        helper.make_node("Squeeze", ["y", "one"], ["y_tbh"]),
        helper.make_node("Transpose", ["y_tbh"], ["output"], perm=[1, 0, 2]),
    ]
    inits = [_init("W", (1, 4 * HIDDEN, FEATURES), rng), _init("R", (1, 4 * HIDDEN, HIDDEN), rng),
             _init("B", (1, 8 * HIDDEN), rng), numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    batch = 2 if fixed_batch else "batch"
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, "time", FEATURES])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(state_dims)) for n in ("h0", "c0")]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, "time", HIDDEN])]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(state_dims)) for n in ("hn", "cn")]
    graph = helper.make_graph(nodes, "torch_layout_lstm", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def frame_rnn(path: Path, *, samples: int = 6, context: int = 2, seed: int = 0) -> Path:
    """A frame model like Silero's: input (batch, context + samples) without a time axis, an int64 scalar `sr`
    that scales the input, state (2, batch, H) with the batch on axis 1, output (batch, 1)."""
    rng = np.random.default_rng(seed)
    width = context + samples
    nodes = [
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sr_f", "k"], ["scale"]),
        helper.make_node("Mul", ["input", "scale"], ["scaled"]),
        helper.make_node("Unsqueeze", ["scaled", "zero"], ["x1"]),  # (1, batch, width)
        helper.make_node("Slice", ["state", "zero", "one", "zero"], ["h_fwd"]),  # (1, batch, H)
        helper.make_node("RNN", ["x1", "W", "R", "", "", "h_fwd"], ["", "h1"], hidden_size=HIDDEN),
        helper.make_node("Concat", ["h1", "h1"], ["stateN"], axis=0),  # (2, batch, H)
        helper.make_node("Squeeze", ["h1", "zero"], ["h"]),
        helper.make_node("MatMul", ["h", "head"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),
    ]
    inits = [_init("W", (1, HIDDEN, width), rng), _init("R", (1, HIDDEN, HIDDEN), rng), _init("head", (HIDDEN, 1), rng),
             numpy_helper.from_array(np.array(16000.0, dtype=np.float32), "k"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, None]),
              helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, HIDDEN]),
              helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 1]),
               helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [None, None, None])]
    graph = helper.make_graph(nodes, "frame_rnn", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def step_counter(path: Path) -> Path:
    """An int64 state: `count (batch, 1)` counts the steps seen so far (`count_out = count + time`); the output is
    the input itself. Not a float, not a recurrent operator: what a user's own stateful graph may well carry."""
    nodes = [
        helper.make_node("Identity", ["input"], ["output"]),
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Gather", ["shape", "time_axis"], ["steps"], axis=0),
        helper.make_node("Add", ["count", "steps"], ["count_out"]),
    ]
    inits = [numpy_helper.from_array(np.array(1, dtype=np.int64), "time_axis")]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "time", FEATURES]),
              helper.make_tensor_value_info("count", TensorProto.INT64, ["batch", 1])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "time", FEATURES]),
               helper.make_tensor_value_info("count_out", TensorProto.INT64, ["batch", 1])]
    graph = helper.make_graph(nodes, "step_counter", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def token_gru(path: Path, vocab: int = 7, seed: int = 0) -> Path:
    """A GRU over token ids `ids (batch, time)` int64 (an embedding by Gather) beside a float input `cond (batch,
    time, 2)`, state h0/hn (1, batch, H): what a token model with a conditioning input exports to."""
    rng = np.random.default_rng(seed)
    width = 3 + 2
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["embedded"], axis=0),  # (batch, time, 3)
        helper.make_node("Concat", ["embedded", "cond"], ["joined"], axis=2),  # (batch, time, 5)
        helper.make_node("Transpose", ["joined"], ["x_tbf"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["x_tbf", "W", "R", "B", "", "h0"], ["y", "hn"], hidden_size=HIDDEN),
        helper.make_node("Squeeze", ["y", "one"], ["y_tbh"]),
        helper.make_node("Transpose", ["y_tbh"], ["output"], perm=[1, 0, 2]),
    ]
    inits = [_init("E", (vocab, 3), rng), _init("W", (1, 3 * HIDDEN, width), rng),
             _init("R", (1, 3 * HIDDEN, HIDDEN), rng), _init("B", (1, 6 * HIDDEN), rng),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "token_gru",
        [value("ids", TensorProto.INT64, ["batch", "time"]), value("cond", TensorProto.FLOAT, ["batch", "time", 2]),
         value("h0", TensorProto.FLOAT, [1, "batch", HIDDEN])],
        [value("output", TensorProto.FLOAT, ["batch", "time", HIDDEN]),
         value("hn", TensorProto.FLOAT, [1, "batch", HIDDEN])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path
