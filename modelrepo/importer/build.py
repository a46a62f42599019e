"""From an ONNX file and the user's options to a verified version folder, or an `ImportRefused`, nothing written."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import onnx

from modelrepo import writer
from modelrepo.errors import ImportRefused
from modelrepo.importer.check import verify
from modelrepo.importer.graph import Layout, Plan, load, propose
from modelrepo.importer.wrap import CONTEXT_IN, CONTEXT_OUT, wrap
from modelrepo.manifest import (
    Frame,
    InputDType,
    Manifest,
    OnnxInfo,
    OutputSpec,
    SequenceInput,
    Source,
    StateDType,
    StatePair,
    Verification,
)

RECURRENT = {"LSTM", "GRU", "RNN"}
EXPORTER = "seqserve modelrepo import: the original graph wrapped into (batch, time, features), batch-first state"
Kind = Literal["logits", "regression", "probability", "other"]


@dataclass
class ImportOptions:
    name: str
    version: int = 1
    constants: dict[str, str] = field(default_factory=dict)  # input name -> value as typed
    pairs: list[tuple[str, str]] = field(default_factory=list)  # empty: proposed from the graph
    batch_axes: dict[str, int] = field(default_factory=dict)
    frame: int | None = None
    context: int = 0
    sample_rate: int | None = None
    kind: Kind = "other"
    output_description: str = ""
    description: str = ""
    source_file: str = ""  # how to name the original in the manifest (default: its file name)
    licence: str = ""
    url: str = ""
    vocab: dict[str, int] = field(default_factory=dict)  # integer (token) input name -> vocabulary size
    streamable: bool = True  # False: whole sequences only (a bidirectional model), state optional


def import_onnx(path: Path, root: Path, options: ImportOptions, force: bool = False) -> Manifest:
    """Wraps, verifies and writes `root/name/version/`; returns the manifest written."""
    dest = Path(root) / options.name / str(options.version)
    writer.check_destination(dest, force)
    original_bytes = Path(path).read_bytes() if Path(path).is_file() else b""
    plan = plan_for(load(path), options)
    model = wrap(plan)
    verification = verify(plan, model, streamable=options.streamable)
    source = Source(kind="onnx", file=options.source_file or Path(path).name,
                    sha256=hashlib.sha256(original_bytes).hexdigest(), licence=options.licence, url=options.url,
                    constants=plan.constants, adapted=adapted(plan))
    data = model.SerializeToString()
    manifest = manifest_for(plan, data, options, verification, source, EXPORTER)
    writer.write_version_dir(dest, manifest, data, {}, force)
    return manifest


def plan_for(original: onnx.ModelProto, options: ImportOptions) -> Plan:
    plan = propose(original, constants=options.constants, pairs=options.pairs, batch_axes=options.batch_axes,
                   frame=options.frame, context=options.context, vocab=options.vocab,
                   stateless=not options.streamable and not options.pairs)
    if _opset(original) < 13:
        raise ImportRefused(f"opset {_opset(original)}: the server needs opset >= 13 (convert the file with "
                            "onnx.version_converter.convert_version)")
    return plan


def manifest_for(plan: Plan, data: bytes, options: ImportOptions, verification: Verification, source: Source,
                 exporter: str) -> Manifest:
    """The manifest of the wrapped graph `data` (its bytes, as written)."""
    model = onnx.load_from_string(data)
    return Manifest(
        name=options.name,
        version=options.version,
        description=options.description,
        input=SequenceInput(name=plan.source.name, features=plan.features, dtype=_input_dtype(plan.sequence),
                            vocab_size=plan.vocab.get(plan.source.name),
                            frame=Frame(sample_rate=options.sample_rate, context=plan.context)
                            if plan.frame is not None else None),
        extra_inputs=[SequenceInput(name=e.tensor.name, features=e.width,  # type: ignore[arg-type]
                                    dtype=_input_dtype(e), vocab_size=plan.vocab.get(e.tensor.name))
                      for e in plan.extra],
        outputs=[OutputSpec(name=o.tensor.name, kind=options.kind, size=_size(o), dtype=_float(o),
                            description=options.output_description)
                 for o in plan.outputs],
        state=_state(plan),
        streamable=options.streamable,
        verification=verification,
        source=source,
        onnx=OnnxInfo(opset=_opset(model), exporter=exporter, sha256=hashlib.sha256(data).hexdigest(),
                      recurrent_ops=sorted(_ops(model.graph) & RECURRENT)),
    )


def adapted(plan: Plan) -> list[str]:
    """One line per change the wrapper made, for the manifest's `source.adapted`."""
    lines = []
    if plan.frame is not None:
        lines.append(f"frame model: a Scan over the time axis runs the graph once per frame of {plan.frame} samples")
    if plan.context:
        lines.append(f"the last {plan.context} samples of each frame's input are carried as state "
                     f"{CONTEXT_IN!r} -> {CONTEXT_OUT!r} and prepended to the next frame")
    for name, value in plan.constants.items():
        lines.append(f"input {name!r} baked in as the constant {value}")
    for layout in [plan.sequence, *plan.outputs, *(s for pair in plan.state for s in pair)]:
        if layout.canonical_perm() != sorted(layout.canonical_perm()):
            lines.append(f"{layout.tensor.name!r}: batch axis {layout.batch_axis} moved first "
                         f"(transpose {layout.canonical_perm()})")
    return lines


