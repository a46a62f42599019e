"""Reading a stateful ONNX graph and proposing how it maps onto the canonical form.

The proposal: one sequence input (or frame input), state pairs (an input and the output of the same shape whose
name matches best: h0/hn, state/stateN), constant inputs (given by the user), and the batch axis of every tensor
(the only dynamic axis, else the user's `--batch-axis`, else axis 0). Any doubt is an `ImportRefused` that says
which flag settles it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from modelrepo.errors import ImportRefused

NUMPY_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
    TensorProto.INT64: "int64", TensorProto.INT32: "int32", TensorProto.BOOL: "bool",
}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # numpy name
    dims: tuple[int | None, ...]  # None: dynamic or unknown


@dataclass(frozen=True)
class Layout:
    """Where a tensor's batch axis (and, for a sequence input or output, its time axis) is in the original graph."""

    tensor: Tensor
    batch_axis: int
    time_axis: int | None = None

    @property
    def ids_2d(self) -> bool:
        """A token input `(batch, time)` without a feature axis: served `(batch, time, 1)`, squeezed for the graph."""
        return self.time_axis is not None and len(self.tensor.dims) == 2

    @property
    def width(self) -> int | None:
        """The served last axis of a data input (1 for `(batch, time)` token ids; None when dynamic)."""
        return 1 if self.ids_2d else self.tensor.dims[self.canonical_perm()[-1]]

    def canonical_perm(self) -> list[int]:
        """The Transpose `perm` that puts the batch axis first (then time, then the rest in order)."""
        lead = [self.batch_axis] + ([self.time_axis] if self.time_axis is not None else [])
        return lead + [a for a in range(len(self.tensor.dims)) if a not in lead]


@dataclass
class Plan:
    """What the wrapper does; built by `propose`, read by `wrap` and `check`."""

    model: onnx.ModelProto
    source: Tensor
    sequence: Layout
    outputs: list[Layout]
    state: list[tuple[Layout, Layout]]
    constants: dict[str, float | int] = field(default_factory=dict)
    frame: int | None = None  # new samples per frame, None: the graph has a time axis
    context: int = 0
    extra: list[Layout] = field(default_factory=list)  # further data inputs (batch, time, features)
    vocab: dict[str, int] = field(default_factory=dict)  # integer (token) inputs: ids < vocab

    @property
    def data(self) -> list[Layout]:
        """Every data input, the sequence input first."""
        return [self.sequence, *self.extra]

    @property
    def inputs(self) -> dict[str, Tensor]:
        initializers = {i.name for i in self.model.graph.initializer}
        return {t.name: t for t in tensors(list(self.model.graph.input), initializers)}

    @property
    def features(self) -> int:
        if self.frame is not None:
            return self.frame
        return 1 if self.sequence.ids_2d else _static(self.sequence, -1)


