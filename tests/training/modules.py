"""The recurrent modules a user brings (issue 20), tiny: each with the example and state `export_module` takes.

`EXPORTS[name]()` -> (module, export_module keyword arguments); `reference(module, inputs)` is torch's own
whole-sequence run from the zero state, in the served layout (inputs and outputs `(batch, time, ...)`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from training.projected import quiet

F, H, P, VOCAB = 3, 6, 4, 11


class ProjectedLSTM(nn.Module):
    """nn.LSTM(proj_size=4), 2 layers: h (2, B, 4), c (2, B, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, num_layers=2, proj_size=P, batch_first=True)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        y, (h, c) = self.lstm(x, (h, c))  # y (B, T, P)
        return y, h, c


class ReluRNN(nn.Module):
    """nn.RNN(nonlinearity='relu', bias=False) with a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(F, H, nonlinearity="relu", bias=False, batch_first=True)
        self.head = nn.Linear(H, 2)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.rnn(x, h)  # (B, T, H), (1, B, H)
        return self.head(y), h


class DeepLSTM(nn.Module):
    """3 layers with dropout 0.5 between them (off in eval mode, as exported)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, num_layers=3, dropout=0.5, batch_first=True)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        y, (h, c) = self.lstm(x, (h, c))
        return y, h, c


class TimeMajorGRU(nn.Module):
    """batch_first=False: x (T, B, F), y (T, B, H)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(F, H)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.gru(x, h)  # type: ignore[no-any-return]


class TokenGRU(nn.Module):
    """nn.Embedding + GRU + next-token logits: ids (B, T) int64."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 5)
        self.gru = nn.GRU(5, H, batch_first=True)
        self.head = nn.Linear(H, VOCAB)

    def forward(self, ids: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.gru(self.embed(ids), h)  # (B, T, H)
        return self.head(y), h  # (B, T, VOCAB)


class TwoInputs(nn.Module):
    """Features plus a conditioning vector per step, concatenated before a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(F + 2, H, batch_first=True)

    def forward(self, x: Tensor, cond: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.gru(torch.cat([x, cond], dim=-1), h)  # type: ignore[no-any-return]


def _lstm(layers: int, h: int = H) -> dict[str, Any]:
    return {"state": [torch.zeros(layers, 2, h), torch.zeros(layers, 2, H)], "state_batch_axis": 1,
            "state_names": [("h0", "hn"), ("c0", "cn")]}


def _gru() -> dict[str, Any]:
    return {"state": [torch.zeros(1, 2, H)], "state_batch_axis": 1, "state_names": [("h0", "hn")]}


EXPORTS: dict[str, Callable[[], tuple[nn.Module, dict[str, Any]]]] = {
    "projected_lstm": lambda: (ProjectedLSTM(), {"example_input": torch.zeros(2, 3, F), **_lstm(2, P)}),
    "relu_rnn": lambda: (ReluRNN(), {"example_input": torch.zeros(2, 3, F), **_gru()}),
    "deep_lstm": lambda: (DeepLSTM(), {"example_input": torch.zeros(2, 3, F), **_lstm(3)}),
    "time_major_gru": lambda: (TimeMajorGRU(), {"example_input": torch.zeros(3, 2, F), **_gru()}),
    "token_gru": lambda: (TokenGRU(), {"example_input": {"ids": torch.zeros(2, 3, dtype=torch.int64)},
                                       **_gru()}),
    "two_inputs": lambda: (TwoInputs(), {"example_input": {"x": torch.zeros(2, 3, F),
                                                           "cond": torch.zeros(2, 3, 2)}, **_gru()}),
}


def build(name: str) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(sum(map(ord, name)))
    module, kwargs = EXPORTS[name]()
    return module.eval(), kwargs


def served_inputs(name: str, steps: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random sequence per data input, served layout `(time, features)` (token ids `(time, 1)` int64)."""
    if name == "token_gru":
        return {"ids": rng.integers(0, VOCAB, (steps, 1)).astype(np.int64)}
    if name == "two_inputs":
        return {"x": rng.standard_normal((steps, F)).astype(np.float32),
                "cond": rng.standard_normal((steps, 2)).astype(np.float32)}
    return {"input": rng.standard_normal((steps, F)).astype(np.float32)}


def reference(name: str, module: nn.Module, state: list[Tensor], inputs: dict[str, np.ndarray]) -> np.ndarray:
    """torch's whole-sequence run of the first output from the zero state, `(time, size)`."""
    xs = [torch.from_numpy(v)[None] for v in inputs.values()]  # (1, T, F)
    if name == "token_gru":
        xs = [xs[0][..., 0]]  # (1, T) ids
    if name == "time_major_gru":
        xs = [xs[0].transpose(0, 1)]  # (T, 1, F)
    zeros = [torch.zeros([1 if a == 1 else d for a, d in enumerate(s.shape)]) for s in state]
    with torch.no_grad(), quiet():
        y = module(*xs, *zeros)[0]
    return (y[:, 0] if name == "time_major_gru" else y[0]).numpy()  # type: ignore[no-any-return]
