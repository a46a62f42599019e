"""KServe v2 / Triton inference requests in the data plane's terms, whatever they travelled in (gRPC, REST JSON,
REST binary tensors): the input tensor checks, the sequence parameters and the requested outputs, once.

A front hands `DataPlane.infer` a `Request`: its sequence flags (read first: an open sequence stays on the version
it started on) and, for the model that serves it, the engine's `InferRequest`. A KServe front builds it from
`Input`s, a parameter map of plain values and output names (`KServeRequest`, or its own lazy adapter over the same
functions): checked against the model's manifest through the one codec, or `InvalidInput` naming what is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from modelrepo.manifest import Manifest, SequenceInput
from seqserve_client import codec
from seqserve_client.codec import TensorError
from service.engine.errors import InvalidInput, clip
from service.engine.inputs import Chunk
from service.engine.sequences import SequenceFlags, SequenceId

SEQUENCE_ID, SEQUENCE_START, SEQUENCE_END = "sequence_id", "sequence_start", "sequence_end"
ALWAYS_ACCEPTED = "FP32"
MAX_SEQUENCE_ID_CHARS = 256  # an id is a key held while its sequence is open: no megabyte keys
MAX_VERSION_DIGITS = 9
Parameter = bool | int | str | float | None  # a request parameter's value; None: a kind we do not take


class InferRequest(NamedTuple):  # NamedTuples: built on every request, cheaper than a frozen dataclass
    """One inference in engine terms: the model's input, its place in a sequence, the outputs to return."""

    x: Chunk  # (batch, time, features) of the model's dtype; {name: array} for a model with several inputs
    sequence: SequenceFlags | None  # None: a stateless run of whole sequences from the initial state
    outputs: tuple[str, ...]  # names to return in this order; state outputs (e.g. "hn") allowed
    state: codec.Arrays | None = None  # explicit initial state (batch-first, by state input name); stateless only


class Input(NamedTuple):
    """One input tensor as a KServe request carries it: raw bytes (binary), or numbers (JSON / typed contents)."""

    name: str
    datatype: str
    shape: Sequence[int]
    raw: bytes | memoryview | None = None
    values: object = None  # a flat or nested list of numbers, when `raw` is None


class Request(Protocol):
    """What `DataPlane.infer` takes: decoded by the front as far as it can without knowing the model."""

    def sequence(self) -> SequenceFlags | None:
        """The request's place in a Triton sequence (None: stateless)."""

    def prepare(self, manifest: Manifest, sequence: SequenceFlags | None) -> InferRequest:
        """The engine's request for the model version that serves it."""


@dataclass(frozen=True)
class KServeRequest:
    """A KServe v2 inference request already split into inputs, parameters and requested output names."""

    inputs: Sequence[Input]
    parameters: Mapping[str, Parameter]
    outputs: Sequence[str]

    def sequence(self) -> SequenceFlags | None:
        return sequence_flags(self.parameters)

    def prepare(self, manifest: Manifest, sequence: SequenceFlags | None) -> InferRequest:
        return InferRequest(input_arrays(manifest, self.inputs), sequence, requested_outputs(manifest, self.outputs))


@functools.cache
def _accepted(model_dtype: str) -> tuple[list[str], np.dtype]:
    """The datatypes an input of `model_dtype` may travel as, and the numpy dtype it is served in (per model);
    token ids (integer inputs) travel as their own type only, never rounded from FP32."""
    own = codec.of_numpy(model_dtype).kserve
    return sorted({own} if np.dtype(model_dtype).kind == "i" else {ALWAYS_ACCEPTED, own}), np.dtype(model_dtype)


