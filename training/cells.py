"""Explicit recurrent cells torch has no module for: the peephole / coupled-gate LSTM and the Jordan network.

Both take and return state batch-first, `(B, layers, H)` (Jordan: `(B, 1, O)`) and project the inputs of every
step at once; the LSTM's time loop is `training/lstm_loop.py` (TorchScript, hand-written backward pass), the Jordan
network's is a Python loop. The equations, in the notation of docs/cells.md:

    LSTM  z_g = W_g x(t) + R_g h(t-1) + b_g  for the gates g in (i, f, c~, o)
          f = sigmoid(z_f + p_f * c(t-1))    i = sigmoid(z_i + p_i * c(t-1)), or i = 1 - f when coupled
          c(t) = f * c(t-1) + i * tanh(z_c~)  o = sigmoid(z_o + p_o * c(t))    h(t) = o * tanh(c(t))
    Jordan h(t) = tanh(W x(t) + U s(t-1) + b) (then layers - 1 more tanh layers)   y(t) = V h(t) + d
          s(t) = softmax(y(t)) or y(t): the state is the network's previous (fed-back) output
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.config import ModelConfig
from training.gate_init import init_lstm_biases
from training.lstm_loop import lstm_loop


class LSTMLayer(nn.Module):
    """One LSTM layer with optional peepholes and coupled input-forget gate.

    `weight_ih` (G*H, In), `weight_hh` (G*H, H), `bias` (G*H,) stack the gates (i, f, c~, o), or (f, c~, o)
    when coupled (G = 3: there is no input-gate parameter at all); `peephole` (3, H) holds p_i, p_f, p_o
    (p_i unused when coupled).
    """

    no_peephole: Tensor  # (3, H) zeros: the peepholes of a layer that has none

    def __init__(self, input_size: int, hidden_size: int, peephole: bool, coupled: bool) -> None:
        super().__init__()
        self.hidden_size, self.coupled, self.gates = hidden_size, coupled, 3 if coupled else 4
        self.order = "fco" if coupled else "ifco"  # the stacked gates of weight_ih / weight_hh / bias
        bound = hidden_size**-0.5  # torch's nn.LSTM initialisation
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(self.gates * hidden_size).uniform_(-bound, bound))
        self.peephole = nn.Parameter(torch.empty(3, hidden_size).uniform_(-bound, bound)) if peephole else None
        self.register_buffer("no_peephole", torch.zeros(3, hidden_size), persistent=False)  # (3, H)

    def gate_rows(self, gate: str) -> slice:
        """The rows of `weight_ih` / `weight_hh` / `bias` that belong to `gate` (one of i, f, c, o)."""
        k = self.order.index(gate)
        return slice(k * self.hidden_size, (k + 1) * self.hidden_size)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, T, In), h and c: (B, H). Returns y (B, T, H), h (B, H), c (B, H).

        The input projections of every step are one matmul here; only h(t-1) @ R is left inside the loop, which
        is `training/lstm_loop.py` (TorchScript, with its own backward pass: no autograd node per step).
        """
        proj = x @ self.weight_ih.T + self.bias  # (B, T, G*H)
        peep = self.peephole if self.peephole is not None else self.no_peephole  # (3, H)
        return lstm_loop(proj, h.contiguous(), c.contiguous(), self.weight_hh, peep, self.coupled)


class ExplicitLSTM(nn.Module):
    """A stack of `LSTMLayer`s with dropout between layers (as `nn.LSTM` applies it)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sizes = [cfg.input_size] + [cfg.hidden_size] * (cfg.layers - 1)
        self.layers = nn.ModuleList(LSTMLayer(n, cfg.hidden_size, cfg.peephole, cfg.coupled_gates) for n in sizes)
        self.dropout = nn.Dropout(cfg.dropout if cfg.layers > 1 else 0.0)
        for layer in self.lstm_layers:
            init_lstm_biases(layer.bias, cfg.hidden_size, layer.order, cfg.forget_bias, cfg.chrono)

    @property
    def lstm_layers(self) -> list[LSTMLayer]:
        return [layer for layer in self.layers if isinstance(layer, LSTMLayer)]

    def forward(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """x: (B, T, F); state [h (B, L, H), c (B, L, H)]. Returns y (B, T, H) and the new [h, c]."""
        hs, cs = [], []
        for k, layer in enumerate(self.lstm_layers):
            x = self.dropout(x) if k > 0 else x
            x, h, c = layer(x, state[0][:, k], state[1][:, k])  # x: (B, T, H)
            hs.append(h)
            cs.append(c)
        return x, [torch.stack(hs, dim=1), torch.stack(cs, dim=1)]  # y, [(B, L, H), (B, L, H)]


class JordanNet(nn.Module):
    """Jordan (1986): the recurrent memory is the output s(t-1) fed back beside x(t); includes its output layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.softmax = cfg.feedback == "softmax"
        self.input = nn.Linear(cfg.input_size, cfg.hidden_size)  # W, b
        self.feedback = nn.Linear(cfg.output_size, cfg.hidden_size, bias=False)  # U
        self.hidden = nn.ModuleList(nn.Linear(cfg.hidden_size, cfg.hidden_size) for _ in range(cfg.layers - 1))
        self.output = nn.Linear(cfg.hidden_size, cfg.output_size)  # V, d
        self.dropout = nn.Dropout(cfg.dropout if cfg.layers > 1 else 0.0)
        self.output_dropout = nn.Dropout(cfg.output_dropout)  # on the top hidden layer, before V

    def forward(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """x: (B, T, F); state [s (B, 1, O)]. Returns the outputs y (B, T, O) and [s(T) (B, 1, O)]."""
        proj = self.input(x)  # (B, T, H)
        s = state[0][:, 0]  # (B, O)
        ys = []
        for p_t in proj.unbind(1):  # not proj[:, t]: each slice's backward would write a zero (B, T, H) tensor
            h = torch.tanh(p_t + self.feedback(s))  # (B, H)
            for layer in self.hidden:
                h = torch.tanh(layer(self.dropout(h)))  # (B, H)
            y = self.output(self.output_dropout(h))  # (B, O)
            s = torch.softmax(y, dim=-1) if self.softmax else y
            ys.append(y)
        return torch.stack(ys, dim=1), [s[:, None]]  # (B, T, O), [(B, 1, O)]
