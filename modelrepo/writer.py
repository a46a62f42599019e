"""Writing one version folder atomically: shared by the trainer's export, `export_module` and the import."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from modelrepo.errors import ImportRefused
from modelrepo.manifest import MANIFEST_FILE, MODEL_FILE, Manifest


class DestinationExists(ImportRefused):
    """The version folder exists and `force` was not given."""


def check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not force:
        raise DestinationExists(f"{dest} already exists; pass --force to replace it")


def write_version_dir(dest: Path, manifest: Manifest, onnx_bytes: bytes, extra: dict[str, bytes],
                      force: bool) -> None:
    """Writes everything into a temporary sibling folder, then swaps it in: never a half-written version."""
    check_destination(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        (tmp / MODEL_FILE).write_bytes(onnx_bytes)
        manifest.dump(tmp / MANIFEST_FILE)
        for file_name, data in extra.items():
            (tmp / file_name).write_bytes(data)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
