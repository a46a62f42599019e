"""The minimal batched server (the second baseline): chunked Triton sequences equal one whole-sequence
onnxruntime run, whether the sequences share batches or not, and the Triton load generator drives it."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench import procs
from service.loadtest import LoadConfig, run_load
from tests.service.helpers import MANIFESTS, reference, sequence

MODEL = "forecast_sunspots"


@pytest.fixture(scope="module")
def batched(models_root: Path) -> Iterator[procs.Running]:
    with procs.batched_server(models_root, MODEL, threads=1) as running:
        yield running


def test_chunked_sequences_equal_whole_sequence_runs(batched: procs.Running) -> None:
    import tritonclient.grpc as tc

    xs = sequence(MANIFESTS[MODEL], batch=3, steps=12, seed=5)
    answers: queue.Queue[object] = queue.Queue()
    got: dict[str, list[np.ndarray]] = {str(i): [] for i in range(3)}
    client = tc.InferenceServerClient(batched.target)
    client.start_stream(callback=lambda result, error: answers.put(error or result))
    try:
        for start in range(0, 12, 4):
            for i in range(3):  # three sequences in flight at once: they may share a batch
                inp = tc.InferInput("input", [1, 4, 1], "FP32")
                inp.set_data_from_numpy(xs[i:i + 1, start:start + 4])
                client.async_stream_infer(MODEL, [inp], request_id=str(i), sequence_id=100 + i,
                                          sequence_start=start == 0, sequence_end=start == 8)
            for _ in range(3):
                result = answers.get(timeout=30)
                assert isinstance(result, tc.InferResult), result
                got[result.get_response().id].append(result.as_numpy("forecast")[0])
    finally:
        client.stop_stream()
        client.close()
    whole = reference(MODEL, xs)["forecast"]
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[str(i)]), whole[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("multiplex", [False, True])
def test_the_triton_load_generator_drives_it(batched: procs.Running, multiplex: bool) -> None:
    config = LoadConfig(target=batched.target, model=MODEL, streams=4, chunks=5, features=1, progress=False,
                        protocol="triton", multiplex=multiplex)
    report = run_load(config)
    assert report.errors == {}
    assert report.chunks == 20
