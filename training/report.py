"""The adding-problem study: LSTM / GRU / RNN at sequence length 100, plus an ablation of gradient clipping and
the LSTM forget-gate bias. Writes a markdown table and a PNG of the test-MSE curves (`python -m training report`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from training.adding import MEAN_BASELINE_MSE, AddingTask
from training.config import ModelConfig, TrainConfig
from training.plots import curves_png
from training.train import History, fit

log = logging.getLogger("training")
SOLVED_MSE = 0.01


@dataclass(frozen=True)
class Run:
    label: str
    cell: str
    clip: float
    forget_bias: float


RUNS: tuple[Run, ...] = (
    Run("LSTM", "lstm", 1.0, 1.0),
    Run("GRU", "gru", 1.0, 1.0),
    Run("RNN (tanh)", "rnn", 1.0, 1.0),
    Run("LSTM, no clipping", "lstm", 0.0, 1.0),
    Run("LSTM, forget bias 0", "lstm", 1.0, 0.0),
    Run("LSTM, no clipping, forget bias 0", "lstm", 0.0, 0.0),
)


@dataclass(frozen=True)
class ReportSettings:
    length: int = 100
    hidden: int = 32
    epochs: int = 40
    steps_per_epoch: int = 50
    batch_size: int = 64
    lr: float = 5e-3
    seed: int = 0


def _row(run: Run, history: History, settings: ReportSettings, seconds: float) -> str:
    mse = [row["test_mse"] for row in history.epochs]
    solved = next((i + 1 for i, m in enumerate(mse) if m < SOLVED_MSE), None)
    steps = f"{solved * settings.steps_per_epoch}" if solved else "never"
    clip = "off" if run.clip == 0 else f"{run.clip:g}"
    bias = f"{run.forget_bias:g}" if run.cell == "lstm" else "-"
    return (f"| {run.label} | {clip} | {bias} | {mse[-1]:.4f} | {min(mse):.4f} | {mse[-1] / MEAN_BASELINE_MSE:.3f} "
            f"| {steps} | {seconds:.0f} |")


def run_report(out_dir: Path, settings: ReportSettings, progress: bool = True) -> Path:
    """Trains every run from the same seed; writes `adding.md` and `adding_loss.png`; returns the markdown path."""
    task = AddingTask(length=settings.length, steps_per_epoch=settings.steps_per_epoch)
    rows, curves = [], {}
    for run in RUNS:
        mcfg = ModelConfig(cell=run.cell, input_size=2, output_size=1, hidden_size=settings.hidden,
                           forget_bias=run.forget_bias)
        tcfg = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, clip=run.clip,
                           seed=settings.seed)
        start = time.perf_counter()
        _, history = fit(task, mcfg, tcfg, progress=progress)
        rows.append(_row(run, history, settings, time.perf_counter() - start))
        curves[run.label] = [row["test_mse"] for row in history.epochs]
        log.info("%s", rows[-1])
    curves["mean baseline 0.167"] = [MEAN_BASELINE_MSE] * settings.epochs
    out_dir.mkdir(parents=True, exist_ok=True)
    png = curves_png(f"adding problem, T={settings.length}: test MSE",
                     {"test MSE": curves}, xlabel=f"epoch ({settings.steps_per_epoch} steps of {settings.batch_size})",
                     logy=True)
    (out_dir / "adding_loss.png").write_bytes(png)
    md = out_dir / "adding.md"
    md.write_text("\n".join([
        f"# Adding problem, sequence length {settings.length}",
        "",
        f"Command: `python -m training report` (hidden {settings.hidden}, 1 layer, Adam lr {settings.lr:g} with "
        f"cosine decay, batch {settings.batch_size}, {settings.epochs * settings.steps_per_epoch} steps, seed "
        f"{settings.seed}, 2000 test sequences). Predicting the mean gives MSE {MEAN_BASELINE_MSE:.3f}. "
        f"'solved at' = first evaluation with test MSE < {SOLVED_MSE}.",
        "",
        "| model | grad clip | forget bias | final test MSE | best test MSE | final / baseline | solved at step "
        "| seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "![test MSE curves](adding_loss.png)",
        "",
    ]), encoding="utf-8")
    return md
