"""The load generator's Triton `ModelStreamInfer` mode against a real server: one stream per sequence and many
sequences multiplexed on one stream answer every chunk, count errors by code, and end their sequences."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from bench.procs import Running
from service.loadtest import LoadConfig, run_load
from service.loadtest.config import parse_args
from service.loadtest.triton import ID_SPAN


def continue_sequence(target: str, sequence_id: int) -> None:
    """One step without START: NOT_FOUND unless the sequence is still open."""
    tensor = triton.InferInput("input", [1, 1, 12], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1, 12), np.float32))
    triton.InferenceServerClient(target).infer("vowels_lstm", [tensor], sequence_id=sequence_id)


@pytest.mark.parametrize("multiplex", [False, True])
def test_triton_stream_answers_every_chunk_and_ends_its_sequences(server: Running, multiplex: bool) -> None:
    config = LoadConfig(target=server.target, streams=5, chunk=10, chunks=4, protocol="triton", multiplex=multiplex,
                        progress=False)
    report = run_load(config)
    assert report.errors == {}
    assert (report.chunks, report.steps) == (20, 200)
    assert report.protocol == ("triton-multiplexed" if multiplex else "triton")
    assert 0 < report.p50_ms <= report.p99_ms
    for sequence_id in (1, 5):  # every sequence got its END
        with pytest.raises(InferenceServerException, match="not open"):
            continue_sequence(server.target, sequence_id)


def test_triton_multiplexed_over_two_processes(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, streams=6, chunks=3, processes=2, protocol="triton",
                                 multiplex=True, seed=3, progress=False))
    assert report.errors == {}
    assert report.chunks == 18
    with pytest.raises(InferenceServerException, match="not open"):
        continue_sequence(server.target, (3 * 1000 + 1) * ID_SPAN + 1)


@pytest.mark.parametrize("multiplex", [False, True])
def test_triton_rejected_chunks_are_counted_by_code(server: Running, multiplex: bool) -> None:
    report = run_load(LoadConfig(target=server.target, streams=2, chunks=3, features=5, protocol="triton",
                                 multiplex=multiplex, progress=False))
    assert report.errors == {"INVALID_ARGUMENT": 6}
    assert report.chunks == 0


def test_triton_unknown_model_is_counted_per_stream(server: Running) -> None:
    report = run_load(LoadConfig(target=server.target, model="no_such_model", streams=3, chunks=2, features=12,
                                 protocol="triton", progress=False))
    assert report.errors == {"NOT_FOUND": 3}


def test_triton_flags() -> None:
    config, _ = parse_args(["--protocol", "triton", "--multiplex", "--streams", "64"])
    assert (config.protocol, config.multiplex, config.streams) == ("triton", True, 64)
    for bad in (["--multiplex"], ["--protocol", "triton", "--rate", "10"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
