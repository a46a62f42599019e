"""Worked example (docs/models.md): serve your own PyTorch recurrent module.

    .venv/bin/python examples/my_lstm.py --models models      # writes models/my_lstm/1/, verified
    make run                                                   # serves it beside the shipped models

`MyLSTM` keeps torch's own state layout, `(layers, batch, hidden)`: `export_module` is told the batch axis of
the state (1) and writes a graph whose state is batch-first, as the server wants.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from modelrepo import Manifest
from training.export_module import export_module


class MyLSTM(nn.Module):
    """forward(x, h, c) -> (logits, h, c); x (batch, time, 12), h and c (2, batch, 32)."""

    def __init__(self, features: int = 12, hidden: int = 32, classes: int = 9) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, (h, c) = self.lstm(x, (h, c))  # y (B, T, H); h, c (2, B, H)
        return self.head(y), h, c  # (B, T, 9), (2, B, H), (2, B, H)


def export(models: Path, force: bool = False) -> Manifest:
    torch.manual_seed(0)
    module = MyLSTM()  # load your trained weights here: module.load_state_dict(torch.load(...))
    x = torch.zeros(2, 3, 12)  # an example input (batch, time, features)
    state = [torch.zeros(2, 2, 32), torch.zeros(2, 2, 32)]  # (layers, batch, hidden), as the module wants it
    return export_module(module, x, state, models, "my_lstm", state_batch_axis=1,
                         state_names=[("h0", "hn"), ("c0", "cn")], output_names=["logits"], kind="logits",
                         description="my own 2-layer LSTM", force=force)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--force", action="store_true")
    manifest = export(parser.parse_args().models, parser.parse_args().force)
    print(f"wrote {manifest.name} version {manifest.version}: {manifest.verification}")
