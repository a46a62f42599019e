"""The VAD bench runs end to end (real server subprocess, load generator, Silero's reference loop) and renders
its table; a smoke run, no number is asserted beyond being measured."""

from __future__ import annotations

from pathlib import Path

from bench.vad import markdown, run_vad


def test_vad_bench_smoke_run(models_root: Path) -> None:
    reference, rows = run_vad(models_root, duration_s=0.3, warmup_s=0.0, streams=(4,))
    (row,) = rows
    assert reference > 0 and row.streams == 4 and row.frames_per_s > 0 and row.mean_batch >= 1
    table = markdown(reference, rows, "smoke")
    assert "| 4 |" in table and "Silero's own loop" in table
