"""The import's verification, against the ORIGINAL graph run frame by frame (or step by step) by onnxruntime.

1. original vs wrapped: a batch of 3 rows with random state, one wrapped run against the original's own loop;
2. chunked vs whole: batch 1, random chunk sizes (the first is 1) with carried state against one whole run;
3. batched vs alone: the batch of 3 against each row run alone at batch 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from modelrepo.errors import ImportRefused
from modelrepo.importer.graph import Layout, Plan
from modelrepo.importer.wrap import CONTEXT_IN, inverse
from modelrepo.manifest import Verification

TOLERANCE = 1e-4
Arrays = dict[str, np.ndarray]


def session(model: onnx.ModelProto | bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # its errors reach the user once, in our own one-line message
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


class Original:
    """The original graph, fed one frame (or one time step) at a time in its own layout, state carried."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.session = session(plan.model)
        self.constants = {n: np.array(v, dtype=plan.inputs[n].dtype).reshape([1] * len(plan.inputs[n].dims))
                          for n, v in plan.constants.items()}

    def __call__(self, inputs: Arrays, state: Arrays, whole: bool = False) -> tuple[Arrays, Arrays]:
        """Step by step (frame by frame), or in one run over the whole sequence when `whole` (not streamable)."""
        plan = self.plan
        x = inputs[plan.sequence.tensor.name]
        state = dict(state)
        pieces: dict[str, list[np.ndarray]] = {o.tensor.name: [] for o in plan.outputs}
        for t in range(1 if whole else x.shape[1]):
            end = x.shape[1] if whole else t + 1
            step = x[:, t] if plan.frame is not None else x[:, t:end]
            if plan.context:
                step = np.concatenate([state[CONTEXT_IN], step], axis=1)
                state[CONTEXT_IN] = step[:, -plan.context :]
            feeds = {plan.sequence.tensor.name: _own(step, plan.sequence), **self.constants}
            for e in plan.extra:
                feeds[e.tensor.name] = _own(inputs[e.tensor.name][:, t:end], e)
            for s, _ in plan.state:
                feeds[s.tensor.name] = state[s.tensor.name].transpose(inverse(s.canonical_perm()))
            values = dict(zip([o.name for o in self.session.get_outputs()], self.session.run(None, feeds),
                              strict=True))
            for s, o in plan.state:
                state[s.tensor.name] = values[o.tensor.name].transpose(o.canonical_perm())
            for o in plan.outputs:
                y = values[o.tensor.name].transpose(o.canonical_perm())
                pieces[o.tensor.name].append(y[:, None] if plan.frame is not None else y)
        return {n: np.concatenate(p, axis=1) for n, p in pieces.items()}, state


def _own(x: np.ndarray, layout: Layout) -> np.ndarray:
    """A served data input `(batch, time, features)` in the original graph's layout."""
    return (x[..., 0] if layout.ids_2d else x).transpose(inverse(layout.canonical_perm()))


class Wrapped:
    def __init__(self, model: onnx.ModelProto, plan: Plan) -> None:
        self.session = session(model)
        self.pairs = [(s.tensor.name, o.tensor.name) for s, o in plan.state]
        if plan.context:
            self.pairs.append((CONTEXT_IN, "contextN"))

    def __call__(self, inputs: Arrays, state: Arrays) -> tuple[Arrays, Arrays]:
        names = [o.name for o in self.session.get_outputs()]
        values = dict(zip(names, self.session.run(None, {**inputs, **state}), strict=True))
        new_state = {i: values.pop(o) for i, o in self.pairs}
        return values, new_state


