"""`export_module`: a user's own `nn.Module` to a verified version folder, whatever its state layout.

The module's forward takes `(x, *state)` with `x` `(batch, time, features)` and returns `(outputs..., *new_state)`,
each output `(batch, time, size)`, each new state in the same layout as the state it replaces (batch on axis
`state_batch_axis`: 0 for batch-first, 1 for torch's own `(layers, batch, hidden)`). The module is exported as
it is, then wrapped into the served form (batch-first state) by the import's wrapper, and verified: torch vs
onnxruntime, the original graph's own step-by-step run vs the wrapped one, chunked vs whole, batched vs alone.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from modelrepo import Manifest, Source, writer
from modelrepo.errors import ImportRefused
from modelrepo.importer.build import ImportOptions, Kind, adapted, manifest_for, plan_for
from modelrepo.importer.check import TOLERANCE, Wrapped, verify
from modelrepo.importer.graph import Plan
from modelrepo.importer.wrap import wrap
from training.errors import ExportError
from training.export import EXPORTER, check_destination, export_quietly


def export_module(module: torch.nn.Module, example_input: torch.Tensor, state: Sequence[torch.Tensor], root: Path,
                  name: str, version: int = 1, *, state_batch_axis: int | Sequence[int] = 0,
                  state_names: Sequence[tuple[str, str]] | None = None, output_names: Sequence[str] | None = None,
                  kind: Kind = "other", description: str = "", force: bool = False) -> Manifest:
    """Exports, verifies and writes `root/name/version/`; returns the manifest written. `ExportError` otherwise."""
    dest = Path(root) / name / str(version)
    check_destination(dest, force)
    module.eval()
    axes_of = [state_batch_axis] * len(state) if isinstance(state_batch_axis, int) else list(state_batch_axis)
    pairs = list(state_names or [(f"state{i}", f"state{i}_out") for i in range(len(state))])
    if len(axes_of) != len(state) or len(pairs) != len(state):
        raise ExportError(f"{len(state)} state tensors, {len(axes_of)} batch axes, {len(pairs)} state names")
    with torch.no_grad():
        results = module(example_input, *state)
    results = list(results) if isinstance(results, tuple | list) else [results]
    outputs = list(output_names or (["output"] if len(results) - len(state) == 1 else
                                    [f"output{i}" for i in range(len(results) - len(state))]))
    if len(outputs) + len(state) != len(results) or not outputs:
        raise ExportError(f"forward returned {len(results)} tensors for {len(state)} state tensors; expected "
                          "(outputs..., *new_state) with at least one output")
    dynamic = {"input": {0: "batch", 1: "time"}} | {o: {0: "batch", 1: "time"} for o in outputs}
    for (i, o), axis in zip(pairs, axes_of, strict=True):
        dynamic |= {i: {axis: "batch"}, o: {axis: "batch"}}
    options = ImportOptions(name=name, version=version, pairs=pairs, kind=kind, description=description,
                            batch_axes={n: axis for (i, o), axis in zip(pairs, axes_of, strict=True) for n in (i, o)})
    try:
        original = export_quietly(module, (example_input, *state), ["input", *(i for i, _ in pairs)],
                                  [*outputs, *(o for _, o in pairs)], dynamic)
        plan = plan_for(original, options)
        wrapped = wrap(plan)
        checks = verify(plan, wrapped)
    except ImportRefused as exc:
        raise ExportError(str(exc)) from exc
    diff = torch_vs_wrapped(module, plan, wrapped, axes_of)
    if not diff <= TOLERANCE:
        raise ExportError(f"export verification failed: torch_vs_onnxruntime max abs diff {diff:.3g} > {TOLERANCE}")
    checks = checks.model_copy(update={"torch_vs_onnxruntime": diff})
    kind_of = type(module)
    source = Source(kind="module", file=f"{kind_of.__module__}.{kind_of.__qualname__}", adapted=adapted(plan))
    data = wrapped.SerializeToString()
    manifest = manifest_for(plan, data, options, checks, source, EXPORTER)
    writer.write_version_dir(dest, manifest, data, {}, force)
    return manifest


def torch_vs_wrapped(module: torch.nn.Module, plan: Plan, wrapped: onnx.ModelProto, axes: list[int],
                     seed: int = 1) -> float:
    """The module on a random batch of 3 with random state in its own layout vs the wrapped graph."""
    rng = np.random.default_rng(seed)
    x = (0.5 * rng.standard_normal((3, 11, plan.features))).astype(np.float32)
    own = []
    for (s, _), axis in zip(plan.state, axes, strict=True):
        dims = [3 if a == axis or d is None else d for a, d in enumerate(s.tensor.dims)]
        own.append((0.5 * rng.standard_normal(dims)).astype(np.float32))
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(x), *map(torch.from_numpy, own))]
    got_out, got_state = Wrapped(wrapped, plan)(
        x, {s.tensor.name: np.moveaxis(v, axis, 0) for (s, _), v, axis in zip(plan.state, own, axes, strict=True)})
    got = [got_out[o.tensor.name] for o in plan.outputs]
    got += [np.moveaxis(got_state[s.tensor.name], 0, axis) for (s, _), axis in zip(plan.state, axes, strict=True)]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got, strict=True))


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`python -m training export-module PACKAGE.MODULE:FACTORY --features F --state 2,B,32 ... --name N`."""
    p = sub.add_parser("export-module", help="export your own nn.Module (forward(x, *state)) to models/, verified")
    p.add_argument("factory", help="PACKAGE.MODULE:CALLABLE returning the nn.Module, e.g. examples.my_lstm:MyLSTM")
    p.add_argument("--weights", type=Path, default=None, help="a state_dict file to load into the module")
    p.add_argument("--features", type=int, required=True, help="last axis of the input (batch, time, features)")
    p.add_argument("--state", action="append", default=[], required=True, metavar="SHAPE",
                   help="one state tensor's shape with B for the batch axis, e.g. 2,B,32 (repeatable, in order)")
    p.add_argument("--state-name", action="append", default=[], metavar="IN:OUT", help="names of each state pair")
    p.add_argument("--output", action="append", default=[], metavar="NAME", help="names of the outputs")
    p.add_argument("--kind", default="other", choices=["logits", "regression", "probability", "other"])
    add_destination(p)
    p.set_defaults(func=_run)


