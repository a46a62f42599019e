"""Settings: flags over `SEQSERVE_*` environment over defaults."""

from pathlib import Path

import pytest

from service.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEQSERVE_PORT", raising=False)
    s = Settings.from_args([])
    assert (s.port, s.metrics_port, s.device, s.max_batch_size) == (8001, 8002, "auto", 64)
    assert (s.session_idle_timeout, s.max_message_bytes, s.reject_nonfinite) == (60.0, 16 * 1024 * 1024, True)
    assert s.models == Path("models")


def test_flags_over_env_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQSERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("SEQSERVE_PORT", "9000")
    monkeypatch.setenv("SEQSERVE_REJECT_NONFINITE", "false")
    s = Settings.from_args(["--port", "7000", "--device", "cpu", "--models", "/tmp/m"])
    assert s.port == 7000  # flag beats env
    assert s.max_batch_size == 8  # env beats default
    assert s.reject_nonfinite is False
    assert (s.device, s.models) == ("cpu", Path("/tmp/m"))
    assert Settings.from_args(["--reject-nonfinite"]).reject_nonfinite is True
    monkeypatch.setenv("SEQSERVE_LOG_LEVEL", "debug")
    assert Settings.from_args([]).log_level == "DEBUG"


@pytest.mark.parametrize("argv", [["--port", "x"], ["--device", "gpu"], ["--max-batch-size", "0"], ["--nope", "1"]])
def test_bad_flags_exit_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        Settings.from_args(argv)
    assert "error" in capsys.readouterr().err


def test_every_field_is_documented() -> None:
    assert all(field.description for field in Settings.model_fields.values())
