"""`export_module`: a user's own `nn.Module` to a verified version folder, whatever its layouts.

The module's forward takes `(x, ..., *state)`: one or more data inputs, each `(batch, time, features)` float or
`(batch, time)` integer token ids (time-major `(time, batch, ...)` too: found by running it, or `time_major`),
and returns `(outputs..., *new_state)`, each output `(batch, time, size)` (or time-major), each new state in the
layout of the state it replaces (batch on axis `state_batch_axis`: 0 for batch-first, 1 for torch's own
`(layers, batch, hidden)`). Any `nn.LSTM` / `nn.GRU` / `nn.RNN` option exports; an LSTM with `proj_size` is
written by `training/projected.py`, which torch's exporter cannot. The module is wrapped into the served layout
(`training/module_probe.py`: inputs batch-first, token ids `(batch, time, 1)`), exported, its state moved
batch-first by the import's wrapper, and verified: torch vs onnxruntime, the exported graph's own step-by-step
run vs the wrapped one, chunked vs whole (streamable models), batched vs alone. A module with a bidirectional
layer is served whole sequences only.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from modelrepo import Manifest, Source, writer
from modelrepo.errors import ImportRefused
from modelrepo.importer.build import ImportOptions, Kind, adapted, manifest_for, plan_for
from modelrepo.importer.check import TOLERANCE, Wrapped, random_inputs, verify
from modelrepo.importer.graph import Plan
from modelrepo.importer.wrap import wrap
from training.errors import ExportError
from training.export import EXPORTER, check_destination, export_quietly
from training.module_probe import Canonical, Declared, probe
from training.projected import DOMAIN, quiet, replace_placeholders, stand_ins

Examples = torch.Tensor | Mapping[str, torch.Tensor]
IMPORT_HINT = "set the batch axes with --batch-axis NAME=AXIS"  # the import's advice, which is no flag here
TRACE_HINT = ("the export traces one run, so what forward computes from shapes is fixed (a Python loop over the "
              "time steps is unrolled for the example's 3): run nn.LSTM / nn.GRU / nn.RNN over the whole sequence")


def export_module(module: torch.nn.Module, example_input: Examples, state: Sequence[torch.Tensor], root: Path,
                  name: str, version: int = 1, *, state_batch_axis: int | Sequence[int] = 0,
                  state_names: Sequence[tuple[str, str]] | None = None, output_names: Sequence[str] | None = None,
                  kind: Kind = "other", description: str = "", force: bool = False, time_major: bool | None = None,
                  vocab_size: int | Mapping[str, int] | None = None,
                  input_dtype: str | Mapping[str, str] | None = None) -> Manifest:
    """Exports, verifies and writes `root/name/version/`; returns the manifest written. `ExportError` otherwise.

    `example_input`: one tensor (named `input`) or `{name: tensor}` for several data inputs, the first one the
    manifest's `input`; integer examples are token ids, `vocab_size` their vocabulary (default: the module's
    only `nn.Embedding`); `input_dtype`, when given, is what the examples must be.
    """
    dest = Path(root) / name / str(version)
    check_destination(dest, force)
    module.eval()
    axes_of = [state_batch_axis] * len(state) if isinstance(state_batch_axis, int) else list(state_batch_axis)
    pairs = list(state_names or [(f"state{i}", f"state{i}_out") for i in range(len(state))])
    if len(axes_of) != len(state) or len(pairs) != len(state):
        raise ExportError(f"{len(state)} state tensors, {len(axes_of)} batch axes, {len(pairs)} state names")
    inputs = declared(module, example_input, vocab_size, input_dtype)
    found = probe(module, inputs, state, axes_of, time_major)
    results = found.outputs
    outputs = list(output_names or (["output"] if results == 1 else [f"output{i}" for i in range(results)]))
    if len(outputs) != results:
        raise ExportError(f"forward returned {results + len(state)} tensors for {len(state)} state tensors and "
                          f"{len(outputs)} output names")
    served = Canonical(module, inputs, results, found.time_major).eval()
    names = [d.name for d in inputs]
    dynamic = {n: {0: "batch", 1: "time"} for n in [*names, *outputs]}
    for (i, o), axis in zip(pairs, axes_of, strict=True):
        dynamic |= {i: {axis: "batch"}, o: {axis: "batch"}}
    options = ImportOptions(name=name, version=version, pairs=pairs, kind=kind, description=description,
                            batch_axes={n: axis for (i, o), axis in zip(pairs, axes_of, strict=True) for n in (i, o)},
                            vocab={d.name: d.vocab for d in inputs if d.vocab is not None},
                            streamable=found.streamable)
    gen = torch.Generator().manual_seed(0)
    examples = [d.example(2, 3, False, gen)[..., None] if d.tokens else d.example(2, 3, False, gen) for d in inputs]
    example_state = [torch.zeros([2 if a == axis else n for a, n in enumerate(s.shape)], dtype=s.dtype)
                     for s, axis in zip(state, axes_of, strict=True)]
    try:
        with stand_ins(module) as lstms, quiet():
            original = export_quietly(served, (*examples, *example_state), [*names, *(i for i, _ in pairs)],
                                      [*outputs, *(o for _, o in pairs)], dynamic,
                                      {DOMAIN: 1} if lstms else None)
        original = replace_placeholders(original, lstms) if lstms else original
        plan = plan_for(original, options)
        wrapped = wrap(plan)
        checks = verify(plan, wrapped, streamable=found.streamable)
    except ImportRefused as exc:
        raise ExportError(str(exc).replace(IMPORT_HINT, TRACE_HINT)) from exc
    diff = torch_vs_wrapped(served, plan, wrapped, axes_of)
    if not diff <= TOLERANCE:
        raise ExportError(f"export verification failed: torch_vs_onnxruntime max abs diff {diff:.3g} > {TOLERANCE}")
    checks = checks.model_copy(update={"torch_vs_onnxruntime": diff})
    kind_of = type(module)
    lines = adapted(plan) + (["time-major module: inputs and outputs transposed to (batch, time, ...)"]
                             if found.time_major else [])
    lines += [f"{d.name!r}: token ids served as (batch, time, 1), ids < {d.vocab}" for d in inputs if d.tokens]
    lines += [f"LSTM with proj_size={m.proj_size} written by training.projected (a Scan per layer and direction)"
              for m in lstms]
    source = Source(kind="module", file=f"{kind_of.__module__}.{kind_of.__qualname__}", adapted=lines)
    data = wrapped.SerializeToString()
    manifest = manifest_for(plan, data, options, checks, source, EXPORTER)
    writer.write_version_dir(dest, manifest, data, {}, force)
    return manifest


def declared(module: nn.Module, example: Examples, vocab_size: int | Mapping[str, int] | None,
             input_dtype: str | Mapping[str, str] | None) -> list[Declared]:
    """The data inputs the examples describe, each checked against what was declared."""
    examples = {"input": example} if isinstance(example, torch.Tensor) else dict(example)
    embeddings = [m.num_embeddings for m in module.modules() if isinstance(m, nn.Embedding)]
    found = []
    for name, x in examples.items():
        dtype = str(x.dtype).removeprefix("torch.")
        want = input_dtype.get(name) if isinstance(input_dtype, Mapping) else input_dtype
        if want is not None and want != dtype:
            raise ExportError(f"the example of input {name!r} is {dtype} where {want} is declared; give a {want} "
                              "example (token ids: an integer (batch, time) example, floats: (batch, time, features))")
        if x.dtype.is_floating_point:
            if x.dim() != 3:
                raise ExportError(f"input {name!r}: a float example must be (batch, time, features), got "
                                  f"{list(x.shape)}")
            found.append(Declared(name, int(x.shape[-1]), x.dtype))
            continue
        if x.dtype not in (torch.int32, torch.int64) or x.dim() != 2:
            raise ExportError(f"input {name!r}: an integer example must be int32 or int64 token ids (batch, time), "
                              f"got {dtype} {list(x.shape)}")
        vocab = vocab_size.get(name) if isinstance(vocab_size, Mapping) else vocab_size
        if vocab is None and len(embeddings) != 1:
            raise ExportError(f"input {name!r} holds token ids: give its vocabulary size (--input {name}=int64:VOCAB"
                              f" or vocab_size=); the module has {len(embeddings)} nn.Embedding layers")
        found.append(Declared(name, 1, x.dtype, vocab if vocab is not None else embeddings[0]))
    return found


def torch_vs_wrapped(served: nn.Module, plan: Plan, wrapped: onnx.ModelProto, axes: list[int],
                     seed: int = 1) -> float:
    """The served module on a random batch of 3 with random state in its own layout vs the wrapped graph."""
    rng = np.random.default_rng(seed)
    x, _ = random_inputs(plan, rng, batch=3, steps=11)
    own = []
    for (s, _), axis in zip(plan.state, axes, strict=True):
        dims = [3 if a == axis or d is None else d for a, d in enumerate(s.tensor.dims)]
        own.append((0.5 * rng.standard_normal(dims)).astype(s.tensor.dtype))  # type: ignore[arg-type]
    with torch.no_grad(), quiet():
        expected = [t.numpy() for t in served(*(torch.from_numpy(v) for v in x.values()),
                                              *map(torch.from_numpy, own))]
    got_out, got_state = Wrapped(wrapped, plan)(
        x, {s.tensor.name: np.moveaxis(v, axis, 0) for (s, _), v, axis in zip(plan.state, own, axes, strict=True)})
    got = [got_out[o.tensor.name] for o in plan.outputs]
    got += [np.moveaxis(got_state[s.tensor.name], 0, axis) for (s, _), axis in zip(plan.state, axes, strict=True)]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got, strict=True))


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`python -m training export-module PACKAGE.MODULE:FACTORY --features F --state 2,B,32 ... --name N`."""
    p = sub.add_parser("export-module", help="export your own nn.Module (forward(x, ..., *state)) to models/, "
                       "verified")
    p.add_argument("factory", help="PACKAGE.MODULE:CALLABLE returning the nn.Module, e.g. examples.my_lstm:MyLSTM")
    p.add_argument("--weights", type=Path, default=None, help="a state_dict file to load into the module")
    p.add_argument("--features", type=int, default=None, help="one float32 input 'input' (batch, time, FEATURES)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=SPEC", dest="inputs",
                   help="a data input in forward's order (repeatable): NAME=FEATURES (float32), NAME=FEATURES:float16"
                        ", or NAME=int64:VOCAB / NAME=int32:VOCAB for token ids (batch, time)")
    p.add_argument("--state", action="append", default=[], metavar="SHAPE",
                   help="one state tensor's shape with B for the batch axis, e.g. 2,B,32 (repeatable, in order)")
    p.add_argument("--state-name", action="append", default=[], metavar="IN:OUT", help="names of each state pair")
    p.add_argument("--output", action="append", default=[], metavar="NAME", help="names of the outputs")
    p.add_argument("--kind", default="other", choices=["logits", "regression", "probability", "other"])
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--time-major", dest="time_major", action="store_const", const=True, default=None,
                        help="the module takes (time, batch, ...) (default: found by running it)")
    layout.add_argument("--batch-first", dest="time_major", action="store_const", const=False,
                        help="the module takes (batch, time, ...)")
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
    examples, vocab = _examples(args.features, args.inputs)
    module = _load_factory(args.factory)()
    if args.weights is not None:
        module.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    shapes = [s.split(",") for s in args.state]
    if any(s.count("B") != 1 or not all(d == "B" or d.isdigit() for d in s) for s in shapes):
        raise ExportError(f"--state {args.state}: expected shapes like 2,B,32 with exactly one B")
    state = [torch.zeros([2 if d == "B" else int(d) for d in s]) for s in shapes]
    names = [tuple(n.split(":", 1)) for n in args.state_name] or None
    manifest = export_module(module, examples, state, args.models, args.name, args.version,
                             state_batch_axis=[s.index("B") for s in shapes], state_names=names,  # type: ignore[arg-type]
                             output_names=args.output or None, kind=args.kind, description=args.description,
                             force=args.force, time_major=args.time_major, vocab_size=vocab)
    print(manifest.model_dump_json(include={"name", "version", "verification", "state"}))