def add_destination(p: argparse.ArgumentParser) -> None:
    """The flags every export shares: where the version folder goes and what it says."""
    p.add_argument("--name", required=True)
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--description", default="")
    p.add_argument("--force", action="store_true", help="replace an existing version folder")


def _run(args: argparse.Namespace) -> None:
    module = _load_factory(args.factory)()
    if args.weights is not None:
        module.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    shapes = [s.split(",") for s in args.state]
    if any(s.count("B") != 1 or not all(d == "B" or d.isdigit() for d in s) for s in shapes):
        raise ExportError(f"--state {args.state}: expected shapes like 2,B,32 with exactly one B")
    state = [torch.zeros([2 if d == "B" else int(d) for d in s]) for s in shapes]
    names = [tuple(n.split(":", 1)) for n in args.state_name] or None
    manifest = export_module(module, torch.zeros(2, 3, args.features), state, args.models, args.name, args.version,
                             state_batch_axis=[s.index("B") for s in shapes], state_names=names,  # type: ignore[arg-type]
                             output_names=args.output or None, kind=args.kind, description=args.description,
                             force=args.force)
    print(manifest.model_dump_json(include={"name", "version", "verification", "state"}))


def _load_factory(spec: str) -> Callable[[], torch.nn.Module]:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError, ValueError) as exc:
        raise ExportError(f"{spec}: cannot load the module factory ({exc})") from None
