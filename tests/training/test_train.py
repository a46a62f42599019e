"""A few training steps for every cell type; seeding; the forget-gate bias; checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from training.adding import AddingTask
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import ModelConfig, TrainConfig
from training.model import SequenceModel
from training.train import fit

TINY_TASK = AddingTask(length=12, steps_per_epoch=4, test_size=64)


def _tiny(cell: str, **kw: object) -> ModelConfig:
    return ModelConfig(cell=cell, input_size=2, output_size=1, hidden_size=8, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_few_training_steps_change_the_weights_and_log_each_epoch(cell: str) -> None:
    untrained = SequenceModel(_tiny(cell, layers=2, dropout=0.1))
    model, history = fit(TINY_TASK, _tiny(cell, layers=2, dropout=0.1), TrainConfig(epochs=2, batch_size=8),
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


def test_checkpoint_round_trip_holds_config_and_weights(tmp_path: Path) -> None:
    model, history = fit(TINY_TASK, _tiny("lstm"), TrainConfig(epochs=1, batch_size=8), progress=False)
    save_checkpoint(tmp_path / "c.pt", Checkpoint("adding", model, TrainConfig(epochs=1, batch_size=8), history))
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.model.cfg == model.cfg and loaded.task == "adding"
    assert loaded.history.epochs == history.epochs
    assert all(torch.equal(model.state_dict()[k], v) for k, v in loaded.model.state_dict().items())
