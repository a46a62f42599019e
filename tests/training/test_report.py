"""The adding problem's data and the report writer on tiny settings (the full studies run via `make report`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training.adding import MEAN_BASELINE_MSE, AddingTask, adding_batch
from training.errors import ConfigError
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
    row = next(line for line in adding.splitlines() if line.startswith("| LSTM (T=7) |")).split(" | ")
    assert float(row[6]) == pytest.approx(float(row[4]) / AddingTask(length=7, test_size=8).test_baseline_mse(),
                                          abs=2e-3)  # final / this test set's baseline (both as printed)
    without_long = replace(settings, adding=replace(settings.adding, long_length=0))
    run_report(out, without_long)  # from the cache again, without the T=7 rows: their plot goes too
    assert not (out / "adding_loss_long.png").exists()
    assert "adding_loss_long" not in (out / "adding.md").read_text(encoding="utf-8")


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


@pytest.mark.parametrize(("length", "ablation_length", "long_length", "long_rows"), [
    (7, 7, 9, True), (7, 9, 9, True), (9, 9, 9, False), (9, 7, 9, False)])
def test_no_configuration_is_trained_twice_whichever_lengths_coincide(
        length: int, ablation_length: int, long_length: int, long_rows: bool) -> None:
    s = AddingSettings(length=length, ablation_length=ablation_length, long_length=long_length, seeds=1)
    jobs = adding_jobs(s)
    assert s.long_rows == long_rows
    assert len({job.key() for job in jobs}) == len({job.label for job in jobs}) == len(jobs)
    configs = [(job.task["length"], tuple(sorted(job.model.items())), job.train["clip"]) for job in jobs]
    assert len(set(configs)) == len(configs)  # the plain LSTM at a length that has the cells' rows runs once
    assert len(jobs) == len(ADDING_CELLS) * (1 + long_rows) + len(ABLATION) - (ablation_length in (length, long_length))


def test_adding_lengths_below_three_are_refused() -> None:
    with pytest.raises(ConfigError, match="lengths must be >= 3"):
        AddingSettings(long_length=2)
