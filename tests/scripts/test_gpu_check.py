"""`scripts/gpu_check.sh`: its CPU dry run goes through every step (parts joined, cuda tests skipped with the reason,
the bench table printed), and its arguments are checked. The real run needs a GPU machine (see the script's head)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.gpu import client_processes

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "PARTS": str(tmp_path / "parts"), "OUT": str(tmp_path / "out")}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=240,
                          check=False)


def test_dry_run_joins_parts_skips_cuda_tests_and_prints_the_table(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "fake-1.0-py3-none-any.whl.part-aa").write_bytes(b"abc")
    (parts / "fake-1.0-py3-none-any.whl.part-ab").write_bytes(b"def")
    done = run_script(tmp_path, "--dry-run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "joined fake-1.0-py3-none-any.whl from 2 parts" in out
    assert "no active CUDA execution provider" in out  # the skip reason, from pytest -rs
    tests_row = next(line for line in out.splitlines() if line.startswith("| cuda tests"))
    assert "skipped" in tests_row and "(exit 0)" in tests_row
    assert "| bench (python -m bench.gpu) | exit 0, cpu" in out
    rows = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 4 |"))]
    assert len(rows) == 2 and all(line.endswith("| - |") for line in rows)  # no errors
    assert (tmp_path / "out" / "bench_gpu.json").is_file()


def test_unknown_argument_is_refused(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--gpu-please")
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_client_processes_grow_with_streams_and_leave_two_cores() -> None:
    assert [client_processes(s, 256, cpus=16) for s in (1, 64, 1024, 4096)] == [1, 1, 4, 14]
    assert client_processes(4096, 256, cpus=2) == 1
