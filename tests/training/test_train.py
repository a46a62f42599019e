"""A few training steps for every cell type; seeding; the forget-gate bias; checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.adding import AddingTask
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import ModelConfig, TrainConfig
from training.errors import ConfigError
from training.model import SequenceModel
from training.task import Batch
from training.train import crop_prefixes, fit

TINY_TASK = AddingTask(length=12, steps_per_epoch=4, test_size=64)


VARIANTS = {"peephole": {"cell": "lstm", "peephole": True}, "coupled": {"cell": "lstm", "coupled_gates": True},
            "jordan": {"cell": "jordan", "feedback": "linear"}}


def _tiny(cell: str, **kw: object) -> ModelConfig:
    return ModelConfig(**{"cell": cell, "input_size": 2, "output_size": 1, "hidden_size": 8, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", *VARIANTS])
def test_a_few_training_steps_change_the_weights_and_log_each_epoch(cell: str) -> None:
    kw = {"layers": 2, "dropout": 0.1, "output_dropout": 0.1, **VARIANTS.get(cell, {"cell": cell})}
    untrained = SequenceModel(_tiny(**kw))  # type: ignore[arg-type]
    model, history = fit(TINY_TASK, _tiny(**kw), TrainConfig(epochs=2, batch_size=8, clip=0.5),  # type: ignore[arg-type]
                         progress=False)
    assert [row["epoch"] for row in history.epochs] == [1.0, 2.0]
    assert all(math.isfinite(v) for row in history.epochs for v in row.values())
    assert {"train_loss", "grad_norm", "test_mse"} <= set(history.final)
    changed = [not torch.equal(a, b) for a, b in zip(untrained.rnn.parameters(), model.rnn.parameters(), strict=True)]
    assert any(changed)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    runs = [fit(TINY_TASK, _tiny("gru"), TrainConfig(epochs=1, batch_size=8, seed=s), progress=False)[0]
            for s in (3, 3, 4)]
    same, other = runs[0].state_dict(), runs[2].state_dict()
    assert all(torch.equal(same[k], v) for k, v in runs[1].state_dict().items())
    assert not all(torch.equal(same[k], v) for k, v in other.items())


@pytest.mark.parametrize("bias", [1.0, 0.0, 2.5])
def test_lstm_forget_gate_bias_initialisation(bias: float) -> None:
    model = SequenceModel(_tiny("lstm", layers=2, forget_bias=bias))
    h = model.cfg.hidden_size
    for layer in range(2):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")  # (4H,)
        assert torch.allclose(total[h : 2 * h], torch.full((h,), bias))


@pytest.mark.parametrize("coupled", [False, True])
def test_explicit_lstm_forget_gate_bias_and_gate_count(coupled: bool) -> None:
    model = SequenceModel(_tiny("lstm", layers=2, forget_bias=2.0, peephole=True, coupled_gates=coupled))
    for layer in model.rnn.lstm_layers:  # type: ignore[union-attr]
        assert torch.equal(layer.bias[layer.gate_rows("f")], torch.full((8,), 2.0))
        assert layer.weight_ih.shape[0] == (3 if coupled else 4) * 8 and layer.peephole.shape == (3, 8)


def test_explicit_lstm_without_peepholes_equals_torch_lstm() -> None:
    """The explicit cell is the textbook LSTM: with torch's weights (one bias) it computes nn.LSTM exactly."""
    torch.manual_seed(0)
    reference = SequenceModel(_tiny("lstm", layers=2)).eval()
    explicit = SequenceModel(_tiny("lstm", layers=2, peephole=True)).eval()
    with torch.no_grad():
        for k, layer in enumerate(explicit.rnn.lstm_layers):  # type: ignore[union-attr]
            layer.weight_ih.copy_(getattr(reference.rnn, f"weight_ih_l{k}"))
            layer.weight_hh.copy_(getattr(reference.rnn, f"weight_hh_l{k}"))
            layer.bias.copy_(getattr(reference.rnn, f"bias_ih_l{k}") + getattr(reference.rnn, f"bias_hh_l{k}"))
            layer.peephole.zero_()
        explicit.head.load_state_dict(reference.head.state_dict())
        x, state = torch.randn(3, 7, 2), [torch.randn(3, 2, 8), torch.randn(3, 2, 8)]
        for a, b in zip(reference(x, *state), explicit(x, *state), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_jordan_state_is_its_previous_output() -> None:
    model = SequenceModel(ModelConfig(cell="jordan", input_size=2, output_size=3, hidden_size=8)).eval()
    with torch.no_grad():
        logits, yn = model(torch.randn(2, 5, 2), torch.zeros(2, 1, 3))
    assert yn.shape == (2, 1, 3)
    assert torch.allclose(yn[:, 0], torch.softmax(logits[:, -1], dim=-1))  # softmax feedback for a classifier


def test_checkpoint_round_trip_holds_config_and_weights(tmp_path: Path) -> None:
    model, history = fit(TINY_TASK, _tiny("lstm"), TrainConfig(epochs=1, batch_size=8), progress=False)
    save_checkpoint(tmp_path / "c.pt", Checkpoint("adding", model, TrainConfig(epochs=1, batch_size=8), history))
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.model.cfg == model.cfg and loaded.task == "adding"
    assert loaded.history.epochs == history.epochs
    assert all(torch.equal(model.state_dict()[k], v) for k, v in loaded.model.state_dict().items())


def test_crop_prefixes_keeps_a_suffix_of_each_sequence_within_the_fraction_and_its_label() -> None:
    lengths = torch.tensor([10, 7, 3, 1])
    x = torch.arange(4 * 10 * 2, dtype=torch.float32).reshape(4, 10, 2) + 1  # (B, T, F), no zeros
    x[torch.arange(10)[None, :] >= lengths[:, None]] = 0  # zero padding past each length
    batch = Batch(x, lengths, torch.tensor([3, 1, 4, 1]))
    cuts = set()
    for seed in range(50):
        cropped = crop_prefixes(batch, 0.5, np.random.default_rng(seed))
        assert torch.equal(cropped.target, batch.target)
        assert cropped.x.shape[1] == int(cropped.lengths.max())
        for i, (n, m) in enumerate(zip(lengths.tolist(), cropped.lengths.tolist(), strict=True)):
            k = n - m
            assert 0 <= k <= int(0.5 * n)
            cuts.add((i, k))
            assert torch.equal(cropped.x[i, :m], x[i, k:n])  # the sequence's own last m steps
            assert not cropped.x[i, m:].any()
    assert {k for i, k in cuts if i == 0} == set(range(6))  # every cut 0..5 of the 10-step sequence occurs
    assert {k for i, k in cuts if i == 3} == {0}  # a 1-step sequence is never emptied


def test_crop_prefixes_is_refused_where_a_prefix_carries_the_target() -> None:
    with pytest.raises(ConfigError, match="does not apply to the adding task"):
        fit(TINY_TASK, _tiny("lstm"), TrainConfig(epochs=1, crop_prefix=0.2), progress=False)
