"""The command line: train and evaluate; bad input gives a one-line error, a non-zero exit, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.checkpoint import Checkpoint, save_checkpoint
from training.cli import main
from training.config import ModelConfig, TrainConfig
from training.data import load_monthly_table, load_ts
from training.errors import ConfigError, DataError
from training.model import SequenceModel
from training.train import History


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    assert main(argv) in (1, 2)  # 1: an export refused (nothing written, as `modelrepo import`); 2: the rest
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "--cell", "transformer"], "unknown cell 'transformer'"),
    (["train", "--hidden", "0"], "hidden_size must be a positive integer"),
    (["train", "--layers", "-1"], "layers must be a positive integer"),
    (["train", "--epochs", "0"], "epochs must be a positive integer"),
    (["train", "--cell", "gru", "--peephole"], "--peephole and --coupled-gates need --cell lstm"),
    (["train", "--cell", "jordan", "--coupled-gates"], "--peephole and --coupled-gates need --cell lstm"),
    (["train", "--cell", "jordan", "--bidirectional"], "cannot be --bidirectional"),
    (["train", "--cell", "lstm", "--peephole", "--bidirectional"], "unidirectional only"),
    (["train", "--chrono", "2"], "chrono (T_max) must be 0 (off) or >= 3"),
    (["train", "--output-dropout", "1"], "output_dropout must be in [0, 1)"),
    (["train", "--crop-prefix", "1"], "crop_prefix must be in [0, 1)"),
    (["report", "--long-length", "2"], "lengths must be >= 3"),
    (["train", "--task", "sunspots", "--crop-prefix", "0.3"], "does not apply to the sunspots task"),
])
def test_bad_config_is_a_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    _one_line_error(capsys, ["--no-progress", *argv], expected)


def test_config_rejects_unknown_cell_directly() -> None:
    with pytest.raises(ConfigError, match="unknown cell"):
        ModelConfig(cell="lstmm")


def test_missing_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _one_line_error(capsys, ["evaluate", str(tmp_path / "nope.pt")], "checkpoint not found")


@pytest.mark.parametrize(("content", "expected"), [
    (None, "data file not found"),
    ("@dimensions 2\n@classLabel true 1 2\n@data\n1,2:3,4:7\n", "label '7' not among"),
    ("@dimensions 2\n@classLabel true 1 2\n@data\n1,x:3,4:1\n", "non-numeric value"),
    ("@dimensions 2\n@classLabel true 1 2\n@data\n1,2,3:3,4:1\n", "different lengths"),
    ("1,2:3,4:1\n", "not a .ts file"),
])
def test_ts_loader_errors_name_the_file(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "x.ts"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=expected) as info:
        load_ts(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_monthly_table_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.dat"
    path.write_text("1749 1 2 3 x 5 6 7 8 9 10 11 12\n")
    with pytest.raises(DataError, match=r"s.dat:1: non-numeric"):
        load_monthly_table(path)
    path.write_text("no table here\n")
    with pytest.raises(DataError, match="no monthly table"):
        load_monthly_table(path)


def test_export_into_an_existing_version_needs_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = SequenceModel(ModelConfig(cell="gru", input_size=12, hidden_size=4, output_size=9))
    save_checkpoint(tmp_path / "c.pt", Checkpoint("vowels", model, TrainConfig(), History()))
    argv = ["export", str(tmp_path / "c.pt"), "--name", "m", "--models", str(tmp_path / "repo")]
    assert main(argv) == 0
    version_dir = tmp_path / "repo" / "m" / "1"
    before = {p.name: p.read_bytes() for p in version_dir.iterdir()}
    _one_line_error(capsys, argv, "already exists; pass --force")
    assert {p.name: p.read_bytes() for p in version_dir.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "repo" / "m").iterdir()) == ["1"]  # no temporary folder left over
    assert main([*argv, "--force"]) == 0


def test_train_then_evaluate_through_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    argv = ["--no-progress", "--threads", "1", "train", "--task", "vowels", "--cell", "rnn", "--hidden", "4",
            "--epochs", "1", "--out", str(ckpt)]
    assert main(argv) == 0
    assert main(["evaluate", str(ckpt)]) == 0
    assert '"test_accuracy"' in capsys.readouterr().out.splitlines()[-1]
