"""`chars`: a character-level language model on the Zen of Python (PEP 20, from the standard library's `this`).

The text ships with every Python (`Lib/this.py`, rot13-encoded; PSF License 2.0), so nothing is downloaded or
added to the repository. Characters are token ids (their index in the sorted alphabet, which the manifest's
output labels list); the model reads ids `(B, T, 1)` and emits next-character logits at every step. Training
samples random windows of the text; the metric is bits per character over the whole text, run once with carried
state (a model this small on 856 characters learns the text itself: it is a demonstration of streaming tokens,
not a language model of English).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from training.model import SequenceModel
from training.task import Batch

CHARS_SOURCE = ("The Zen of Python (PEP 20, Tim Peters), the text of the standard library's `this` module "
                "(Python Software Foundation License 2.0)")


def zen() -> str:
    """The Zen of Python, decoded from `this` (whose import prints it: silenced here)."""
    with contextlib.redirect_stdout(io.StringIO()):
        this = importlib.import_module("this")
    return "".join(this.d.get(c, c) for c in this.s) + "\n"


class CharsTask:
    name = "chars"
    dataset = "The Zen of Python (PEP 20): 856 characters, one token per character"
    source = CHARS_SOURCE
    head = "classify"
    croppable = False
    input_size = 16  # the embedding width

    def __init__(self, window: int = 48, windows_per_epoch: int = 64) -> None:
        self.text = zen()
        self.alphabet = sorted(set(self.text))
        self.labels: list[str] | None = self.alphabet
        self.vocab_size = self.output_size = len(self.alphabet)
        self.ids = np.array([self.alphabet.index(c) for c in self.text], dtype=np.int64)  # (N,)
        self.window, self.windows_per_epoch = window, windows_per_epoch

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.alphabet.index(c) for c in text], dtype=np.int64)

    def normalization(self) -> tuple[Tensor, Tensor]:
        return torch.zeros(self.input_size), torch.ones(self.input_size)  # unused: ids are embedded

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        starts = rng.integers(0, len(self.ids) - self.window - 1, size=self.windows_per_epoch)
        for first in range(0, len(starts), batch_size):
            picked = starts[first : first + batch_size]
            rows = torch.from_numpy(np.stack([self.ids[s : s + self.window + 1] for s in picked]))  # (B, T + 1)
            lengths = torch.full((len(rows),), self.window, dtype=torch.int64)
            yield Batch(rows[:, :-1, None], lengths, rows[:, 1:])  # ids (B, T, 1), next ids (B, T)

    def loss(self, model: SequenceModel, batch: Batch) -> Tensor:
        logits = model.forward_padded(batch.x, batch.lengths)  # (B, T, V)
        return F.cross_entropy(logits.transpose(1, 2), batch.target)

    def evaluate(self, model: SequenceModel) -> dict[str, float]:
        """Bits per character of the whole text, read once from the start with carried state."""
        x = torch.from_numpy(self.ids[:-1])[None, :, None]  # (1, N-1, 1)
        with torch.no_grad():
            logits = model(x, *model.initial_state(1))[0][0]  # (N-1, V)
        target = torch.from_numpy(self.ids[1:])
        nats = float(F.cross_entropy(logits, target))
        return {"bits_per_char": nats / math.log(2), "accuracy": float((logits.argmax(-1) == target).float().mean())}
