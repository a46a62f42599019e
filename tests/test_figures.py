"""Every picture under docs/images/ is current with its source: `make figures` recorded the sha256 of each figure's
sources and of the image it made (docs/images/figures.json); an edited source or a hand-edited image fails here."""

from __future__ import annotations

import json
import runpy
import xml.dom.minidom
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def figures(repo_root: Path) -> dict[str, Any]:
    return runpy.run_path(str(repo_root / "scripts" / "figures.py"))


def test_every_figure_is_recorded(figures: dict[str, Any]) -> None:
    record = json.loads(figures["RECORD"].read_text(encoding="utf-8"))
    assert sorted(record) == sorted(figures["figures"]()), "run `make figures`"
    assert {"architecture.svg", "vad.png", "throughput.png"} <= set(record)  # the README's three pictures


def test_every_figure_is_current_with_its_sources(figures: dict[str, Any]) -> None:
    record = json.loads(figures["RECORD"].read_text(encoding="utf-8"))
    for name, figure in figures["figures"]().items():
        assert figures["source_hashes"](figure) == record[name]["sources"], f"{name}: sources changed: make figures"
        image = figures["IMAGES"] / name
        assert figures["sha256"](image) == record[name]["image"], f"{image}: not what make figures made"
        if image.suffix == ".svg":
            xml.dom.minidom.parse(str(image))  # well-formed, as a browser needs it


def test_the_readme_shows_every_figure(figures: dict[str, Any], repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert [name for name in figures["figures"]() if f"](docs/images/{name})" not in readme] == []
