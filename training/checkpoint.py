"""Self-describing checkpoints: `state_dict` + configs + task name + history, never a pickled module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import ModelConfig, TrainConfig, config_from_dict, config_to_dict
from training.errors import TrainingError
from training.model import SequenceModel
from training.train import History


@dataclass
class Checkpoint:
    task: str
    model: SequenceModel
    train_config: TrainConfig
    history: History


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "task": ckpt.task,
        "model_config": config_to_dict(ckpt.model.cfg),
        "train_config": config_to_dict(ckpt.train_config),
        "history": ckpt.history.epochs,
        "state_dict": ckpt.model.state_dict(),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Rebuilds the model from its config and loads the weights (`weights_only`: no code is unpickled)."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        model = SequenceModel(config_from_dict(ModelConfig, payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
        tcfg = config_from_dict(TrainConfig, payload["train_config"])
        return Checkpoint(payload["task"], model.eval(), tcfg, History(list(payload["history"])))
    except FileNotFoundError:
        raise TrainingError(f"{path}: checkpoint not found") from None
    except (KeyError, RuntimeError, OSError, TypeError, ValueError) as exc:
        raise TrainingError(f"{path}: not a valid checkpoint: {str(exc).splitlines()[0]}") from None
