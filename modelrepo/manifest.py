"""`manifest.json`: everything the server must know about one exported model version.

Conventions every exported graph follows (the manifest records them, the server checks them):
- the sequence input is `(batch, time, features)`; every output is `(batch, time, size)`;
- each state tensor is batch-first: `(batch, *StatePair.shape)`, e.g. `(batch, layers * directions, hidden)`;
- batch and time axes are dynamic; feature normalisation is baked into the graph.
A graph whose own layout differs (a frame model, time-major input, state with the batch on another axis, extra
constant inputs) is wrapped into this form by `python -m modelrepo import`; `source` records what was done.
The field-by-field reference is docs/models.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DType = Literal["float32", "float16"]
# A data input may also be integer: token ids, each checked against `vocab_size` before a chunk is admitted.
InputDType = Literal["float32", "float16", "int32", "int64"]
# State never travels as a model input, so it may be any numeric type the graph keeps (a step counter: int64).
StateDType = Literal["float32", "float16", "float64", "int32", "int64"]
Cell = Literal["rnn", "lstm", "gru", "jordan", "peephole_lstm", "coupled_lstm", "peephole_coupled_lstm"]
Custom = Literal["custom"]  # a user's own module or an imported graph: no known cell
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"


class ManifestError(ValueError):
    """A manifest file that is missing, unreadable or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    cell: Cell | Custom = "custom"
    layers: int | None = Field(default=None, gt=0)
    hidden_size: int | None = Field(default=None, gt=0)
    bidirectional: bool = False

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


class Normalization(_Strict):
    """Per-feature `(x - mean) / std`, already applied inside the graph; recorded for readers."""

    mean: list[float]
    std: list[float]


class Frame(_Strict):
    """A frame model: each time step is one frame of `features` new samples (e.g. audio at `sample_rate`).

    `context` samples of the previous frame are carried by the wrapped graph as an extra state pair.
    """

    sample_rate: int | None = Field(default=None, gt=0)
    context: int = Field(default=0, ge=0)


class SequenceInput(_Strict):
    """A per-step data input `(batch, time, features)`; integer inputs are token ids in `[0, vocab_size)`."""

    name: str = "input"
    features: int = Field(gt=0, description="last axis of (batch, time, features); samples per frame for frames")
    dtype: InputDType = "float32"
    vocab_size: int | None = Field(default=None, gt=0, description="integer inputs: ids must be < vocab_size")
    normalization: Normalization | None = None
    frame: Frame | None = None

    @property
    def tokens(self) -> bool:
        return self.dtype.startswith("int")

    @model_validator(mode="after")
    def _vocabulary(self) -> SequenceInput:
        if self.tokens != (self.vocab_size is not None):
            raise ValueError(f"input {self.name!r}: vocab_size is required for integer inputs and only for them")
        if self.tokens and self.frame is not None:
            raise ValueError(f"input {self.name!r}: a frame input must be float")
        return self


class OutputSpec(_Strict):
    name: str
    kind: Literal["logits", "regression", "probability", "other"]
    size: int = Field(gt=0, description="width of the last axis: (batch, time, size)")
    dtype: DType = "float32"
    description: str = ""
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _labels_match(self) -> OutputSpec:
        if self.labels is not None and len(self.labels) != self.size:
            raise ValueError(f"output {self.name!r}: {len(self.labels)} labels for size {self.size}")
        return self


class StatePair(_Strict):
    """A recurrent state tensor fed back from `output` to `input` on the next chunk."""

    input: str
    output: str
    shape: list[int] = Field(description="shape without the leading batch axis")
    dtype: StateDType = "float32"
    initial: float = 0.0

    @model_validator(mode="after")
    def _positive_shape(self) -> StatePair:
        if not self.shape or any(d <= 0 for d in self.shape):
            raise ValueError(f"state {self.input!r}: shape must be non-empty and positive, got {self.shape}")
        return self


class TrainingRecord(_Strict):
    task: str
    dataset: str
    source: str = Field(description="where the data comes from and its licence")
    seed: int
    epochs: int
    metrics: dict[str, float] = Field(default_factory=dict)
    config: dict[str, object] = Field(default_factory=dict)


class Verification(_Strict):
    """Max absolute differences measured by the exporter before writing the model."""

    tolerance: float
    torch_vs_onnxruntime: float | None = Field(default=None, description="trainer and export_module")
    original_vs_wrapped: float | None = Field(default=None, description="import: the original graph's own run")
    chunked_vs_whole: float | None = None
    batched_vs_alone: float


class OnnxInfo(_Strict):
    opset: int = Field(ge=13)
    exporter: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    recurrent_ops: list[str] = Field(default_factory=list)


class Source(_Strict):
    """Where the model came from when not from our trainer: a user's module or an imported ONNX file."""

    kind: Literal["trainer", "module", "onnx"]
    file: str = Field(default="", description="the original file (name, package, version)")
    sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$", description="of the original file")
    licence: str = ""
    url: str = ""
    constants: dict[str, float | int] = Field(default_factory=dict, description="inputs baked into the graph")
    adapted: list[str] = Field(default_factory=list, description="what the wrapper changed, one line each")


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(gt=0)
    description: str = ""
    architecture: Architecture = Field(default_factory=Architecture)
    input: SequenceInput
    extra_inputs: list[SequenceInput] = Field(default_factory=list, description="further per-step data inputs, "
                                              "each (batch, time, features), sent beside `input` in every chunk")
    outputs: list[OutputSpec] = Field(min_length=1)
    state: list[StatePair] = Field(default_factory=list)
    streamable: bool
    training: TrainingRecord | None = None
    verification: Verification | None = None
    source: Source | None = None
    onnx: OnnxInfo

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [i.name for i in self.inputs] + [o.name for o in self.outputs]
        names += [s.input for s in self.state] + [s.output for s in self.state]
        if len(names) != len(set(names)):
            raise ValueError(f"tensor names must be unique, got {names}")
        if self.streamable and not self.state:
            raise ValueError("a streamable model needs at least one state pair")
        if self.streamable and self.architecture.bidirectional:
            raise ValueError("a bidirectional model cannot be streamable")
        if any(i.frame is not None for i in self.extra_inputs) or (self.extra_inputs and self.input.frame):
            raise ValueError("a frame model takes one data input")
        return self

    @property
    def inputs(self) -> list[SequenceInput]:
        """Every data input, `input` first."""
        return [self.input, *self.extra_inputs]

    def output(self, name: str) -> OutputSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read and validate a manifest file; any failure is a `ManifestError` with a one-line reason."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: not valid JSON: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "manifest"
            raise ManifestError(f"{path}: invalid manifest at {where}: {first['msg']}") from exc

    def dump(self, path: Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
