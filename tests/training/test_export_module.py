"""`export_module`: a user's own nn.Module, in either state layout, verified, written and served."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelrepo import Manifest
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from tests.service.helpers import cpu_settings
from training.cli import main
from training.errors import ExportError
from training.export import export_model
from training.export_module import export_module

REPO = Path(__file__).resolve().parents[2]


class BatchFirstGRU(nn.Module):
    """forward(x, h) -> (y, h) with h batch-first (batch, 1, hidden)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.gru(x, h.transpose(0, 1).contiguous())
        return y, h.transpose(0, 1)


class TwoOutputs(BatchFirstGRU):
    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return (*super().forward(x, h), h)


async def test_the_worked_example_exports_a_torch_layout_lstm_that_the_server_serves(tmp_path: Path) -> None:
    example = runpy.run_path(str(REPO / "examples" / "my_lstm.py"))
    manifest: Manifest = example["export"](tmp_path)
    assert [(p.input, p.shape) for p in manifest.state] == [("h0", [2, 32]), ("c0", [2, 32])]  # batch-first now
    v = manifest.verification
    assert v is not None and v.torch_vs_onnxruntime is not None and v.torch_vs_onnxruntime < 1e-5
    assert manifest.source is not None and manifest.source.kind == "module"
    assert manifest.architecture.cell == "custom" and manifest.outputs[0].kind == "logits"
    registry = await Registry.load(cpu_settings(tmp_path), Metrics())
    try:
        (status,) = registry.statuses()
        assert status.ready, status.reason
        model = registry.get("my_lstm")
        x = np.random.default_rng(0).standard_normal((1, 6, 12)).astype(np.float32)
        whole, _ = await model.infer(x)
        session = model.open_session()
        parts = [(await session.step(x[0, a:b]))["logits"] for a, b in ((0, 1), (1, 4), (4, 6))]
        session.close()
        np.testing.assert_allclose(np.concatenate(parts), whole["logits"][0], atol=1e-5)
    finally:
        await registry.close()
    with pytest.raises(ExportError, match="already exists; pass --force"):
        example["export"](tmp_path)


def test_a_batch_first_module_exports_too(tmp_path: Path) -> None:
    manifest = export_module(BatchFirstGRU(), torch.zeros(2, 3, 5), [torch.zeros(2, 1, 8)], tmp_path, "gru")
    assert [(p.input, p.output, p.shape) for p in manifest.state] == [("state0", "state0_out", [1, 8])]
    assert manifest.source is not None and manifest.source.adapted == []  # nothing to transpose


def test_bad_modules_are_refused_with_one_line_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"output 1 has shape \[2, 1, 8\]; expected \(batch, time, size\)"):
        export_module(TwoOutputs(), torch.zeros(2, 3, 5), [torch.zeros(2, 1, 8)], tmp_path, "m",
                      output_names=["y"])
    with pytest.raises(ExportError, match=r"fails on a \(batch 2, time 5\) input .*Expected hidden size"):  # axis 0
        export_module(BatchFirstGRU(), torch.zeros(2, 3, 5), [torch.zeros(2, 1, 8)], tmp_path, "m",
                      state_batch_axis=1)
    with pytest.raises(ExportError, match=r"with training\.export_module\.export_module"):
        export_model(BatchFirstGRU(), tmp_path, "m", 1)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_cli_exports_the_worked_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    argv = ["export-module", "examples.my_lstm:MyLSTM", "--features", "12", "--state", "2,B,32", "--state", "2,B,32",
            "--state-name", "h0:hn", "--state-name", "c0:cn", "--output", "logits", "--name", "mine",
            "--models", str(tmp_path)]
    assert main(argv) == 0
    assert Manifest.load(tmp_path / "mine" / "1" / "manifest.json").state[0].shape == [2, 32]
    assert main([*argv[:-4], "--state", "2,32", "--name", "bad", "--models", str(tmp_path)]) == 1
