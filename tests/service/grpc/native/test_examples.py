"""The README's first commands, on the example inputs under examples/, against a real server; the examples are
what `scripts/make_examples.py` says they are."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.data import VOWELS_TEST, load_ts

PHRASES = [(1.0, 3.86), (4.86, 7.09), (8.09, 9.63)]  # where examples/speech.wav speaks (make_examples.py)


def readme_commands(repo_root: Path) -> list[list[str]]:
    """The client commands of the README's quick start, each as `[python, -m, module, *arguments]` without the
    `--target HOST:PORT` the README gives them (the test points them at its own server). `.venv/bin/seqserve-client`
    is the client package's console script for `python -m seqserve_client`."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"In a second terminal.*?```\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        words = shlex.split(line.split("  #")[0])
        if words[:1] == [".venv/bin/seqserve-client"]:
            words[:1] = [".venv/bin/python", "-m", "seqserve_client"]
        if words[:1] == [".venv/bin/python"]:
            if "--target" in words:
                at = words.index("--target")
                del words[at : at + 2]
            commands.append(words)
    return commands


def test_the_example_vowels_utterance_is_the_first_test_utterance(repo_root: Path) -> None:
    x = np.load(repo_root / "examples" / "vowels.npy")
    assert x.dtype == np.float32 and x.shape[1] == 12
    np.testing.assert_array_equal(x, load_ts(VOWELS_TEST).sequences[0])


def test_readme_commands_run_on_the_examples(start_server: Callable, repo_root: Path, tmp_path: Path) -> None:
    server = start_server()
    commands = readme_commands(repo_root)
    assert [c[3] for c in commands] == ["models", "stream", "infer", "vad"]
    out = {}
    for command in commands:
        args = [a.replace("/tmp/", f"{tmp_path}/") for a in command[3:]]  # the README's outputs go to /tmp/
        argv = [sys.executable, *command[1:3], "--target", server.target, *args]
        done = subprocess.run(argv, cwd=repo_root, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (command, done.stderr)
        out[command[3]] = done.stdout
    assert "silero_vad" in out["models"] and "vowels_lstm" in out["models"]
    assert np.load(tmp_path / "logits.npy").shape == (19, 9)
    chunks = [line for line in out["stream"].splitlines() if line.startswith("chunk ")]
    assert [line.split(":")[0] for line in chunks] == [f"chunk {k}, steps {5 * k - 4}-{min(5 * k, 19)}"
                                                       for k in range(1, 5)]  # 19 steps, --chunk 5
    assert chunks[-1].split(": ")[1].startswith("speaker_1 (p ")  # the utterance's label, by name
    assert "last step: speaker_1 (p " in out["infer"]
    segments = [tuple(float(t.rstrip("s")) for t in line.split()[1::2]) for line in out["vad"].splitlines()
                if line.startswith("speech")]
    assert segments and all(any(a - 0.3 <= s and e <= b + 0.3 for a, b in PHRASES) for s, e in segments), segments
    assert {next(i for i, (a, b) in enumerate(PHRASES) if a - 0.3 <= s <= b) for s, _ in segments} == {0, 1, 2}
