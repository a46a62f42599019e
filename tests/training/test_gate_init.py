"""The LSTM gate-bias initialisation: the same for nn.LSTM and the explicit cells, forget bias or chrono."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import ModelConfig
from training.model import SequenceModel

H = 16
LSTMS = {"lstm": {}, "peephole": {"peephole": True}, "coupled": {"coupled_gates": True}}


def _biases(model: SequenceModel) -> list[tuple[str, torch.Tensor]]:
    """(gate order, the one stacked gate bias) per layer; nn.LSTM's bias_hh must be zero to have only one."""
    if isinstance(model.rnn, torch.nn.LSTM):
        for layer in range(model.cfg.layers):
            assert torch.equal(getattr(model.rnn, f"bias_hh_l{layer}").detach(), torch.zeros(4 * H))
        return [("ifco", getattr(model.rnn, f"bias_ih_l{layer}").detach()) for layer in range(model.cfg.layers)]
    return [(layer.order, layer.bias.detach()) for layer in model.rnn.lstm_layers]  # type: ignore[union-attr]


def _slice(order: str, gate: str) -> slice:
    return slice(order.index(gate) * H, (order.index(gate) + 1) * H)


@pytest.mark.parametrize("variant", LSTMS)
def test_chrono_draws_forget_time_scales_up_to_t_max_and_negates_them_for_the_input_gate(variant: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(input_size=2, output_size=1, hidden_size=H, layers=2, chrono=50,
                                      **LSTMS[variant]))  # type: ignore[arg-type]
    for order, bias in _biases(model):
        b_f = bias[_slice(order, "f")]
        assert float(b_f.min()) >= 0.0 and float(b_f.max()) <= math.log(49)
        assert len(set(b_f.tolist())) == H  # one time scale per unit
        if "i" in order:
            assert torch.equal(bias[_slice(order, "i")], -b_f)
        for gate in "co":  # the other gates: one uniform draw, as torch's nn.LSTM draws each of its two biases
            assert float(bias[_slice(order, gate)].abs().max()) <= H**-0.5


@pytest.mark.parametrize("variant", LSTMS)
def test_a_forget_bias_sets_the_forget_slice_and_leaves_one_drawn_bias_elsewhere(variant: str) -> None:
    model = SequenceModel(ModelConfig(input_size=2, output_size=1, hidden_size=H, forget_bias=2.0,
                                      **LSTMS[variant]))  # type: ignore[arg-type]
    for order, bias in _biases(model):
        assert torch.equal(bias[_slice(order, "f")], torch.full((H,), 2.0))
        assert float(bias.abs().max()) <= 2.0 and float(bias[_slice(order, "c")].abs().max()) <= H**-0.5


def test_two_biases_keeps_the_init_of_the_lstms_built_before_one_bias() -> None:
    """`two_biases` (the shipped nn.LSTM models' init): torch's drawn bias_hh except its zeroed forget slice."""
    torch.manual_seed(0)
    reference = torch.nn.LSTM(2, H, batch_first=True)
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig(input_size=2, output_size=1, hidden_size=H, two_biases=True))
    got, drawn = dict(model.rnn.named_parameters()), dict(reference.named_parameters())
    bias_hh = drawn["bias_hh_l0"].detach().clone()
    bias_hh[H : 2 * H] = 0.0
    assert torch.equal(got["bias_hh_l0"].detach(), bias_hh)
    assert torch.equal(got["weight_hh_l0"].detach(), drawn["weight_hh_l0"].detach())
