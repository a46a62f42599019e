"""The on-disk layout `<root>/<name>/<version>/{model.onnx,manifest.json}`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelrepo.manifest import MANIFEST_FILE, MODEL_FILE


@dataclass(frozen=True)
class ModelVersionDir:
    name: str
    version: int
    path: Path

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE


def scan_repository(root: Path) -> dict[str, list[ModelVersionDir]]:
    """Every `<name>/<positive int>/` folder under `root`, versions sorted ascending.

    Folders whose version is not a positive integer are ignored; what is inside is checked by the reader.
    """
    found: dict[str, list[ModelVersionDir]] = {}
    for model_dir in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = [
            ModelVersionDir(model_dir.name, int(v.name), v)
            for v in model_dir.iterdir()
            if v.is_dir() and v.name.isdigit() and int(v.name) > 0
        ]
        if versions:
            found[model_dir.name] = sorted(versions, key=lambda d: d.version)
    return found


def latest_versions(root: Path) -> dict[str, ModelVersionDir]:
    """The highest version of every model under `root`: what is served by default."""
    return {name: versions[-1] for name, versions in scan_repository(root).items()}
