"""Configuration dataclasses: what a model is and how it is trained. Validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar, get_args

from training.errors import ConfigError

Cell = Literal["rnn", "lstm", "gru", "jordan"]
Head = Literal["classify", "forecast"]
Feedback = Literal["softmax", "linear"]
CELLS: tuple[str, ...] = get_args(Cell)
FEEDBACKS: tuple[str, ...] = get_args(Feedback)
C = TypeVar("C", "ModelConfig", "TrainConfig")
HEADS: tuple[str, ...] = get_args(Head)


@dataclass(frozen=True)
class ModelConfig:
    """A recurrent stack and a linear head applied at every step (docs/cells.md has the equations).

    `rnn` (Elman, tanh), `gru`, `lstm` (`nn.RNN` / `nn.GRU` / `nn.LSTM`); `lstm` with `peephole` (Gers &
    Schmidhuber 2000) and/or `coupled_gates` (CIFG, i = 1 - f) is the explicit cell of `training/cells.py`;
    `jordan` feeds its previous output back beside the input: softmax(y(t-1)) (`feedback="softmax"`, for
    classifiers) or y(t-1) itself (`feedback="linear"`), and its hidden layers are `layers` stacked tanh layers.
    `head="classify"` emits logits; `head="forecast"` predicts the change of the input, so the output is
    `x + head(y) * std` in the input's own units (requires `output_size == input_size`).
    """

    cell: str = "lstm"
    input_size: int = 12
    hidden_size: int = 64
    layers: int = 1
    output_size: int = 9
    dropout: float = 0.0  # between stacked layers
    output_dropout: float = 0.0  # on the top layer's h(t), before the output layer (training only)
    bidirectional: bool = False
    forget_bias: float = 1.0
    chrono: int = 0  # LSTM gate-bias init: > 0 is chrono init with T_max = chrono (training/gate_init.py)
    two_biases: bool = False  # nn.LSTM: keep torch's drawn bias_hh (the init of models built before gate_init.py)
    head: str = "classify"
    peephole: bool = False
    coupled_gates: bool = False
    feedback: str = "softmax"
    vocab_size: int = 0  # > 0: the input is token ids (B, T, 1) < vocab_size into an embedding of input_size

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; expected one of {', '.join(CELLS)}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}; expected one of {', '.join(HEADS)}")
        for name in ("input_size", "hidden_size", "layers", "output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.chrono != 0 and self.chrono < 3:
            raise ConfigError(f"chrono (T_max) must be 0 (off) or >= 3, got {self.chrono!r}")
        for name in ("dropout", "output_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.head == "forecast" and self.output_size != self.input_size:
            raise ConfigError("a forecast head needs output_size == input_size")
        if self.vocab_size < 0 or (self.vocab_size and (self.head != "classify" or self.cell == "jordan"
                                                        or self.explicit_lstm)):
            raise ConfigError("vocab_size (token input) must be >= 0 and needs a classify head and an rnn, gru or "
                              "lstm cell")
        self._check_variant()

    def _check_variant(self) -> None:
        if (self.peephole or self.coupled_gates) and self.cell != "lstm":
            raise ConfigError(f"--peephole and --coupled-gates need --cell lstm, got --cell {self.cell}")
        if self.explicit_lstm and self.bidirectional:
            raise ConfigError("--peephole / --coupled-gates LSTMs are unidirectional only (no --bidirectional)")
        if self.cell == "jordan" and self.bidirectional:
            raise ConfigError("a Jordan network feeds back its own output and streams; it cannot be --bidirectional")
        if self.feedback not in FEEDBACKS:
            raise ConfigError(f"unknown feedback {self.feedback!r}; expected one of {', '.join(FEEDBACKS)}")
        if self.cell == "jordan" and self.feedback == "softmax" and self.output_size < 2:
            raise ConfigError("a softmax feedback needs output_size >= 2; use feedback 'linear'")

    @property
    def explicit_lstm(self) -> bool:
        """An LSTM variant torch has no module for: the explicit cell of `training/cells.py`."""
        return self.cell == "lstm" and (self.peephole or self.coupled_gates)

    @property
    def variant(self) -> str:
        """The cell's name in manifests and reports: rnn, gru, lstm, jordan, peephole_lstm, coupled_lstm, ..."""
        if self.cell != "lstm":
            return self.cell
        return "_".join([*(["peephole"] if self.peephole else []), *(["coupled"] if self.coupled_gates else []),
                         "lstm"])

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_names(self) -> list[tuple[str, str]]:
        """(input, output) names of the exported state tensors; none for a bidirectional model."""
        if self.bidirectional:
            return []
        if self.cell == "jordan":
            return [("y0", "yn")]
        pairs = [("h0", "hn")]
        return [*pairs, ("c0", "cn")] if self.cell == "lstm" else pairs

    @property
    def state_shape(self) -> tuple[int, int]:
        """Each state tensor's shape without the batch axis: (layers * directions, hidden), Jordan (1, output)."""
        if self.cell == "jordan":
            return (1, self.output_size)
        return (self.layers * self.directions, self.hidden_size)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: Adam, gradient clipping by global norm (0 disables it), a seed for everything."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    seed: int = 0
    weight_decay: float = 0.0
    input_noise: float = 0.0  # std of Gaussian noise added to the normalised inputs while training
    crop_prefix: float = 0.0  # drop a random prefix of up to this fraction of each training sequence (classifiers)
    cosine: bool = True  # anneal the learning rate to 0 over the run (cosine); False keeps it constant

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if self.input_noise < 0 or self.weight_decay < 0:
            raise ConfigError("input_noise and weight_decay must be >= 0")
        if self.clip < 0:
            raise ConfigError(f"clip must be >= 0 (0 disables clipping), got {self.clip!r}")
        if not 0 <= self.crop_prefix < 1:
            raise ConfigError(f"crop_prefix must be in [0, 1), got {self.crop_prefix!r}")


def config_from_dict(cls: type[C], raw: dict[str, Any]) -> C:
    """Build a config from a plain dict (a checkpoint, the command line); unknown keys are an error."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**raw)


def config_to_dict(cfg: ModelConfig | TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
