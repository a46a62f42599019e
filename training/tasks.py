"""The training tasks: what data a model sees, its loss, and its test metrics.

- `vowels`: JapaneseVowels speaker classification, logits at every frame, accuracy at each utterance's last frame.
- `sunspots`: one-step-ahead forecast of monthly sunspot numbers, RMSE next to the naive last-value forecast.
- `chars`: a character-level language model of the Zen of Python (`training/chars.py`), token ids in.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from training.adding import AddingTask
from training.chars import CharsTask
from training.data import SUNSPOTS, VOWELS_TEST, VOWELS_TRAIN, LabelledSequences, load_monthly_table, load_ts
from training.errors import ConfigError
from training.model import SequenceModel
from training.task import Batch, Task

VOWELS_SOURCE = (
    "UCI Japanese Vowels (Kudo, Toyama, Shimbo 1999; CC BY 4.0), .ts files from the sktime 1.2.0 wheel (BSD-3)"
)
SUNSPOTS_SOURCE = "SIDC monthly mean sunspot numbers 1749-2009, sunspots_monthly.dat from the statsmodels wheel (BSD-3)"


def _pad(sequences: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)  # (B,)
    x = torch.zeros(len(sequences), int(lengths.max()), sequences[0].shape[1])  # (B, T, F)
    for i, seq in enumerate(sequences):
        x[i, : len(seq)] = torch.from_numpy(seq)
    return x, lengths


def _frame_mask(lengths: Tensor, steps: int) -> Tensor:
    return torch.arange(steps)[None, :] < lengths[:, None]  # (B, T) bool


class VowelsTask:
    name = "vowels"
    dataset = "JapaneseVowels (270 train / 370 test utterances, 12 LPC cepstrum coefficients, 9 speakers)"
    source = VOWELS_SOURCE
    head = "classify"
    croppable = True  # the speaker is in every frame

    def __init__(self) -> None:
        self.train: LabelledSequences = load_ts(VOWELS_TRAIN)
        self.test: LabelledSequences = load_ts(VOWELS_TEST)
        self.labels: list[str] | None = [f"speaker_{c}" for c in self.train.classes]
        self.input_size = self.train.sequences[0].shape[1]
        self.output_size = len(self.train.classes)

    def normalization(self) -> tuple[Tensor, Tensor]:
        frames = torch.from_numpy(np.concatenate(self.train.sequences))  # (frames, F)
        return frames.mean(0), frames.std(0)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        order = rng.permutation(len(self.train.sequences))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, lengths = _pad([self.train.sequences[i] for i in idx])
            yield Batch(x, lengths, torch.from_numpy(self.train.labels[idx]))

    def loss(self, model: SequenceModel, batch: Batch) -> Tensor:
        """Cross-entropy at every valid frame, weighted by (t + 1) / length: a streaming client gets a useful
        answer after any chunk, and the later frames, which have heard more of the utterance, count most."""
        logits = model.forward_padded(batch.x, batch.lengths)  # (B, T, C)
        mask = _frame_mask(batch.lengths, logits.shape[1])  # (B, T)
        weight = (torch.arange(1, logits.shape[1] + 1)[None, :] / batch.lengths[:, None]) * mask  # (B, T)
        target = batch.target[:, None].expand(mask.shape)  # (B, T)
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, T)
        return (ce * weight).sum() / weight.sum()

    def evaluate(self, model: SequenceModel) -> dict[str, float]:
        x, lengths = _pad(self.test.sequences)
        target = torch.from_numpy(self.test.labels)  # (N,)
        with torch.no_grad():
            logits = model.forward_padded(x, lengths)  # (N, T, C)
        last = logits[torch.arange(len(lengths)), lengths - 1]  # (N, C)
        mask = _frame_mask(lengths, logits.shape[1])  # (N, T)
        frame_hits = logits.argmax(-1) == target[:, None]  # (N, T)
        return {
            "test_accuracy": float((last.argmax(-1) == target).float().mean()),
            "test_frame_accuracy": float(frame_hits[mask].float().mean()),
            "test_loss": float(F.cross_entropy(last, target)),
        }


class SunspotsTask:
    name = "sunspots"
    dataset = "monthly mean sunspot numbers, train 1749-1948, test 1949-2009 (one-step-ahead, state carried)"
    source = SUNSPOTS_SOURCE
    head = "forecast"
    croppable = False
    input_size = 1
    output_size = 1
    labels: list[str] | None = None

    def __init__(self, train_months: int = 2400, window: int = 240, windows_per_epoch: int = 256) -> None:
        self.series = load_monthly_table(SUNSPOTS)  # (N,)
        if not 2 * window < train_months < len(self.series) - 12:
            raise ConfigError(f"train_months must leave a test part and exceed 2 windows, got {train_months}")
        self.train_months, self.window, self.windows_per_epoch = train_months, window, windows_per_epoch
        self.warmup = 12

    def normalization(self) -> tuple[Tensor, Tensor]:
        train = torch.from_numpy(self.series[: self.train_months])
        return train.mean()[None], train.std()[None]  # (1,), (1,)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        starts = rng.integers(0, self.train_months - self.window, size=self.windows_per_epoch)
        for first in range(0, len(starts), batch_size):
            rows = [self.series[s : s + self.window + 1] for s in starts[first : first + batch_size]]
            seq = torch.from_numpy(np.stack(rows))[..., None]  # (B, window + 1, 1)
            lengths = torch.full((len(rows),), self.window, dtype=torch.int64)
            yield Batch(seq[:, :-1], lengths, seq[:, 1:])

    def loss(self, model: SequenceModel, batch: Batch) -> Tensor:
        pred = model.forward_padded(batch.x, batch.lengths)  # (B, T, 1)
        err = (pred - batch.target) / model.std  # (B, T, 1), normalised units
        return err[:, self.warmup :].pow(2).mean()

    def evaluate(self, model: SequenceModel) -> dict[str, float]:
        """Runs the whole series once with carried state; scores the forecasts of the test months."""
        x = torch.from_numpy(self.series[:-1])[None, :, None]  # (1, N-1, 1)
        with torch.no_grad():
            pred = model(x, *model.initial_state(1))[0][0, :, 0].numpy()  # (N-1,)
        target = self.series[1:]
        test = slice(self.train_months - 1, None)
        train = slice(self.warmup, self.train_months - 1)
        return {
            "test_rmse": _rmse(pred[test], target[test]),
            "naive_rmse": _rmse(self.series[:-1][test], target[test]),
            "train_rmse": _rmse(pred[train], target[train]),
        }


def _rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - target) ** 2)))


TASK_NAMES = ("vowels", "sunspots", "adding", "chars")


def make_task(name: str) -> Task:
    if name == "vowels":
        return VowelsTask()
    if name == "sunspots":
        return SunspotsTask()
    if name == "adding":
        return AddingTask()
    if name == "chars":
        return CharsTask()
    raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
