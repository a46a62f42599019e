"""Every nn.LSTM / nn.GRU / nn.RNN option through export_module, and its one-line refusals (nothing written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from modelrepo import Manifest
from tests.training.modules import EXPORTS, H, TimeMajorGRU, TokenGRU, build, reference, served_inputs
from training.cli import main
from training.errors import ExportError
from training.export_module import export_module

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_each_module_exports_verified_and_equals_torch(name: str, tmp_path: Path) -> None:
    module, kwargs = build(name)
    manifest = export_module(module, root=tmp_path, name=name, **kwargs)
    v = manifest.verification
    assert v is not None and v.torch_vs_onnxruntime is not None and v.torch_vs_onnxruntime <= 1e-5
    assert v.chunked_vs_whole is not None and v.chunked_vs_whole <= 1e-5 and v.batched_vs_alone <= 1e-5
    assert manifest.streamable and all(p.shape[0] in (1, 2, 3) for p in manifest.state)  # (batch, layers, hidden)
    session = ort.InferenceSession(str(tmp_path / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = served_inputs(name, 9, np.random.default_rng(0))
    feeds = {k: a[None] for k, a in x.items()} | {p.input: np.zeros((1, *p.shape), np.float32) for p in manifest.state}
    got = session.run([manifest.outputs[0].name], feeds)[0][0]
    np.testing.assert_allclose(got, reference(name, module, kwargs["state"], x), atol=1e-5)


def test_the_manifest_describes_each_input(tmp_path: Path) -> None:
    module, kwargs = build("token_gru")
    tokens = export_module(module, root=tmp_path, name="tokens", **kwargs)
    assert (tokens.input.name, tokens.input.dtype, tokens.input.features, tokens.input.vocab_size) == \
        ("ids", "int64", 1, 11)
    module, kwargs = build("two_inputs")
    two = export_module(module, root=tmp_path, name="two", **kwargs)
    assert [(i.name, i.features, i.dtype) for i in two.inputs] == [("x", 3, "float32"), ("cond", 2, "float32")]
    assert Manifest.load(tmp_path / "two" / "1" / "manifest.json") == two
    module, kwargs = build("time_major_gru")
    tm = export_module(module, root=tmp_path, name="tm", **kwargs)
    assert tm.source is not None and any("time-major" in line for line in tm.source.adapted)


def test_a_bidirectional_module_is_served_whole_sequences_only(tmp_path: Path) -> None:
    class BiGRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 4, bidirectional=True, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gru(x)[0]  # (B, T, 8)

    manifest = export_module(BiGRU(), torch.zeros(2, 3, 3), [], tmp_path, "bi")
    assert not manifest.streamable and manifest.state == []
    assert manifest.verification is not None and manifest.verification.chunked_vs_whole is None


def test_a_projected_bidirectional_lstm_without_state_exports(tmp_path: Path) -> None:
    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 5, proj_size=2, bidirectional=True, bias=False, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0]  # (B, T, 4)

    manifest = export_module(Both(), torch.zeros(2, 3, 3), [], tmp_path, "both")
    assert manifest.outputs[0].size == 4 and not manifest.streamable


def _refused(tmp_path: Path, match: str, module: nn.Module, x: object, state: list[torch.Tensor], axis: int = 1,
             **kwargs: object) -> None:
    with pytest.raises(ExportError, match=match) as info:
        export_module(module, x, state, tmp_path, "m", state_batch_axis=axis, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())


def test_one_line_refusals(tmp_path: Path) -> None:
    h = [torch.zeros(1, 2, H)]
    _refused(tmp_path, r"forward\(x, h\) cannot take 1 input\(s\) and 2 state tensor\(s\)", TimeMajorGRU(),
             torch.zeros(3, 2, 3), [h[0], h[0]])
    _refused(tmp_path, "state spec does not match|Expected hidden size", TimeMajorGRU(), torch.zeros(3, 2, 3),
             [torch.zeros(1, 2, H + 1)])
    _refused(tmp_path, r"TimeMajorGRU is time-major .*pass --time-major", TimeMajorGRU(), torch.zeros(3, 2, 3), h,
             time_major=False)
    _refused(tmp_path, r"is int64 where float32 is declared", TokenGRU(), torch.zeros(2, 3, dtype=torch.int64), h,
             input_dtype="float32")
    _refused(tmp_path, r"wants integer token ids where a float input is declared", TokenGRU(), torch.zeros(2, 3, 1),
             h)


def test_a_python_loop_over_time_is_refused_with_the_reason(tmp_path: Path) -> None:
    class CellLoop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(3, 4)

        def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ys = []
            for t in range(x.shape[1]):  # unrolled by the trace for the example's length
                h = self.cell(x[:, t], h)
                ys.append(h)
            return torch.stack(ys, 1), h

    _refused(tmp_path, r"a Python loop over the time steps is unrolled .*run nn\.LSTM / nn\.GRU / nn\.RNN",
             CellLoop(), torch.zeros(2, 3, 3), [torch.zeros(2, 4)], axis=0)


def test_cli_exports_a_time_major_module_and_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    base = ["export-module", "tests.training.modules:TimeMajorGRU", "--input", "input=3", "--state", f"1,B,{H}",
            "--models", str(tmp_path)]
    head = base[:4]  # the factory and its input; then the state, the destination
    for state, flag, expected in (([f"1,B,{H}"], ["--batch-first"], "is time-major"),  # given as batch-first
                                  ([f"1,B,{H}", f"1,B,{H}"], [], "cannot take 1 input(s) and 2 state tensor(s)"),
                                  (["2,B,1"], [], "Expected hidden size")):  # a state spec that does not fit
        argv = [*head, *(a for shape in state for a in ("--state", shape)), *base[6:], *flag, "--name", "bad"]
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert main([*base, "--name", "tm"]) == 0  # found time-major by running it
    tokens = ["export-module", "tests.training.modules:TokenGRU", "--input", "ids=1", "--state", f"1,B,{H}",
              "--models", str(tmp_path), "--name", "tok"]
    assert main(tokens) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "integer token ids" in err and "\n" not in err
    assert main([*tokens[:3], "ids=int64:11", *tokens[4:]]) == 0
    assert Manifest.load(tmp_path / "tok" / "1" / "manifest.json").input.vocab_size == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tm", "tok"]  # nothing of the refused ones
