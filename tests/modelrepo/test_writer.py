"""Publishing a version into a served repository: a scan (what the server's poll does) at any moment of the write
sees the old version or the new one, never half of one; nothing temporary is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrepo import Manifest, scan_repository
from modelrepo.writer import write_version_dir
from tests.service.versions import source_folder


def seen(root: Path) -> list[tuple[str, int, str]]:
    """What a scan finds: (name, version, the description in its manifest, or "-" while it has none)."""
    rows = []
    for versions in scan_repository(root).values():
        for found in versions:
            text = Manifest.load(found.manifest_path).description if found.manifest_path.is_file() else "-"
            rows.append((found.name, found.version, text))
    return rows


@pytest.mark.parametrize("replace", [False, True])
def test_a_scan_during_the_write_sees_the_old_folder_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             replace: bool) -> None:
    source = Manifest.load(source_folder() / "manifest.json")
    old, new = (source.model_copy(update={"name": "m", "version": 1, "description": d}) for d in ("old", "new"))
    graph = (source_folder() / "model.onnx").read_bytes()
    if replace:
        write_version_dir(tmp_path / "m" / "1", old, graph, {}, force=False)
    during: list[list[tuple[str, int, str]]] = []
    real_dump = Manifest.dump

    def dump(manifest: Manifest, path: Path) -> None:
        during.append(seen(tmp_path))  # after the graph was written, before the manifest
        real_dump(manifest, path)
        during.append(seen(tmp_path))  # every file written, not yet published

    monkeypatch.setattr(Manifest, "dump", dump)
    write_version_dir(tmp_path / "m" / "1", new, graph, {"extra.txt": b"x"}, force=replace)
    before = [("m", 1, "old")] if replace else []
    assert during == [before, before]
    assert seen(tmp_path) == [("m", 1, "new")]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]  # no temporary folder left
    assert sorted(p.name for p in (tmp_path / "m" / "1").iterdir()) == ["extra.txt", "manifest.json", "model.onnx"]