def random_inputs(plan: Plan, rng: np.random.Generator, batch: int, steps: int) -> tuple[Arrays, Arrays]:
    """Random data inputs `(batch, steps, features)` (token ids below their vocabulary size) and state."""
    inputs = {}
    for layout in plan.data:
        name, dtype = layout.tensor.name, layout.tensor.dtype
        width = plan.features if layout is plan.sequence else layout.width
        shape = (batch, steps, int(width or 1))  # an extra input's width is static (`propose` checks it)
        inputs[name] = (rng.integers(0, plan.vocab[name], shape).astype(dtype) if name in plan.vocab
                        else (0.5 * rng.standard_normal(shape)).astype(dtype))
    state = {}
    for s, _ in plan.state:
        dims = [s.tensor.dims[a] for a in s.canonical_perm()][1:]
        state[s.tensor.name] = (0.5 * rng.standard_normal((batch, *dims))).astype(s.tensor.dtype)  # type: ignore[arg-type]
    if plan.context:
        state[CONTEXT_IN] = (0.5 * rng.standard_normal((batch, plan.context))).astype(plan.sequence.tensor.dtype)
    return inputs, state


def verify(plan: Plan, model: onnx.ModelProto, seed: int = 0, streamable: bool = True) -> Verification:
    """All three checks (chunked only when `streamable`); `ImportRefused` with the numbers if one fails or either
    graph refuses to run."""
    rng = np.random.default_rng(seed)
    try:
        original = Original(plan)
    except Exception as exc:
        raise ImportRefused(f"onnxruntime cannot load the original graph: {_first_line(exc)}") from exc
    wrapped = Wrapped(model, plan)
    x, state = random_inputs(plan, rng, batch=3, steps=9)
    try:
        expected = original(x, state, whole=not streamable)
    except Exception as exc:
        raise ImportRefused(f"the original graph does not run at batch 3 in the proposed layout ({_layout(plan)}): "
                            f"{_first_line(exc)}; set the batch axes with --batch-axis NAME=AXIS") from exc
    try:
        whole = wrapped(x, state)
        alone = [wrapped({k: v[i : i + 1] for k, v in x.items()}, {k: v[i : i + 1] for k, v in state.items()})
                 for i in range(3)]
        x1, state1 = random_inputs(plan, rng, batch=1, steps=17)
        one = wrapped(x1, state1)
        chunked = _chunked(wrapped, x1, state1, rng) if streamable else None
    except Exception as exc:
        raise ImportRefused(f"the wrapped graph does not run: {_first_line(exc)}") from exc
    stacked = ({k: np.concatenate([a[0][k] for a in alone]) for k in whole[0]},
               {k: np.concatenate([a[1][k] for a in alone]) for k in whole[1]})
    result = Verification(tolerance=TOLERANCE, original_vs_wrapped=_diff(expected, whole),
                          chunked_vs_whole=None if chunked is None else _diff(one, chunked),
                          batched_vs_alone=_diff(whole, stacked))
    failed = [f"{k} {v:.3g}" for k, v in result.model_dump(exclude={"tolerance"}).items() if v is not None
              and not v <= TOLERANCE]
    if failed:
        raise ImportRefused(f"verification failed (max abs diff > {TOLERANCE}): {', '.join(failed)}; "
                            f"layout used: {_layout(plan)}")
    return result


def _chunked(wrapped: Wrapped, x: Arrays, state: Arrays, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    sizes = [1]
    while sum(sizes) < next(iter(x.values())).shape[1]:
        sizes.append(int(rng.integers(1, 9)))
    pieces: list[Arrays] = []
    start = 0
    for size in sizes:
        out, state = wrapped({k: v[:, start : start + size] for k, v in x.items()}, state)
        pieces.append(out)
        start += size
    return {k: np.concatenate([p[k] for p in pieces], axis=1) for k in pieces[0]}, state


def _diff(a: tuple[Arrays, Arrays], b: tuple[Arrays, Arrays]) -> float:
    pairs = [(a[0][k], b[0][k]) for k in a[0]] + [(a[1][k], b[1][k]) for k in a[1]]
    if any(x.shape != y.shape for x, y in pairs):
        return float("inf")
    return max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in pairs)


def _layout(plan: Plan) -> str:
    layouts = [plan.sequence, *plan.outputs, *(s for pair in plan.state for s in pair)]
    return ", ".join(f"{lay.tensor.name} batch axis {lay.batch_axis}" for lay in layouts)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:240]
