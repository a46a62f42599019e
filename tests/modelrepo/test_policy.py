"""The model-level config file `config.json`: Triton's version policy shapes, defaults and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrepo.policy import ModelConfig, PolicyError, load_model_config


def policy(root: Path, text: str | None) -> ModelConfig:
    if text is not None:
        (root / "config.json").write_text(text)
    return load_model_config(root)


@pytest.mark.parametrize(("text", "found", "expected"), [
    (None, [1, 3, 2], ([3, 2, 1], 1)),  # no file: latest 1
    ('{"version_policy": {"latest": {"num_versions": 2}}}', [1, 2, 3], ([3, 2, 1], 2)),
    ('{"version_policy": {"all": {}}}', [2, 1], ([2, 1], None)),
    ('{"version_policy": {"specific": {"versions": [1, 4]}}}', [1, 2, 3], ([1], None)),
    ("{}", [5], ([5], 1)),
])
def test_candidates_newest_first(tmp_path: Path, text: str | None, found: list[int],
                                 expected: tuple[list[int], int | None]) -> None:
    assert policy(tmp_path, text).version_policy.candidates(found) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("{", "cannot read it"),
    ('{"version_policy": {"latest": {"num_versions": 0}}}', "version_policy.latest.num_versions"),
    ('{"version_policy": {"latest": {}, "all": {}}}', "one of latest, all, specific"),
    ('{"version_policy": {"specific": {"versions": []}}}', "version_policy.specific.versions"),
    ('{"versions": 1}', "versions: Extra inputs are not permitted"),
])
def test_invalid_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        policy(tmp_path, text)
    assert "\n" not in str(caught.value) and str(tmp_path / "config.json") in str(caught.value)
