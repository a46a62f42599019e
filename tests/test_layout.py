"""The model repository layout contract shared by the trainer and the server, and the import boundaries."""

import re
from pathlib import Path

from modelrepo import latest_versions, scan_repository


def test_scan_finds_positive_integer_versions_only(tmp_path: Path) -> None:
    for rel in ("a/1", "a/3", "a/0", "a/x", "b/2", ".hidden/1"):
        (tmp_path / rel).mkdir(parents=True)
    found = scan_repository(tmp_path)
    assert sorted(found) == ["a", "b"]
    assert [d.version for d in found["a"]] == [1, 3]
    assert latest_versions(tmp_path)["a"].path == tmp_path / "a" / "3"


# Who may import what (docs/internals.md, "Packages"): protobuf and generated code stay in the gRPC layer and the
# clients built on it; onnxruntime only in the runtime; torch only in training.
PROTOBUF_USERS = ("service/grpc/", "service/client/", "service/loadtest/", "bench/")
BOUNDARIES = {
    "protobuf": (r"^\s*(from|import) (google\.protobuf|service\.grpc\.generated)\b", PROTOBUF_USERS),
    "onnxruntime": (
        r"^\s*(from|import) onnxruntime\b", ("service/engine/runtime.py", "modelrepo/importer/", "training/", "bench/")
    ),
    # bench/vad.py times Silero's own reference loop (its OnnxWrapper takes torch tensors); it runs with the test extras
    "torch": (r"^\s*(from|import) torch\b", ("training/", "bench/vad.py")),
}


def test_import_boundaries(repo_root: Path) -> None:
    offenders = []
    paths = [p for root in ("service", "training", "modelrepo", "bench") for p in (repo_root / root).rglob("*.py")]
    for path in sorted(paths):
        rel = path.relative_to(repo_root).as_posix()
        if rel.startswith("service/grpc/generated/"):
            continue
        text = path.read_text()
        for name, (pattern, allowed) in BOUNDARIES.items():
            if re.search(pattern, text, re.MULTILINE) and not rel.startswith(allowed):
                offenders.append(f"{rel} imports {name}")
    assert not offenders, offenders
