"""`python -m modelrepo import`: proposals, the wrapper, the verification against the original, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from modelrepo import Manifest, latest_versions
from modelrepo.importer.cli import main
from modelrepo.importer.silero import import_silero
from tests.modelrepo.graphs import FEATURES, HIDDEN, frame_rnn, token_gru, torch_layout_lstm

SHIPPED = Path(__file__).resolve().parents[2] / "models"


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["import", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], root: Path, *argv: object) -> str:
    """One line on stderr, exit 1, nothing under `root`."""
    code, _, err = run(capsys, *argv, "--models", root)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not root.exists() or not any(root.rglob("*.onnx")), list(root.rglob("*"))
    return err


def test_make_models_rebuilds_the_shipped_silero_vad_exactly(tmp_path: Path) -> None:
    manifest = import_silero(tmp_path)
    shipped = latest_versions(SHIPPED)["silero_vad"]
    # the bytes depend only on the wheel and onnx; the verification numbers on this machine's kernels
    assert manifest.model_dump(exclude={"verification"}) == Manifest.load(shipped.manifest_path).model_dump(
        exclude={"verification"})
    assert (tmp_path / "silero_vad" / "1" / "model.onnx").read_bytes() == shipped.model_path.read_bytes()
    v = manifest.verification
    assert v is not None and max(v.original_vs_wrapped or 0.0, v.chunked_vs_whole or 0.0, v.batched_vs_alone) < 1e-5


def test_torch_layout_lstm_is_proposed_wrapped_and_verified(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    src = torch_layout_lstm(tmp_path / "mine.onnx")
    code, out, _ = run(capsys, src, "--name", "mine", "--models", tmp_path / "models")
    assert code == 0, out
    assert "h0->hn [1, 4], c0->cn [1, 4]" in out
    manifest = Manifest.load(tmp_path / "models" / "mine" / "1" / "manifest.json")
    assert [(p.input, p.output, p.shape) for p in manifest.state] == [("h0", "hn", [1, HIDDEN]),
                                                                        ("c0", "cn", [1, HIDDEN])]
    assert manifest.input.features == FEATURES and manifest.outputs[0].size == HIDDEN
    assert manifest.architecture.cell == "custom" and manifest.onnx.recurrent_ops == ["LSTM"]
    assert manifest.source is not None
    assert manifest.source.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert "'h0': batch axis 1 moved first (transpose [1, 0, 2])" in manifest.source.adapted
    v = manifest.verification
    assert v is not None and max(v.original_vs_wrapped or 0, v.chunked_vs_whole or 0, v.batched_vs_alone) < 1e-5


def test_frame_model_with_constant_and_context(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = frame_rnn(tmp_path / "frames.onnx", samples=6, context=2)
    code, _, err = run(capsys, src, "--name", "frames", "--constant", "sr=8000", "--frame", 6, "--context", 2,
                         "--sample-rate", 8000, "--kind", "probability", "--models", tmp_path / "models")
    assert code == 0, err
    manifest = Manifest.load(tmp_path / "models" / "frames" / "1" / "manifest.json")
    assert manifest.input.features == 6 and manifest.input.frame is not None
    assert manifest.input.frame.context == 2 and manifest.input.frame.sample_rate == 8000
    assert [p.input for p in manifest.state] == ["state", "context"]
    assert manifest.source is not None and manifest.source.constants == {"sr": 8000}
    assert manifest.outputs[0].kind == "probability"


@pytest.mark.parametrize("case", ["not_onnx", "missing_file", "no_state", "ambiguous", "bad_constant_dtype",
                                  "constant_not_given", "wrong_frame", "unknown_name", "bad_pair_syntax"])
def test_bad_input_is_one_line_and_writes_nothing(case: str, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    frames = frame_rnn(tmp_path / "frames.onnx")
    lstm = torch_layout_lstm(tmp_path / "lstm.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"this is not a model")
    root = tmp_path / "models"
    ok = ["--constant", "sr=16000", "--frame", 6, "--context", 2]
    argv: dict[str, tuple[list[object], str]] = {
        "not_onnx": ([tmp_path / "junk.onnx"], "not an ONNX model"),
        "missing_file": ([tmp_path / "nope.onnx"], "no such file"),
        "no_state": ([lstm, "--state", "h0:hn", "--constant", "c0=1"], "not a scalar"),
        "ambiguous": ([_same_shape_states(tmp_path)], "equally; say which with --state h0:OUTPUT"),
        "bad_constant_dtype": ([frames, "--constant", "sr=16000.5", "--frame", 6, "--context", 2],
                               "the input is int64, '16000.5' is not a valid int64 value"),
        "constant_not_given": ([frames, "--frame", 6, "--context", 2], "bake the others with --constant"),
        "wrong_frame": ([frames, *ok[:2], "--frame", 6, "--context", 3], "Input W must have shape"),
        "unknown_name": ([lstm, "--batch-axis", "x=1"], "the graph has no input or output 'x'"),
        "bad_pair_syntax": ([lstm, "--state", "h0"], "expected --state IN:OUT"),
    }
    args, reason = argv[case]
    assert reason in refused(capsys, root, *args, "--name", "m")


def test_graph_without_any_state_candidate_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = torch_layout_lstm(tmp_path / "lstm.onnx")
    # rename the state outputs so that no name matches: no state candidate
    import onnx

    model = onnx.load(str(src))
    for value in [*model.graph.output, *model.graph.node]:
        if isinstance(value, onnx.ValueInfoProto):
            value.name = {"hn": "a", "cn": "b"}.get(value.name, value.name)
        else:
            value.output[:] = [{"hn": "a", "cn": "b"}.get(n, n) for n in value.output]
    onnx.save(model, str(src))
    assert "no state candidate" in refused(capsys, tmp_path / "models", src, "--name", "m")


def test_existing_destination_needs_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = torch_layout_lstm(tmp_path / "lstm.onnx")
    root = tmp_path / "models"
    assert run(capsys, src, "--name", "m", "--models", root)[0] == 0
    before = (root / "m" / "1" / "manifest.json").read_bytes()
    code, _, err = run(capsys, src, "--name", "m", "--models", root)
    assert code == 1 and "already exists; pass --force" in err
    assert (root / "m" / "1" / "manifest.json").read_bytes() == before
    assert run(capsys, src, "--name", "m", "--models", root, "--force")[0] == 0


def test_a_wrong_batch_axis_is_refused_with_the_numbers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = torch_layout_lstm(tmp_path / "lstm.onnx")
    err = refused(capsys, tmp_path / "models", src, "--name", "m", "--batch-axis", "hn=0", "--batch-axis", "cn=0")
    assert "verification failed" in err or "does not run" in err, err


def _same_shape_states(tmp_path: Path) -> Path:
    """The LSTM with its outputs renamed so that h0 matches hx and hy equally well."""
    import onnx

    src = torch_layout_lstm(tmp_path / "ambiguous.onnx")
    model = onnx.load(str(src))
    names = {"hn": "hx", "cn": "hy"}
    for out in model.graph.output:
        out.name = names.get(out.name, out.name)
    for node in model.graph.node:
        node.output[:] = [names.get(n, n) for n in node.output]
    onnx.save(model, str(src))
    return src


def test_wrapped_graph_runs_the_original_step_by_step(tmp_path: Path) -> None:
    """The wrapped torch-layout LSTM, fed (batch, time, F) with batch-first state, equals the original fed its own
    layout: the same numbers a user's own loop gets."""
    import onnxruntime as ort

    from modelrepo.importer import ImportOptions, import_onnx

    src = torch_layout_lstm(tmp_path / "lstm.onnx")
    import_onnx(src, tmp_path / "models", ImportOptions(name="m"))
    wrapped = ort.InferenceSession(str(tmp_path / "models" / "m" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, FEATURES)).astype(np.float32)
    h = rng.standard_normal((1, 2, HIDDEN)).astype(np.float32)
    want = original.run(None, {"input": x, "h0": h, "c0": h})
    got = wrapped.run(None, {"input": x, "h0": h.transpose(1, 0, 2), "c0": h.transpose(1, 0, 2)})
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    np.testing.assert_allclose(got[1], want[1].transpose(1, 0, 2), atol=1e-6)


def test_token_ids_and_a_second_data_input_are_imported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = token_gru(tmp_path / "tokens.onnx")
    err = refused(capsys, tmp_path / "none", path, "--name", "tok")
    assert "input 'ids' is int64 (token ids): give its vocabulary size with --vocab-size ids=N" in err
    code, _, err = run(capsys, path, "--name", "tok", "--vocab-size", "ids=7", "--models", tmp_path / "m")
    assert code == 0, err
    manifest = Manifest.load(tmp_path / "m" / "tok" / "1" / "manifest.json")
    assert (manifest.input.name, manifest.input.dtype, manifest.input.features, manifest.input.vocab_size) == \
        ("ids", "int64", 1, 7)
    assert [(i.name, i.features, i.dtype) for i in manifest.extra_inputs] == [("cond", 2, "float32")]
    assert manifest.verification is not None and manifest.verification.original_vs_wrapped == 0.0
    assert [(p.input, p.shape) for p in manifest.state] == [("h0", [1, HIDDEN])]
