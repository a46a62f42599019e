"""docs/operating.md documents every setting (its table is generated from `Settings`) and the README's Python
examples run: the native SDK's and the Triton client's, against a real server."""

from __future__ import annotations

import re
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def test_operating_settings_table_matches_the_settings_model(repo_root: Path) -> None:
    settings_table = runpy.run_path(str(repo_root / "scripts" / "settings_table.py"))["settings_table"]
    assert settings_table() in (repo_root / "docs" / "operating.md").read_text(encoding="utf-8")


def readme_example(repo_root: Path, marker: str) -> str:
    """The README's one Python block that contains `marker`."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if marker in b]
    assert len(blocks) == 1, f"one README python block with {marker!r}, found {len(blocks)}"
    return blocks[0]


def run_example(code: str, target: str, tmp_path: Path) -> dict[str, object]:
    script = tmp_path / "example.py"
    script.write_text(code.replace("127.0.0.1:8001", target), encoding="utf-8")
    return runpy.run_path(str(script))


def test_readme_client_example_runs(start_server: Callable, repo_root: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server()
    np.save(tmp_path / "x.npy", np.random.default_rng(11).standard_normal((20, 12)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = run_example(readme_example(repo_root, "client.stream("), server.target, tmp_path)
    assert namespace["logits"].shape == (5, 9)
    assert namespace["outputs"]["logits"].shape == (1, 20, 9)
    assert sorted(namespace["state"]) == ["c0", "h0"]  # as the README says: keyed by the state input names
    with namespace["Client"](server.target) as client:  # the class the example imported
        whole, _ = client.infer("vowels_lstm", namespace["x"][None])
    joined = np.concatenate([namespace["head"]["logits"], namespace["tail"]["logits"]], axis=1)
    np.testing.assert_allclose(joined, whole["logits"], atol=1e-5)


def test_readme_triton_example_runs(start_server: Callable, repo_root: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    server = start_server()
    namespace: dict[str, Any] = run_example(readme_example(repo_root, "tritonclient"), server.target, tmp_path)
    np.testing.assert_allclose(np.concatenate(namespace["logits"]), namespace["same"], atol=1e-5)
    assert float(capsys.readouterr().out) < 1e-5  # what the example prints: ~0