def _examples(features: int | None, specs: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Example tensors (batch 2, 3 steps) and vocabulary sizes from `--features` / `--input NAME=SPEC`."""
    if (features is None) == (not specs):
        raise ExportError("give the input as --features F (one float32 input) or as --input NAME=SPEC (repeatable)")
    if features is not None:
        return {"input": torch.zeros(2, 3, features)}, {}
    examples, vocab = {}, {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        parts = rest.split(":")
        try:
            if parts[0] in ("int64", "int32") and len(parts) == 2 and int(parts[1]) > 0:
                examples[name] = torch.zeros(2, 3, dtype=getattr(torch, parts[0]))
                vocab[name] = int(parts[1])
            elif len(parts) <= 2 and int(parts[0]) > 0 and (parts[1:] or ["float32"])[0] in ("float32", "float16"):
                examples[name] = torch.zeros(2, 3, int(parts[0]), dtype=getattr(torch, (parts[1:] or ["float32"])[0]))
            else:
                raise ValueError(spec)
        except ValueError:
            raise ExportError(f"--input {spec}: expected NAME=FEATURES[:float16] or NAME=int64:VOCAB") from None
        if not name:
            raise ExportError(f"--input {spec}: the input needs a name")
    return examples, vocab


def _load_factory(spec: str) -> Callable[[], torch.nn.Module]:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError, ValueError) as exc:
        raise ExportError(f"{spec}: cannot load the module factory ({exc})") from None
