"""`make run` installs the CPU build of onnxruntime unless CUDA is asked for or an NVIDIA driver is found (`make -n`:
the commands make would run, nothing installed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def dry_run(repo_root: Path, tmp_path: Path, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
    argv = ["make", "-n", "--no-print-directory", target, f"VENV={tmp_path}/venv", *variables]
    inherited = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DEVICE", "NVIDIA_DRIVER")  # e.g. from `make test DEVICE=cuda`
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    return subprocess.run(argv, cwd=repo_root, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(
    ("variables", "extra", "device_flag"),
    [((), "cpu", ""), (("DEVICE=cpu",), "cpu", " --device cpu"), (("DEVICE=cuda",), "cuda", " --device cuda")],
)
def test_run_installs_the_runtime_asked_for(
    repo_root: Path, tmp_path: Path, variables: tuple[str, ...], extra: str, device_flag: str
) -> None:
    done = dry_run(repo_root, tmp_path, "run", f"NVIDIA_DRIVER={tmp_path}/no-driver", *variables)
    assert done.returncode == 0, done.stderr
    assert f"install --quiet -e '.[{extra}]'" in done.stdout
    assert done.stdout.rstrip().endswith(f"-m service --models models{device_flag}")


def test_auto_picks_cuda_where_an_nvidia_driver_is_found(repo_root: Path, tmp_path: Path) -> None:
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module\n", encoding="utf-8")
    done = dry_run(repo_root, tmp_path, "run", f"NVIDIA_DRIVER={driver}")
    assert done.returncode == 0, done.stderr
    assert "install --quiet -e '.[cuda]'" in done.stdout and "--device" not in done.stdout


def test_the_other_build_is_removed_before_installing(repo_root: Path, tmp_path: Path) -> None:
    done = dry_run(repo_root, tmp_path, "test", "DEVICE=cpu")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    swap, install = out.index("show --quiet onnxruntime-gpu"), out.index("install --quiet -e '.[train,test,cpu]'")
    assert swap < out.index("uninstall --quiet --yes onnxruntime-gpu") < install


def test_an_unknown_device_stops_make(repo_root: Path, tmp_path: Path) -> None:
    done = dry_run(repo_root, tmp_path, "run", "DEVICE=tpu")
    assert done.returncode != 0 and "DEVICE=tpu: use cpu, cuda or auto" in done.stderr
