"""Writing one version folder atomically: shared by the trainer's export, `export_module` and the import.

Everything is written into a hidden temporary sibling folder (`.<version>.XXXX`, which the repository scan and a
serving server's poll ignore), then renamed into place, so a server polling the repository never sees half a
version. Replacing an existing version (`force`) swaps the two folders in one step where the kernel can
(Linux `renameat2(RENAME_EXCHANGE)`), so the version never disappears in between either.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path

from modelrepo.errors import ImportRefused
from modelrepo.manifest import MANIFEST_FILE, MODEL_FILE, Manifest

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


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
        publish(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, dest: Path) -> None:
    """Move the finished folder `tmp` to `dest` in one step; an existing `dest` ends up in `tmp` (removed by the
    caller)."""
    if not dest.exists():
        tmp.rename(dest)
    elif not _exchange(tmp, dest):  # no atomic swap here: the old folder is moved aside first (a short gap)
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        dest.rename(aside / "old")
        tmp.rename(dest)
        shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the call is not available."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    return bool(renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0)
