"""The LSTM gate-bias initialisation, one definition for `nn.LSTM` and the explicit cells of `training/cells.py`.

`forget_bias` (Gers et al. 2000): b_f = forget_bias, b_i as drawn. `chrono = T_max > 0` (Tallec & Ollivier 2018,
*Can recurrent neural networks warp time?*, ICLR): b_f ~ log(U(1, T_max - 1)) per unit and b_i = -b_f, so the
units start with forgetting time scales spread over 1..T_max steps and write little. A coupled-gate LSTM has no
input-gate parameter (i = 1 - f already). `nn.LSTM` has two biases per gate: its `bias_hh` is zeroed and
`bias_ih` holds the one bias the explicit cell has, so both cells start from the same distribution.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gate_biases(hidden: int, forget_bias: float, chrono: int) -> tuple[Tensor | None, Tensor]:
    """(b_i or None to keep the drawn one, b_f), each (H,)."""
    if chrono <= 0:
        return None, torch.full((hidden,), forget_bias)
    b_f = torch.log(torch.empty(hidden).uniform_(1.0, float(chrono - 1)))  # (H,)
    return -b_f, b_f


def init_lstm_biases(bias: Tensor, hidden: int, order: str, forget_bias: float, chrono: int) -> None:
    """Sets the input and forget slices of one layer's stacked gate bias `bias` (G*H,), gates in `order`."""
    b_i, b_f = gate_biases(hidden, forget_bias, chrono)
    with torch.no_grad():
        bias[order.index("f") * hidden : (order.index("f") + 1) * hidden].copy_(b_f)
        if b_i is not None and "i" in order:
            bias[order.index("i") * hidden : (order.index("i") + 1) * hidden].copy_(b_i)
