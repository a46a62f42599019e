"""The shipped models: one spec each; `build` trains, checkpoints, plots and exports one of them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from modelrepo import Manifest, TrainingRecord
from training.checkpoint import Checkpoint, save_checkpoint
from training.config import ModelConfig, TrainConfig, config_to_dict
from training.export import check_destination, export_model
from training.plots import curves_png
from training.task import Task
from training.tasks import make_task
from training.train import History, fit

log = logging.getLogger("training")
CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    version: int
    task: str
    model: ModelConfig
    train: TrainConfig
    description: str


_VOWELS_TRAINING = TrainConfig(epochs=40, batch_size=16, weight_decay=1e-3, input_noise=0.3, seed=1)
SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel("vowels_lstm", 1, "vowels", ModelConfig(cell="lstm", hidden_size=48, input_size=12, output_size=9),
                 replace(_VOWELS_TRAINING, input_noise=0.5),
                 "JapaneseVowels speaker classifier (LSTM), streaming: logits after every frame"),
    ShippedModel("vowels_gru", 1, "vowels", ModelConfig(cell="gru", hidden_size=32, input_size=12, output_size=9),
                 _VOWELS_TRAINING,
                 "JapaneseVowels speaker classifier (GRU), streaming: logits after every frame"),
    ShippedModel("vowels_bigru", 1, "vowels",
                 ModelConfig(cell="gru", hidden_size=32, bidirectional=True, input_size=12, output_size=9),
                 _VOWELS_TRAINING,
                 "JapaneseVowels speaker classifier (bidirectional GRU), whole utterances only"),
    ShippedModel("forecast_sunspots", 1, "sunspots",
                 ModelConfig(cell="lstm", hidden_size=32, input_size=1, output_size=1, head="forecast"),
                 TrainConfig(epochs=60, batch_size=32, lr=1e-3, seed=1),
                 "monthly sunspot number, one-step-ahead forecast at every step (LSTM)"),
)


def history_png(name: str, task: Task, history: History) -> bytes:
    def col(key: str) -> list[float]:
        return [row[key] for row in history.epochs]

    if task.head == "classify":
        panels = {"loss": {"train (all frames)": col("train_loss"), "test (last frame)": col("test_loss")},
                  "test accuracy": {"last frame": col("test_accuracy"), "every frame": col("test_frame_accuracy")}}
    else:
        panels = {"train loss (normalised MSE)": {"train": col("train_loss")},
                  "test RMSE": {"model": col("test_rmse"), "naive last value": col("naive_rmse")}}
    return curves_png(name, panels)


def training_record(task: Task, mcfg: ModelConfig, tcfg: TrainConfig, history: History) -> TrainingRecord:
    metrics = {k: round(v, 6) for k, v in history.final.items() if k != "epoch"}
    return TrainingRecord(task=task.name, dataset=task.dataset, source=task.source, seed=tcfg.seed,
                          epochs=len(history.epochs), metrics=metrics,
                          config={"model": config_to_dict(mcfg), "train": config_to_dict(tcfg)})


def export_trained(ckpt: Checkpoint, task: Task, root: Path, name: str, version: int, description: str,
                   force: bool) -> Manifest:
    """Exports a trained model with its training record and curves into `root/name/version/`."""
    return export_model(ckpt.model, root, name, version, labels=task.labels,
                        training=training_record(task, ckpt.model.cfg, ckpt.train_config, ckpt.history),
                        description=description, extra={CURVES_FILE: history_png(name, task, ckpt.history)},
                        force=force)


def build(spec: ShippedModel, root: Path, runs: Path, force: bool, progress: bool = True) -> Manifest:
    """Train from scratch, save the checkpoint under `runs/`, export with curves into `root/name/version/`."""
    check_destination(Path(root) / spec.name / str(spec.version), force)
    task = make_task(spec.task)
    model, history = fit(task, spec.model, spec.train, progress=progress)
    ckpt = Checkpoint(task.name, model, spec.train, history)
    save_checkpoint(Path(runs) / spec.name / "checkpoint.pt", ckpt)
    manifest = export_trained(ckpt, task, root, spec.name, spec.version, spec.description, force)
    log.info("%s: wrote %s/%s/%d %s", spec.name, root, spec.name, spec.version, manifest.training.metrics
             if manifest.training else {})
    return manifest
