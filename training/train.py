"""The training loop: seeded, Adam, gradient clipping by global norm, per-epoch metrics, a progress bar."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler
from tqdm import tqdm

from training.config import ModelConfig, TrainConfig
from training.errors import ConfigError
from training.model import SequenceModel
from training.task import Batch, Task

log = logging.getLogger("training")


@dataclass
class History:
    """One row of metrics per epoch: `train_loss`, `grad_norm` and the task's test metrics."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.epochs[-1] if self.epochs else {}


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def build_model(task: Task, cfg: ModelConfig) -> SequenceModel:
    """A fresh model for `task` (call after `seed_everything` for a reproducible initialisation)."""
    model = SequenceModel(cfg)
    model.set_normalization(*task.normalization())
    return model


def crop_prefixes(batch: Batch, fraction: float, rng: np.random.Generator) -> Batch:
    """Drops the first k ~ U{0..floor(fraction * length)} steps of each sequence (a classifier's target is the
    sequence's label, which any suffix still carries): the model learns to answer from states it reaches by
    other paths than the utterance's own start."""
    cut = [int(rng.integers(0, int(fraction * int(n)) + 1)) for n in batch.lengths]  # draws from the epoch's rng
    lengths = batch.lengths - torch.tensor(cut, dtype=batch.lengths.dtype, device=batch.lengths.device)  # (B,)
    rows = [batch.x[i, k : k + n] for i, (k, n) in enumerate(zip(cut, lengths.tolist(), strict=True))]
    return Batch(torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), lengths, batch.target)  # (B, T', F)


def train_epoch(model: SequenceModel, task: Task, opt: torch.optim.Optimizer, sched: LRScheduler,
                tcfg: TrainConfig, rng: np.random.Generator, progress: tqdm | None) -> tuple[float, float]:
    """One pass over the task's batches; returns (mean loss, mean pre-clipping gradient norm)."""
    model.train()
    losses, norms = [], []
    for clean in task.batches(tcfg.batch_size, rng):
        if tcfg.crop_prefix > 0:
            clean = crop_prefixes(clean, tcfg.crop_prefix, rng)
        batch = clean
        if tcfg.input_noise > 0:
            noise = tcfg.input_noise * model.std * torch.randn_like(clean.x)  # (B, T, F), raw units
            batch = replace(clean, x=clean.x + noise)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model, batch)
        loss.backward()
        max_norm = tcfg.clip if tcfg.clip > 0 else math.inf
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.4f}")
    return float(np.mean(losses)), float(np.mean(norms))


def evaluate(model: SequenceModel, task: Task) -> dict[str, float]:
    model.eval()
    return task.evaluate(model)


def fit(task: Task, mcfg: ModelConfig, tcfg: TrainConfig, progress: bool = True) -> tuple[SequenceModel, History]:
    """Trains a new model from `tcfg.seed`; the model returned is the one after the last epoch."""
    if tcfg.crop_prefix > 0 and not getattr(task, "croppable", False):
        raise ConfigError(f"crop_prefix does not apply to the {task.name} task: a sequence's prefix carries its target")
    rng = seed_everything(tcfg.seed)
    model = build_model(task, mcfg)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    history = History()
    steps = tcfg.epochs * sum(1 for _ in task.batches(tcfg.batch_size, np.random.default_rng(0)))
    sched = CosineAnnealingLR(opt, T_max=steps) if tcfg.cosine else ConstantLR(opt, factor=1.0)
    with tqdm(total=steps, desc=f"{task.name}/{mcfg.cell}", disable=not progress, leave=False) as bar:
        for epoch in range(1, tcfg.epochs + 1):
            loss, grad_norm = train_epoch(model, task, opt, sched, tcfg, rng, bar)
            row = {"epoch": float(epoch), "train_loss": loss, "grad_norm": grad_norm, **evaluate(model, task)}
            history.epochs.append(row)
            log.info("epoch %d/%d %s", epoch, tcfg.epochs,
                     " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
    return model, history
