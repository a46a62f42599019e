"""The canonical graph around an original one: input `(batch, time, features)`, outputs `(batch, time, size)`,
state batch-first, constants baked, a frame model run by a `Scan` over its frames with its input context carried
as one more state pair.

The original graph goes in whole, every name prefixed with `orig/` (subgraphs included), so no name can clash.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from modelrepo.importer.graph import Layout, Plan

PREFIX = "orig/"
CONTEXT_IN, CONTEXT_OUT = "context", "contextN"
_ELEM = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE,
         "int64": TensorProto.INT64, "int32": TensorProto.INT32}


def inverse(perm: list[int]) -> list[int]:
    return [perm.index(a) for a in range(len(perm))]


def wrap(plan: Plan) -> onnx.ModelProto:
    """The wrapped model; `onnx.checker` has accepted it."""
    original = onnx.ModelProto()
    original.CopyFrom(plan.model)
    _rename_graph(original.graph)
    scan = plan.frame is not None
    step = "body/" if scan else ""  # names inside the per-frame body
    nodes: list[onnx.NodeProto] = []
    seq = plan.sequence
    frame_in = f"{step}{seq.tensor.name}"
    if plan.context:
        nodes.append(helper.make_node("Concat", [f"{step}{CONTEXT_IN}", frame_in], [f"{step}joined"], axis=1))
        frame_in = f"{step}joined"
    nodes += _data_in(frame_in, seq)
    for extra in plan.extra:  # further data inputs (never in a frame model)
        nodes += _data_in(extra.tensor.name, extra)
    for name, value in plan.constants.items():
        dtype = _ELEM[plan.inputs[name].dtype]
        nodes.append(helper.make_node("Constant", [], [PREFIX + name],
                                      value=helper.make_tensor(f"{name}_value", dtype, [], [value])))
    for state_in, _ in plan.state:
        nodes.append(_transpose(step + state_in.tensor.name, PREFIX + state_in.tensor.name,
                                inverse(state_in.canonical_perm())))
    nodes.extend(original.graph.node)
    for _, state_out in plan.state:
        nodes.append(_transpose(PREFIX + state_out.tensor.name, step + state_out.tensor.name,
                                state_out.canonical_perm()))
    if plan.context:
        nodes += _context_slice(f"{step}joined", f"{step}{CONTEXT_OUT}", plan.context)
    for out in plan.outputs:
        nodes.append(_transpose(PREFIX + out.tensor.name, step + out.tensor.name, out.canonical_perm()))
    state_ins = [_value(s.tensor.name, s) for s, _ in plan.state]
    state_outs = [_value(o.tensor.name, s, o.tensor.dtype) for s, o in plan.state]
    if plan.context:
        state_ins.append(_context_value(CONTEXT_IN, plan))
        state_outs.append(_context_value(CONTEXT_OUT, plan))
    outputs = [_output_value(o, scan) for o in plan.outputs]
    graph_input = helper.make_tensor_value_info(seq.tensor.name, _ELEM[seq.tensor.dtype],
                                                ["batch", "time", plan.features])
    extra_inputs = [helper.make_tensor_value_info(e.tensor.name, _ELEM[e.tensor.dtype],
                                                  ["batch", "time", e.width])
                    for e in plan.extra]
    if scan:
        body = helper.make_graph(
            nodes, "frame",
            [_rename_value(v, step) for v in state_ins]
            + [helper.make_tensor_value_info(frame_in_name(plan), _ELEM[seq.tensor.dtype], ["batch", plan.features])],
            [_rename_value(v, step) for v in state_outs] + [_rename_value(_output_value(o, False), step)
                                                              for o in plan.outputs])
        loop = helper.make_node("Scan", [v.name for v in state_ins] + [seq.tensor.name],
                                [v.name for v in state_outs] + [o.name for o in outputs], body=body,
                                num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1] * len(outputs))
        nodes = [loop]
    graph = helper.make_graph(nodes, plan.model.graph.name or "imported", [graph_input, *extra_inputs, *state_ins],
                              [*outputs, *state_outs], initializer=list(original.graph.initializer))
    model = helper.make_model(graph, opset_imports=list(plan.model.opset_import), ir_version=plan.model.ir_version,
                              producer_name="seqserve modelrepo import")
    onnx.checker.check_model(model)
    return model


def frame_in_name(plan: Plan) -> str:
    return f"body/{plan.sequence.tensor.name}"


def _data_in(src: str, layout: Layout) -> list[onnx.NodeProto]:
    """The served data input to the original graph's: token ids (batch, time, 1) squeezed to (batch, time) when
    the graph has no feature axis, then its own axis order."""
    dst = PREFIX + layout.tensor.name
    if not layout.ids_2d:
        return [_transpose(src, dst, inverse(layout.canonical_perm()))]
    axes = helper.make_node("Constant", [], [f"{dst}/axes"], value=helper.make_tensor("axes", TensorProto.INT64, [1],
                                                                                       [2]))
    return [axes, helper.make_node("Squeeze", [src, f"{dst}/axes"], [f"{dst}/ids"]),
            _transpose(f"{dst}/ids", dst, inverse(layout.canonical_perm()))]


def _transpose(src: str, dst: str, perm: list[int]) -> onnx.NodeProto:
    if perm == sorted(perm):
        return helper.make_node("Identity", [src], [dst])
    return helper.make_node("Transpose", [src], [dst], perm=perm)


def _context_slice(src: str, dst: str, context: int) -> list[onnx.NodeProto]:
    consts = {"starts": [-context], "ends": [2**62], "axes": [1]}
    nodes = [helper.make_node("Constant", [], [f"{dst}_{k}"], value=helper.make_tensor(k, TensorProto.INT64, [1], v))
             for k, v in consts.items()]
    return [*nodes, helper.make_node("Slice", [src, *(f"{dst}_{k}" for k in consts)], [dst])]


def _value(name: str, layout: Layout, dtype: str | None = None) -> onnx.ValueInfoProto:
    dims = [layout.tensor.dims[a] for a in layout.canonical_perm()]
    return helper.make_tensor_value_info(name, _ELEM[dtype or layout.tensor.dtype], ["batch", *dims[1:]])


def _context_value(name: str, plan: Plan) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _ELEM[plan.sequence.tensor.dtype], ["batch", plan.context])


def _output_value(out: Layout, with_time: bool) -> onnx.ValueInfoProto:
    dims = [out.tensor.dims[a] for a in out.canonical_perm()]
    shape = ["batch", "time", *dims[1:]] if with_time else ["batch", *dims[1:]]
    return helper.make_tensor_value_info(out.tensor.name, _ELEM[out.tensor.dtype], shape)


def _rename_value(v: onnx.ValueInfoProto, prefix: str) -> onnx.ValueInfoProto:
    renamed = onnx.ValueInfoProto()
    renamed.CopyFrom(v)
    renamed.name = prefix + v.name
    return renamed


def _rename_graph(graph: onnx.GraphProto) -> None:
    """Prefix every value name in `graph` and its subgraphs (empty names mean "absent" and stay empty)."""

    def new(name: str) -> str:
        return PREFIX + name if name else name

    for v in [*graph.input, *graph.output, *graph.value_info]:
        v.name = new(v.name)
    for init in graph.initializer:
        init.name = new(init.name)
    for node in graph.node:
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_graph(attr.g)
            for g in attr.graphs:
                _rename_graph(g)
