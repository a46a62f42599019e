"""The model repository layout contract shared by the trainer and the server."""

from pathlib import Path

from modelrepo import latest_versions, scan_repository


def test_scan_finds_positive_integer_versions_only(tmp_path: Path) -> None:
    for rel in ("a/1", "a/3", "a/0", "a/x", "b/2", ".hidden/1"):
        (tmp_path / rel).mkdir(parents=True)
    found = scan_repository(tmp_path)
    assert sorted(found) == ["a", "b"]
    assert [d.version for d in found["a"]] == [1, 3]
    assert latest_versions(tmp_path)["a"].path == tmp_path / "a" / "3"