def _state(plan: Plan) -> list[StatePair]:
    pairs = []
    for s, o in plan.state:
        shape = [s.tensor.dims[a] for a in s.canonical_perm()][1:]
        if any(d is None for d in shape):
            raise ImportRefused(f"state {s.tensor.name!r} has a dynamic axis besides the batch axis: "
                                f"{list(s.tensor.dims)}; give it a fixed size in the graph")
        pairs.append(StatePair(input=s.tensor.name, output=o.tensor.name, shape=shape,  # type: ignore[arg-type]
                               dtype=_state_dtype(s)))
    if plan.context:
        pairs.append(StatePair(input=CONTEXT_IN, output=CONTEXT_OUT, shape=[plan.context], dtype=_float(plan.sequence)))
    return pairs


def _state_dtype(layout: Layout) -> StateDType:
    dtype = layout.tensor.dtype
    if dtype not in get_args(StateDType):
        kinds = ", ".join(get_args(StateDType))
        raise ImportRefused(f"state {layout.tensor.name!r} is {dtype}; state must be one of {kinds}")
    return dtype  # type: ignore[return-value]


def _input_dtype(layout: Layout) -> InputDType:
    dtype = layout.tensor.dtype
    if dtype not in get_args(InputDType):
        raise ImportRefused(f"input {layout.tensor.name!r} is {dtype}; a data input must be float32, float16 or "
                            "integer token ids (int32, int64)")
    return dtype  # type: ignore[return-value]


def _float(layout: Layout) -> Literal["float32", "float16"]:
    dtype = layout.tensor.dtype
    if dtype not in ("float32", "float16"):
        raise ImportRefused(f"{layout.tensor.name!r} is {dtype}; the served tensors must be float32 or float16")
    return dtype  # type: ignore[return-value]


def _size(layout: Layout) -> int:
    rest = [layout.tensor.dims[a] for a in layout.canonical_perm()][1 if layout.time_axis is None else 2 :]
    if len(rest) != 1 or rest[0] is None:
        raise ImportRefused(f"output {layout.tensor.name!r} {list(layout.tensor.dims)}: expected one fixed-size "
                            "axis besides batch (and time)")
    return rest[0]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _ops(graph: onnx.GraphProto) -> set[str]:
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attr in node.attribute:
            for g in [attr.g, *attr.graphs] if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) \
                    else []:
                found |= _ops(g)
    return found
