"""The recurrent model: input normalisation, a recurrent stack, a per-step linear head.

The stack is `nn.RNN` / `nn.LSTM` / `nn.GRU`, or an explicit cell of `training/cells.py` (peephole or
coupled-gate LSTM, Jordan network; the Jordan network holds its own output layer, so its head is the identity).
State crosses the module boundary batch-first, `(B, layers * directions, H)` (Jordan: `(B, 1, O)`), which is
what the exported graph and the server use; inside, torch's recurrent modules want `(layers * directions, B, H)`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.cells import ExplicitLSTM, JordanNet
from training.config import ModelConfig
from training.gate_init import init_lstm_biases

Stack = nn.RNNBase | ExplicitLSTM | JordanNet


def _recurrent_stack(cfg: ModelConfig) -> Stack:
    if cfg.cell == "jordan":
        return JordanNet(cfg)
    if cfg.explicit_lstm:
        return ExplicitLSTM(cfg)
    dropout = cfg.dropout if cfg.layers > 1 else 0.0  # torch applies it between layers only
    shared = {"num_layers": cfg.layers, "batch_first": True, "dropout": dropout, "bidirectional": cfg.bidirectional}
    if cfg.cell == "lstm":
        return nn.LSTM(cfg.input_size, cfg.hidden_size, **shared)
    if cfg.cell == "gru":
        return nn.GRU(cfg.input_size, cfg.hidden_size, **shared)
    return nn.RNN(cfg.input_size, cfg.hidden_size, nonlinearity="tanh", **shared)


class SequenceModel(nn.Module):
    mean: Tensor  # (F,) buffer
    std: Tensor  # (F,) buffer

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.input_size))  # (F,)
        self.register_buffer("std", torch.ones(cfg.input_size))  # (F,)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.input_size) if cfg.vocab_size else None
        self.rnn = _recurrent_stack(cfg)
        self.head: nn.Module = (nn.Identity() if cfg.cell == "jordan"
                                else nn.Linear(cfg.hidden_size * cfg.directions, cfg.output_size))
        self.output_dropout = nn.Dropout(0.0 if cfg.cell == "jordan" else cfg.output_dropout)  # Jordan: inside
        if isinstance(self.rnn, nn.LSTM):
            self._init_gate_biases()

    def _init_gate_biases(self) -> None:
        """Gates are ordered (input, forget, cell, output); `bias_hh` is zeroed, so `bias_ih` is the gate bias
        (one uniform draw per gate, as in the explicit cell) with the forget / input slices of `gate_init`.
        `two_biases` zeroes only the forget slice of `bias_hh` (the other gates keep the sum of two draws)."""
        h = self.cfg.hidden_size
        with torch.no_grad():
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_hh"):
                    (param[h : 2 * h] if self.cfg.two_biases else param).zero_()
                elif name.startswith("bias_ih"):
                    init_lstm_biases(param, h, "ifco", self.cfg.forget_bias, self.cfg.chrono)

    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def initial_state(self, batch: int) -> list[Tensor]:
        """Zero state tensors, batch-first, one per entry of `cfg.state_names`."""
        return [torch.zeros(batch, *self.cfg.state_shape) for _ in self.cfg.state_names]

    def _inputs(self, x: Tensor) -> Tensor:
        """Raw features (B, T, F) normalised, or token ids (B, T, 1) embedded: (B, T, input_size)."""
        if self.embed is not None:
            return self.embed(x[..., 0])  # type: ignore[no-any-return]
        return (x - self.mean) / self.std

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """x: (B, T, F) raw features (or (B, T, 1) token ids); state: batch-first tensors. Returns (outputs (B, T,
        O), *new state)."""
        z = self._inputs(x)  # (B, T, F)
        y, new_state = self._recur(z, list(state) or self.initial_state(x.shape[0]))  # y: (B, T, dirs*H)
        out = self._head(x, y)  # (B, T, O)
        if self.cfg.bidirectional:
            return (out,)
        return (out, *new_state)  # each (B, layers, H)

    def _recur(self, z: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """z: (B, T, F) normalised; state batch-first (empty for a bidirectional model). Returns y, new state."""
        if isinstance(self.rnn, ExplicitLSTM | JordanNet):
            return self.rnn(z, state)
        hx = [s.transpose(0, 1).contiguous() for s in state]  # each (layers*dirs, B, H)
        if isinstance(self.rnn, nn.LSTM):
            y, (h, c) = self.rnn(z, (hx[0], hx[1]) if hx else None)  # y: (B, T, dirs*H)
            return y, [h.transpose(0, 1), c.transpose(0, 1)]  # each (B, layers, H)
        y, h = self.rnn(z, hx[0] if hx else None)
        return y, [h.transpose(0, 1)]
    def _head(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.head(self.output_dropout(y))  # (B, T, O)
        if self.cfg.head == "forecast":
            return x + out * self.std  # (B, T, F): the predicted change, in the input's units
        return out

    def forward_padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Training/evaluation on zero-padded batches: packs them so padding never reaches a backward pass
        (the explicit cells run over the padding, which follows every valid step and is masked out of the loss).

        x: (B, T, F), lengths: (B,) int64 on the CPU. Returns outputs (B, T, O); padded steps are garbage.
        """
        z = self._inputs(x)  # (B, T, F)
        if isinstance(self.rnn, ExplicitLSTM | JordanNet):  # causal: padding only follows the valid steps
            return self._head(x, self.rnn(z, self.initial_state(x.shape[0]))[0])
        packed = nn.utils.rnn.pack_padded_sequence(z, lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])  # (B, T, dirs*H)
        return self._head(x, y)
