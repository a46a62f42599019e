"""docs/operating.md documents every setting (its table is generated from `Settings`) and the README's client example
runs."""

from __future__ import annotations

import re
import runpy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def test_operating_settings_table_matches_the_settings_model(repo_root: Path) -> None:
    settings_table = runpy.run_path(str(repo_root / "scripts" / "settings_table.py"))["settings_table"]
    assert settings_table() in (repo_root / "docs" / "operating.md").read_text(encoding="utf-8")


def test_readme_client_example_runs(start_server: Callable, repo_root: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    example = re.search(r"## Client.*?```python\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    server = start_server()
    np.save(tmp_path / "x.npy", np.random.default_rng(11).standard_normal((20, 12)).astype(np.float32))
    script = tmp_path / "example.py"
    script.write_text(example.group(1).replace("127.0.0.1:8001", server.target), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(script))
    assert namespace["logits"].shape == (5, 9)
    assert namespace["outputs"]["logits"].shape == (1, 20, 9)
    assert sorted(namespace["state"]) == ["c0", "h0"]  # as the README says: keyed by the state input names
    with namespace["Client"](server.target) as client:  # the class the example imported
        whole, _ = client.infer("vowels_lstm", namespace["x"][None])
    joined = np.concatenate([namespace["head"]["logits"], namespace["tail"]["logits"]], axis=1)
    np.testing.assert_allclose(joined, whole["logits"], atol=1e-5)
