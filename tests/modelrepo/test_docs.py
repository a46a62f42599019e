"""docs/models.md documents every manifest field, and its worked example is the file a test runs."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from modelrepo.manifest import (
    Architecture,
    Manifest,
    OnnxInfo,
    OutputSpec,
    SequenceInput,
    Source,
    StatePair,
    Verification,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"
EXPANDED: dict[str, type[BaseModel]] = {"architecture": Architecture, "input": SequenceInput, "outputs[]": OutputSpec,
                                        "state[]": StatePair, "verification": Verification, "source": Source,
                                        "onnx": OnnxInfo}


def test_every_manifest_field_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("| field |")[1]
    top = [f"`{name}" for name in Manifest.model_fields]  # `outputs` is documented as `outputs[].name`, ...
    nested = [f"`{prefix}.{name}`" for prefix, cls in EXPANDED.items() for name in cls.model_fields]
    missing = [p for p in top + nested if p not in table]
    assert missing == []


def test_the_worked_example_is_examples_my_lstm(repo_root: Path) -> None:
    block = re.search(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None
    assert block.group(1) in (repo_root / "examples" / "my_lstm.py").read_text(encoding="utf-8")
