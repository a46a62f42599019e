"""What a training task provides: batches, a loss, test metrics, and what its model looks like."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch import Tensor

from training.model import SequenceModel


@dataclass(frozen=True)
class Batch:
    x: Tensor  # (B, T, F) raw features, zero-padded
    lengths: Tensor  # (B,) int64
    target: Tensor  # (B,) class indices, or (B, T, F) next values


class Task(Protocol):
    name: str
    dataset: str
    source: str
    input_size: int
    output_size: int
    head: str
    labels: list[str] | None
    croppable: bool  # every suffix of a training sequence keeps its target (TrainConfig.crop_prefix may apply)

    def normalization(self) -> tuple[Tensor, Tensor]: ...
    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]: ...
    def loss(self, model: SequenceModel, batch: Batch) -> Tensor: ...
    def evaluate(self, model: SequenceModel) -> dict[str, float]: ...