def input_arrays(manifest: Manifest, inputs: Sequence[Input]) -> Chunk:
    """The sequence input `(batch, time, features)` in the model's dtype (FP32 is always accepted for float
    inputs); `{name: array}` of every input for a model with several (`extra_inputs`)."""
    if len(inputs) == 1 and not manifest.extra_inputs and inputs[0].name == manifest.input.name:
        return input_array(manifest.input, inputs[0])  # the common case, without the lists below
    names = [spec.name for spec in manifest.inputs]
    if len(inputs) != len(names) or sorted(t.name for t in inputs) != sorted(names):
        given = clip([tensor.name for tensor in inputs])
        wanted = f"exactly one input {names[0]!r}" if len(names) == 1 else f"the inputs {names}"
        raise InvalidInput(f"model {manifest.name!r} takes {wanted}, got {given}")
    if len(names) == 1:
        return input_array(manifest.input, inputs[0])
    by_name = {t.name: t for t in inputs}
    return {spec.name: input_array(spec, by_name[spec.name]) for spec in manifest.inputs}


def input_array(spec: SequenceInput, tensor: Input) -> np.ndarray:
    """One input tensor `(batch, time, features)` as `spec` takes it."""
    expected = spec.name
    accepted, served = _accepted(spec.dtype)
    if tensor.datatype not in accepted:
        given = clip(tensor.datatype) if tensor.datatype else "(none)"
        raise InvalidInput(f"input {expected!r}: datatype {given} not accepted; use {accepted}")
    what = f"input {expected!r}"
    try:
        dtype = codec.of_kserve(tensor.datatype, what)
        shape = tuple(tensor.shape)
        codec.check_shape(shape, what)
        if len(shape) != 3:
            raise InvalidInput(f"{what}: shape {list(shape)} is not (batch, time, {spec.features})")
        if tensor.raw is not None:
            array = codec.from_bytes(tensor.raw, dtype, shape, what)
        else:
            array = codec.from_values(tensor.values, dtype, shape, what)
    except TensorError as exc:
        raise InvalidInput(str(exc)) from None
    return array.astype(served, copy=False)  # FP32 -> an FP16 model's type


def sequence_flags(parameters: Mapping[str, Parameter]) -> SequenceFlags | None:
    """Triton's sequence parameters: `sequence_id` (integer or string; 0 and "" mean none), START and END."""
    sequence_id: SequenceId = 0
    start = end = False
    for name, value in parameters.items():  # one pass over the map instead of a lookup per name
        if name == SEQUENCE_ID:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise InvalidInput(f"parameter {SEQUENCE_ID} must be an integer or a string, got {_kind(value)}")
            if isinstance(value, str) and len(value) > MAX_SEQUENCE_ID_CHARS:
                raise InvalidInput(f"{SEQUENCE_ID} string of {len(value)} characters; at most "
                                   f"{MAX_SEQUENCE_ID_CHARS}")
            sequence_id = value
        elif name in (SEQUENCE_START, SEQUENCE_END):
            if not isinstance(value, bool):
                raise InvalidInput(f"parameter {name} must be a bool, got {_kind(value)}")
            if name == SEQUENCE_START:
                start = value
            else:
                end = value
    if sequence_id in (0, ""):  # Triton: 0 and "" mean "no sequence"
        if start or end:
            raise InvalidInput(f"{SEQUENCE_START}/{SEQUENCE_END} need a non-zero {SEQUENCE_ID}")
        return None
    return SequenceFlags(sequence_id, start=start, end=end)


def _kind(value: Parameter) -> str:
    return "an unsupported kind" if value is None else type(value).__name__


def requested_outputs(manifest: Manifest, names: Sequence[str]) -> tuple[str, ...]:
    """Every output when none is named; else the named ones, state outputs ("hn", "cn") included."""
    if not names:
        return tuple(out.name for out in manifest.outputs)
    known = [out.name for out in manifest.outputs] + [pair.output for pair in manifest.state]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(f"model {manifest.name!r} has no output {clip(unknown)}; it has {known}")
    return tuple(names)


def parse_version(text: str) -> int | None:
    """A KServe request's model version: "" is the version served by default; else ASCII digits, > 0."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_VERSION_DIGITS or int(text) <= 0:
        raise InvalidInput(f"model version must be a positive integer, got {clip(text)}")
    return int(text)
