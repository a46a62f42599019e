"""The explicit LSTM's hand-written backward pass equals the numerical gradient of its forward pass."""

from __future__ import annotations

import pytest
import torch

from training.cells import LSTMLayer
from training.lstm_loop import lstm_loop


@pytest.mark.parametrize("coupled", [False, True])
def test_the_backward_pass_matches_finite_differences_for_every_input(coupled: bool) -> None:
    """Every input gets its gradient: the projections, h(0), c(0), the recurrent weight and the peepholes, through
    the outputs at every step and the final state."""
    torch.manual_seed(0)
    B, T, H, G = 3, 5, 4, 3 if coupled else 4
    args = [torch.randn(shape, dtype=torch.double, requires_grad=True)
            for shape in [(B, T, G * H), (B, H), (B, H), (G * H, H), (3, H)]]
    assert torch.autograd.gradcheck(lambda *a: lstm_loop(*a, coupled), args)


def test_a_layer_without_peepholes_trains_no_peephole_and_runs_without_grad() -> None:
    layer = LSTMLayer(2, 4, peephole=False, coupled=False)
    x, h, c = torch.randn(3, 6, 2), torch.zeros(3, 4), torch.zeros(3, 4)
    y, h_t, c_t = layer(x, h, c)
    (y.sum() + c_t.sum()).backward()
    assert all(p.grad is not None for p in layer.parameters())
    assert [name for name, _ in layer.named_parameters()] == ["weight_ih", "weight_hh", "bias"]
    with torch.no_grad():
        assert torch.equal(layer(x, h, c)[0], y.detach())
    assert torch.equal(y[:, -1], h_t)
