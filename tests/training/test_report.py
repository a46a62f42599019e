"""The adding problem's data and the report writer on tiny settings (the full studies run via `make report`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.adding import MEAN_BASELINE_MSE, AddingTask, adding_batch
from training.report import ReportSettings, run_report
from training.report_adding import ABLATION, AddingSettings, adding_jobs
from training.report_adding import CELLS as ADDING_CELLS
from training.report_vowels import CELLS as VOWELS_CELLS
from training.report_vowels import VowelsSettings


def test_adding_batch_marks_one_step_in_each_half_and_sums_them() -> None:
    x, target = adding_batch(np.random.default_rng(0), batch=4000, length=50)
    markers = x[..., 1]  # (B, T)
    assert torch.equal(markers[:, :25].sum(1), torch.ones(4000))
    assert torch.equal(markers[:, 25:].sum(1), torch.ones(4000))
    assert torch.allclose((x[..., 0] * markers).sum(1), target)
    assert float((target - 1.0).pow(2).mean()) == pytest.approx(MEAN_BASELINE_MSE, abs=0.01)


def test_the_test_sets_own_mean_predictor_mse_is_a_draw_of_the_two_twelfths_baseline() -> None:
    baselines = [AddingTask(length=t, test_size=4000).test_baseline_mse() for t in (40, 41)]
    assert baselines[0] != baselines[1]  # each length draws its own test set
    assert baselines == pytest.approx([MEAN_BASELINE_MSE] * 2, abs=0.01)


def _rows(md: str) -> list[str]:
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    return [row.split(" | ")[0].lstrip("| ") for row in rows]


def test_report_writes_every_cell_and_resumes_from_its_cache(tmp_path: Path) -> None:
    settings = ReportSettings(vowels=VowelsSettings(seeds=2, hidden=3, epochs=1, batch_size=64),
                              adding=AddingSettings(length=6, ablation_length=5, long_length=7, seeds=2, hidden=3,
                                                    epochs=2, steps_per_epoch=1, batch_size=4, test_size=8),
                              workers=1, cache=tmp_path / "cache")
    out = tmp_path / "report"
    index = run_report(out, settings).read_text(encoding="utf-8")
    assert "[vowels.md](vowels.md)" in index and "[adding.md](adding.md)" in index
    vowels = (out / "vowels.md").read_text(encoding="utf-8")
    assert _rows(vowels)[1:1 + len(VOWELS_CELLS)] == list(VOWELS_CELLS)
    adding = (out / "adding.md").read_text(encoding="utf-8")
    assert _rows(adding)[1:] == [*ADDING_CELLS, *(f"{label} (T=5)" for label in ABLATION),
                                 *(f"{label} (T=7)" for label in ADDING_CELLS)]
    for png in ("adding_loss.png", "adding_loss_long.png", "adding_grad_norm.png", "adding_grad_profile.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 * len(VOWELS_CELLS) + 2 * (2 * len(ADDING_CELLS) + len(ABLATION))
    run_report(out, settings)  # every run comes from the cache now: the same tables
    assert (out / "adding.md").read_text(encoding="utf-8") == adding


def test_a_report_of_the_runs_finished_so_far_marks_the_others_not_run(tmp_path: Path) -> None:
    settings = ReportSettings(vowels=VowelsSettings(seeds=1, hidden=3, epochs=1, batch_size=64), parts=("vowels",),
                              workers=1, cache=tmp_path / "cache", cached_only=True)
    run_report(tmp_path / "report", settings)
    vowels = (tmp_path / "report" / "vowels.md").read_text(encoding="utf-8")
    assert vowels.count("| not run |") == len(VOWELS_CELLS)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_an_ablation_at_the_cells_length_reuses_the_lstm_row_instead_of_training_it_twice() -> None:
    jobs = adding_jobs(AddingSettings(length=7, ablation_length=7, long_length=0, seeds=1))
    labels = [job.label for job in jobs]
    assert labels == [*ADDING_CELLS, *(label for label in ABLATION if label != "LSTM")]
    assert len({job.key() for job in jobs}) == len(jobs)
    assert {job.task["length"] for job in jobs} == {7}


def test_the_long_length_repeats_every_cell_with_chrono_at_its_own_length_and_no_probes() -> None:
    jobs = [job for job in adding_jobs(AddingSettings(length=7, long_length=9, seeds=2)) if job.task["length"] == 9]
    assert [job.label for job in jobs] == 2 * [f"{label} (T=9)" for label in ADDING_CELLS]
    assert all(job.model.get("chrono") == 9 for job in jobs if job.model["cell"] == "lstm")
    assert not any(job.probe for job in jobs)
