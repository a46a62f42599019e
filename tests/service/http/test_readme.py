"""The README's curl commands, as written, against a real server's HTTP port."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def readme_curls(repo_root: Path) -> list[list[str]]:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### From a browser / from curl.*?```\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("  #")[0]) for line in lines if line.startswith("curl ")]


def test_readme_curl_commands_answer(start_server: Callable, repo_root: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl missing: `make test` installs it (scripts/ensure-package.sh)")
    server = start_server()
    here, answers = f"127.0.0.1:{server.serving.http_port}", []
    for command in readme_curls(repo_root):
        argv = [curl, "-sS", "-w", "\n%{http_code}", *(a.replace("localhost:8000", here) for a in command[1:])]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        body, _, code = done.stdout.rpartition("\n")
        assert (done.returncode, code) == (0, "200"), (command, done.stdout, done.stderr)
        answers.append(json.loads(body))
    metadata, index, infer = answers
    assert metadata["name"] == "vowels_lstm"
    assert {"vowels_lstm", "silero_vad"} <= {row["name"] for row in index}
    logits = next(o for o in infer["outputs"] if o["name"] == "logits")
    assert logits["shape"] == [1, 1, 9]
