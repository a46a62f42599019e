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


# Who may import what (docs/internals.md, "Packages"). Each front imports its own protocol's code, and only the
# fronts do: the data plane and the engine are protocol-neutral, so a new front touches its own package and the
# server assembly only. Protobuf and generated code stay in the fronts (the native messages also in
# service/streaming.py, which the gRPC and WebSocket fronts share) and the clients built on them; onnxruntime only
# in the runtime; torch only in training. The client package (client/) imports no server code at all.
FRONTS = ("service/grpc/", "service/http/")
CLIENTS = ("client/", "service/client/", "service/loadtest/", "service/healthcheck.py", "bench/")
PROTOBUF_USERS = (*FRONTS, "service/streaming.py", *CLIENTS)
SERVER = r"(service|modelrepo|training|bench|pydantic|pydantic_settings|onnxruntime|onnx|redis|prometheus_client)"
BOUNDARIES = {
    "protobuf": (r"^\s*(from|import) (google\.protobuf|service\.grpc\.generated|seqserve_client\.generated)\b",
                 PROTOBUF_USERS),
    "grpc": (r"^\s*(from|import) grpc(_health|_reflection)?\b", ("service/grpc/", *CLIENTS)),
    "aiohttp": (r"^\s*(from|import) aiohttp\b", ("service/http/", "service/loadtest/", "bench/")),
    "the gRPC front": (r"^\s*(from|import) service\.grpc\b",
                       ("service/grpc/", "service/app", "service/__main__.py", "service/workers.py",
                        "service/metrics_http.py", "service/loadtest/", "bench/")),
    "the HTTP front": (r"^\s*(from|import) service\.http\b", ("service/http/", "service/app", "service/grpc/server.py",
                                                            "service/__main__.py", "bench/")),
    "onnxruntime": (
        r"^\s*(from|import) onnxruntime\b", ("service/engine/runtime.py", "modelrepo/importer/", "training/", "bench/")
    ),
    # bench/vad.py times Silero's own reference loop (its OnnxWrapper takes torch tensors); it runs with the test extras
    "torch": (r"^\s*(from|import) torch\b", ("training/", "bench/vad.py")),
    "server code": (rf"^\s*(from|import) {SERVER}\b", ("service/", "modelrepo/", "training/", "bench/")),
}


def test_import_boundaries(repo_root: Path) -> None:
    offenders = []
    roots = ("service", "training", "modelrepo", "bench", "client")
    paths = [p for root in roots for p in (repo_root / root).rglob("*.py")]
    for path in sorted(paths):
        rel = path.relative_to(repo_root).as_posix()
        if "/generated/" in rel:
            continue
        text = path.read_text()
        for name, (pattern, allowed) in BOUNDARIES.items():
            if re.search(pattern, text, re.MULTILINE) and not rel.startswith(allowed):
                offenders.append(f"{rel} imports {name}")
    assert not offenders, offenders


def test_the_boundaries_see_the_packages_they_guard(repo_root: Path) -> None:
    """The checks above are not vacuous: the fronts, the data plane and the client package are where they say."""
    for rel in ("service/grpc/native/servicer.py", "service/dataplane/plane.py", "service/dataplane/stream.py",
                "client/seqserve_client/codec.py", "client/pyproject.toml"):
        assert (repo_root / rel).is_file(), rel
