"""`make proto` reproduces the committed generated code; the client CLI works against a real server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

GENERATED = Path("service/grpc/generated")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_make_proto_regenerates_the_committed_code_byte_for_byte(repo_root: Path, tmp_path: Path) -> None:
    shutil.copytree(repo_root / "proto", tmp_path / "proto")
    shutil.copytree(repo_root / "scripts", tmp_path / "scripts")
    for _ in range(2):  # and a re-run over its own output changes nothing
        subprocess.run([sys.executable, "scripts/gen_proto.py"], cwd=tmp_path, check=True, capture_output=True)
        fresh, committed = tree(tmp_path / GENERATED), tree(repo_root / GENERATED)
        assert sorted(fresh) == sorted(committed)
        assert [name for name in fresh if fresh[name] != committed[name]] == []


def client_cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.client", *args], cwd=repo_root, capture_output=True,
                          text=True, check=False)


def test_cli_lists_models_and_streams_npy_files(
    start_server: Callable, repo_root: Path, tmp_path: Path, manifests, reference
) -> None:
    server = start_server()
    listed = client_cli(repo_root, "--target", server.target, "models")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in manifests)
    x = reference.sequence("vowels_gru", 23, np.random.default_rng(10))
    np.save(tmp_path / "x.npy", x)
    streamed = client_cli(repo_root, "--target", server.target, "stream", "vowels_gru", "--input",
                          str(tmp_path / "x.npy"), "--chunk", "5", "--output", str(tmp_path / "y.npy"))
    assert streamed.returncode == 0, streamed.stderr
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(y, reference.run("vowels_gru", x)["logits"], rtol=0, atol=1e-4)
    refused = client_cli(repo_root, "--target", server.target, "stream", "vowels_bigru", "--input",
                         str(tmp_path / "x.npy"), "--output", str(tmp_path / "z.npy"))
    assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
