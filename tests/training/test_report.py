"""The adding problem's data and the report writer (the full study runs via `make report`, not here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.adding import MEAN_BASELINE_MSE, adding_batch
from training.report import RUNS, ReportSettings, run_report


def test_adding_batch_marks_one_step_in_each_half_and_sums_them() -> None:
    x, target = adding_batch(np.random.default_rng(0), batch=4000, length=50)
    markers = x[..., 1]  # (B, T)
    assert torch.equal(markers[:, :25].sum(1), torch.ones(4000))
    assert torch.equal(markers[:, 25:].sum(1), torch.ones(4000))
    assert torch.allclose((x[..., 0] * markers).sum(1), target)
    assert float((target - 1.0).pow(2).mean()) == pytest.approx(MEAN_BASELINE_MSE, abs=0.01)


def test_report_writes_one_row_per_run_and_a_png(tmp_path: Path) -> None:
    settings = ReportSettings(length=8, hidden=4, epochs=2, steps_per_epoch=2, batch_size=8)
    md = run_report(tmp_path, settings, progress=False).read_text(encoding="utf-8")
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [run.label for run in RUNS]
    assert (tmp_path / "adding_loss.png").read_bytes().startswith(b"\x89PNG")
