"""The adding problem (Hochreiter & Schmidhuber 1997): the classic test of memory across long spans.

Each step carries `(value ~ U(0, 1), marker)`; exactly two markers are set, one in each half of the sequence.
The target, read at the last step, is the sum of the two marked values. Predicting the mean (1.0) gives
MSE = Var(U + U) = 2/12 = 0.167, the baseline a model that remembers nothing cannot beat.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from training.errors import ConfigError
from training.model import SequenceModel
from training.task import Batch

MEAN_BASELINE_MSE = 2.0 / 12.0


def adding_batch(rng: np.random.Generator, batch: int, length: int) -> tuple[Tensor, Tensor]:
    """Returns x (B, T, 2) and the target (B,)."""
    values = rng.random((batch, length), dtype=np.float32)  # (B, T)
    first = rng.integers(0, length // 2, size=batch)  # (B,)
    second = rng.integers(length // 2, length, size=batch)  # (B,)
    markers = np.zeros((batch, length), dtype=np.float32)  # (B, T)
    rows = np.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]  # (B,)
    return torch.from_numpy(np.stack([values, markers], axis=-1)), torch.from_numpy(target)


class AddingTask:
    name = "adding"
    source = "synthetic (generated from the seed)"
    head = "classify"  # a plain linear head; its single output is read as the regression answer
    croppable = False  # a prefix may hold a marked number
    input_size = 2
    output_size = 1
    labels: list[str] | None = None

    def __init__(self, length: int = 100, steps_per_epoch: int = 50, test_size: int = 2000) -> None:
        if length < 2 or steps_per_epoch <= 0 or test_size <= 0:
            raise ConfigError("adding problem: length >= 2, steps_per_epoch > 0 and test_size > 0 are required")
        self.length, self.steps_per_epoch = length, steps_per_epoch
        self.dataset = f"adding problem, sequence length {length}, fresh training batches, {test_size} test sequences"
        self.test_x, self.test_y = adding_batch(np.random.default_rng(12345), test_size, length)

    def normalization(self) -> tuple[Tensor, Tensor]:
        return torch.zeros(self.input_size), torch.ones(self.input_size)

    def test_baseline_mse(self) -> float:
        """The test MSE of always answering the expected sum, 1.0: this test set's own draw of the 2/12 baseline."""
        return float((self.test_y - 1.0).pow(2).mean())

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        for _ in range(self.steps_per_epoch):
            x, y = adding_batch(rng, batch_size, self.length)
            yield Batch(x, torch.full((batch_size,), self.length, dtype=torch.int64), y)

    def _mse(self, model: SequenceModel, x: Tensor, target: Tensor) -> Tensor:
        pred = model(x)[0][:, -1, 0]  # (B,): the answer at the last step
        return (pred - target).pow(2).mean()

    def loss(self, model: SequenceModel, batch: Batch) -> Tensor:
        return self._mse(model, batch.x, batch.target)

    def evaluate(self, model: SequenceModel) -> dict[str, float]:
        with torch.no_grad():
            return {"test_mse": float(self._mse(model, self.test_x, self.test_y))}
