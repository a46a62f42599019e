"""`make report` (`python -m training report`): the fidelity studies, written to `docs/report/`.

- `vowels.md`: JapaneseVowels, every cell, 5 seeds, mean and spread of last-frame accuracy, published range;
- `adding.md` + PNGs: the adding problem at T = 200 (every cell and the LSTM ablation) and T = 400 (every cell),
  3 seeds, gradient traces;
- `README.md`: what ran, with which command, and what each part cost.

Runs go to worker processes (`--workers`, one torch thread each) and are cached under `runs/report/` by their
configuration, so an interrupted report resumes; `--fresh` ignores the cache.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.report_adding import OPTIONAL_FILES, AddingSettings, adding_jobs, adding_outputs
from training.report_vowels import VowelsSettings, vowels_jobs, vowels_markdown
from training.study import Job, run_jobs

log = logging.getLogger("training")
PARTS = ("vowels", "adding")


@dataclass(frozen=True)
class ReportSettings:
    vowels: VowelsSettings = field(default_factory=VowelsSettings)
    adding: AddingSettings = field(default_factory=AddingSettings)
    parts: tuple[str, ...] = PARTS
    workers: int = 2
    cache: Path = Path("runs/report")
    fresh: bool = False
    cached_only: bool = False  # write the tables from the runs finished so far; run nothing
    reverse: bool = False  # run the jobs last-first: a second process on the same cache meets the first midway


def _write(out_dir: Path, files: dict[str, bytes], optional: tuple[str, ...] = ()) -> None:
    """Writes `files`; removes the part's optional files that this run did not write (no stale plot stays)."""
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    for name in optional:
        if name not in files:
            (out_dir / name).unlink(missing_ok=True)


def _ordered(jobs: list[Job], settings: ReportSettings) -> list[Job]:
    return jobs[::-1] if settings.reverse else jobs


def run_report(out_dir: Path, settings: ReportSettings) -> Path:
    """Runs the selected parts, writes their files as each finishes, then the index; returns the index path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.fresh:
        shutil.rmtree(settings.cache, ignore_errors=True)
    costs = []
    for part in settings.parts:
        start = time.perf_counter()
        if part == "vowels":
            jobs = vowels_jobs(settings.vowels)
            results = run_jobs(_ordered(jobs, settings), settings.cache, settings.workers, not settings.cached_only)
            files = {"vowels.md": vowels_markdown(settings.vowels, jobs, results).encode()}
        else:
            jobs = adding_jobs(settings.adding)
            results = run_jobs(_ordered(jobs, settings), settings.cache, settings.workers, not settings.cached_only)
            files = adding_outputs(settings.adding, jobs, results)
        _write(out_dir, files, OPTIONAL_FILES if part == "adding" else ())
        train_seconds = sum(r["seconds"] for r in results.values())
        wall = (time.perf_counter() - start) / 60
        costs.append(f"| {part} | {len(results)} of {len(jobs)} | {train_seconds / 60:.1f} | {wall:.1f} "
                     f"| {', '.join(f'[{n}]({n})' for n in files)} |")
        log.info("report part %s done: %s", part, costs[-1])
    index = out_dir / "README.md"
    index.write_text("\n".join([
        "# Fidelity report",
        "",
        f"Written by `make report` (`python -m training report --workers {settings.workers}`); not part of "
        "`make test`. Seeded and deterministic on CPU; each run trains with one torch thread, "
        f"{settings.workers} runs side by side. Runs are cached by configuration under `{settings.cache}/`: the "
        "wall time of a part that was resumed from the cache is only what this invocation ran.",
        "",
        "The cost of a part is its training minutes (each run's own wall time, summed); with the runs spread over "
        f"{settings.workers} workers on an otherwise idle machine the part's wall time is about that sum divided by "
        f"{settings.workers}. On a busy machine each run's own time grows with the load.",
        "",
        "| part | runs | training minutes (sum over runs) | wall minutes (this invocation) | files |",
        "| --- | --- | --- | --- | --- |",
        *costs,
        "",
    ]), encoding="utf-8")
    return index
