"""Provider selection: `cpu` works, `cuda` fails clearly without an active CUDA provider, `auto` falls back."""

import logging

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo import latest_versions
from service.engine import runtime as runtime_module
from service.engine.errors import ConfigurationError
from service.engine.runtime import CPU, CUDA, Runtime, check_providers, to_host
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, reference, sequence

NAME = STREAMABLE[0]


def runtime(device: str) -> Runtime:
    pairs = {p.input: p.output for p in MANIFESTS[NAME].state}
    return Runtime(latest_versions(SHIPPED)[NAME].model_path, device, 1, NAME, pairs)  # type: ignore[arg-type]


def test_cpu_runs_and_returns_state_by_input_name() -> None:
    rt = runtime("cpu")
    assert rt.provider == CPU
    manifest = MANIFESTS[NAME]
    x = sequence(manifest, 2, 5)
    state = {p.input: np.zeros((2, *p.shape), p.dtype) for p in manifest.state}
    outputs, new_state = rt.run({manifest.input.name: x}, state)
    expected = reference(NAME, x)
    assert set(outputs) == {o.name for o in manifest.outputs}
    for p in manifest.state:
        np.testing.assert_allclose(new_state[p.input], expected[p.output], atol=1e-6)


def test_cuda_fails_clearly_when_the_provider_is_not_active() -> None:
    with pytest.raises(ConfigurationError, match="CUDA execution provider is not active"):
        runtime("cuda")


def test_auto_falls_back_to_cpu_with_at_most_one_warning_and_no_onnxruntime_errors(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU build without a GPU warns once; the CPU build (`make run` on a CPU machine) has nothing to warn about."""
    monkeypatch.setattr(runtime_module, "_cuda_loads", None)  # as in a fresh process: CUDA not probed yet
    with caplog.at_level(logging.WARNING, logger="service.engine.runtime"):
        providers = [runtime("auto").provider for _ in range(3)]
    assert providers == [CPU] * 3
    warning = ("onnxruntime's CUDA execution provider did not load (start with --device cuda to see why); "
               "serving every model on CPU")
    gpu_build = CUDA in ort.get_available_providers()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [warning] * gpu_build
    assert "onnxruntime" not in capfd.readouterr().err  # its CUDA load errors stay quiet under `auto`


def test_the_cpu_build_probes_nothing_and_warns_nothing(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime's CPU wheel lists no CUDA provider: `auto` is plain CPU, `cuda` the clear error (no UserWarning)."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])  # what the CPU wheel answers
    monkeypatch.setattr(runtime_module, "_cuda_loads", None)
    with caplog.at_level(logging.INFO, logger="service.engine.runtime"):
        assert runtime("auto").provider == CPU
    assert caplog.records == [] and runtime_module._cuda_loads is None  # nothing probed, nothing logged
    with pytest.raises(ConfigurationError, match="CUDA execution provider is not active"):
        runtime("cuda")
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("device", "active", "chosen"),
    [("auto", [CUDA, CPU], CUDA), ("cuda", [CUDA, CPU], CUDA), ("cpu", [CPU], CPU), ("auto", [CPU], CPU)],
)
def test_selection_uses_the_providers_really_active(device: str, active: list[str], chosen: str) -> None:
    assert check_providers(device, active, NAME) == chosen  # type: ignore[arg-type]


def test_io_binding_leaves_state_as_ortvalues_and_feeds_them_back() -> None:
    """The CUDA path (IOBinding, state kept where it was computed), exercised here on the CPU provider."""
    manifest = MANIFESTS[NAME]
    pairs = {p.input: p.output for p in manifest.state}
    rt = Runtime(latest_versions(SHIPPED)[NAME].model_path, "cpu", 1, NAME, pairs, io_binding=True)
    x = sequence(manifest, 2, 6)
    state = {p.input: np.zeros((2, *p.shape), p.dtype) for p in manifest.state}
    head, mid = rt.run({manifest.input.name: x[:, :2]}, state)
    assert all(isinstance(v, ort.OrtValue) for v in mid.values())
    tail, final = rt.run({manifest.input.name: x[:, 2:]}, mid)
    expected = reference(NAME, x)
    out = manifest.outputs[0].name
    np.testing.assert_allclose(np.concatenate([head[out], tail[out]], axis=1), expected[out], atol=1e-5)
    for p in manifest.state:
        np.testing.assert_allclose(to_host(final[p.input]), expected[p.output], atol=1e-5)