def load(path: Path) -> onnx.ModelProto:
    if not Path(path).is_file():
        raise ImportRefused(f"{path}: no such file")
    try:
        model = onnx.load(os.fspath(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ImportRefused(f"{path}: not an ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
            from exc
    return model


def tensors(values: list[onnx.ValueInfoProto], exclude: frozenset[str] | set[str] = frozenset()) -> list[Tensor]:
    found = []
    for v in values:
        if v.name in exclude:
            continue
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        found.append(Tensor(v.name, NUMPY_DTYPES.get(t.elem_type, helper.tensor_dtype_to_string(t.elem_type)), dims))
    return found


def propose(model: onnx.ModelProto, *, constants: dict[str, str], pairs: list[tuple[str, str]],
            batch_axes: dict[str, int], frame: int | None, context: int, vocab: dict[str, int] | None = None,
            stateless: bool = False) -> Plan:
    initializers = {i.name for i in model.graph.initializer}
    inputs = {t.name: t for t in tensors(list(model.graph.input), initializers)}
    outputs = {t.name: t for t in tensors(list(model.graph.output))}
    vocab = vocab or {}
    for name in [*constants, *batch_axes, *vocab, *(n for pair in pairs for n in pair)]:
        if name not in inputs and name not in outputs:
            raise ImportRefused(f"the graph has no input or output {name!r}; inputs: {sorted(inputs)}")
    baked = {name: parse_constant(inputs[name], text) for name, text in constants.items()}
    chosen = pairs or ([] if stateless else _propose_pairs([t for n, t in inputs.items() if n not in baked],
                                                             list(outputs.values())))
    state_in = {i for i, _ in chosen}
    state_out = {o for _, o in chosen}
    rest = [t for n, t in inputs.items() if n not in baked and n not in state_in]
    hint = [f"{t.name} {t.dtype} {_shape(t)}" for t in rest]
    if not rest or (frame is not None and len(rest) > 1) or any(_rank(t, None) != len(t.dims) for t in rest[1:]):
        raise ImportRefused(f"expected one data input (several for a graph with a time axis, each (batch, time, "
                            f"features)) besides state and constants, found {hint or 'none'}; bake the others with "
                            "--constant NAME=VALUE or pair them with --state IN:OUT")
    for t in rest:
        if t.dtype.startswith("int") and t.name not in vocab:
            raise ImportRefused(f"input {t.name!r} is {t.dtype} (token ids): give its vocabulary size with "
                                f"--vocab-size {t.name}=N")
        if not t.dtype.startswith("int") and t.name in vocab:
            raise ImportRefused(f"--vocab-size {t.name}: the input is {t.dtype}, not integer token ids")
    rank = 2 if frame is not None else 3
    sequence = _layout(rest[0], batch_axes, _rank(rest[0], frame), with_time=frame is None)
    extra = [_layout(t, batch_axes, _rank(t, None), with_time=True) for t in rest[1:]]
    outs = [_layout(t, batch_axes, rank, with_time=frame is None) for n, t in outputs.items() if n not in state_out]
    state = []
    for i, o in chosen:
        layout = _layout(inputs[i], batch_axes, None, with_time=False)
        state.append((layout, Layout(outputs[o], batch_axes.get(o, layout.batch_axis))))
    plan = Plan(model, rest[0], sequence, outs, state, baked, frame, context, extra, dict(vocab))
    _check_frame(plan)
    for layout in extra:
        if not layout.ids_2d:
            _static(layout, -1)
    return plan


def _rank(t: Tensor, frame: int | None) -> int:
    """The rank a data input must have: (batch, samples) for a frame model, (batch, time) for token ids given
    without a feature axis, else (batch, time, features)."""
    if frame is not None:
        return 2
    return 2 if t.dtype.startswith("int") and len(t.dims) == 2 else 3


def parse_constant(tensor: Tensor, text: str) -> float | int:
    if any(d != 1 for d in tensor.dims):
        raise ImportRefused(f"--constant {tensor.name}: the input is {tensor.dtype} {_shape(tensor)}, not a scalar")
    try:
        if tensor.dtype.startswith("int"):
            return int(text)
        if tensor.dtype.startswith("float"):
            return float(text)
    except ValueError:
        raise ImportRefused(f"--constant {tensor.name}={text}: the input is {tensor.dtype}, "
                            f"{text!r} is not a valid {tensor.dtype} value") from None
    raise ImportRefused(f"--constant {tensor.name}: inputs of type {tensor.dtype} cannot be baked")


def _propose_pairs(inputs: list[Tensor], outputs: list[Tensor]) -> list[tuple[str, str]]:
    """Each input whose shape and dtype fit exactly one output best by name (longest common prefix)."""
    pairs = []
    for t in inputs:
        fits = [o for o in outputs if o.dtype == t.dtype and _compatible(t.dims, o.dims)]
        scored = sorted(((_common_prefix(t.name, o.name), o.name) for o in fits), reverse=True)
        if not scored or scored[0][0] == 0:
            continue
        if len(scored) > 1 and scored[1][0] == scored[0][0]:
            raise ImportRefused(f"state input {t.name!r} matches outputs {[n for s, n in scored if s == scored[0][0]]}"
                                f" equally; say which with --state {t.name}:OUTPUT")
        pairs.append((t.name, scored[0][1]))
    if not pairs:
        raise ImportRefused("no state candidate: no input has an output of the same shape and a matching name "
                            "(h0/hn, state/stateN); name them with --state IN:OUT")
    return pairs


def _layout(t: Tensor, batch_axes: dict[str, int], rank: int | None, with_time: bool) -> Layout:
    if rank is not None and len(t.dims) != rank:
        want = "(batch, time, features)" if with_time else "(batch, samples) for a frame model (--frame)"
        raise ImportRefused(f"{t.name!r} has rank {len(t.dims)} {_shape(t)}; expected {want} in some axis order")
    dynamic = [a for a, d in enumerate(t.dims) if d is None]
    batch = batch_axes.get(t.name, dynamic[0] if len(dynamic) == 1 or (dynamic and not with_time) else 0)
    if not 0 <= batch < len(t.dims):
        raise ImportRefused(f"--batch-axis {t.name}={batch}: the tensor has rank {len(t.dims)}")
    time = (1 if batch == 0 else 0) if with_time else None
    return Layout(t, batch, time)


def _check_frame(plan: Plan) -> None:
    last = plan.sequence.tensor.dims[-1]
    if plan.frame is None:
        if plan.context:
            raise ImportRefused("--context needs --frame")
        if not plan.sequence.ids_2d:
            _static(plan.sequence, -1)
    elif last is not None and last != plan.frame + plan.context:
        raise ImportRefused(f"--frame {plan.frame} --context {plan.context}: the input {plan.source.name!r} takes "
                            f"{last} samples per frame, not {plan.frame + plan.context}")


def _static(layout: Layout, axis: int) -> int:
    size = layout.tensor.dims[axis]
    if size is None:
        raise ImportRefused(f"the feature axis of {layout.tensor.name!r} is dynamic; a frame model needs --frame N")
    return size


def _compatible(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        n += 1
    return n


def _shape(t: Tensor) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in t.dims) + ")"
