"""State of any numeric dtype: an imported graph whose state is an int64 step counter, served through both fronts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from modelrepo.importer.cli import main as import_main
from seqserve_client import Client
from tests.modelrepo.graphs import FEATURES, step_counter
from tests.service.grpc.helpers import RunningServer


def counter_repository(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    source = step_counter(tmp_path / "counter.onnx")
    assert import_main(["import", str(source), "--name", "counter", "--models", str(models)]) == 0
    return models


def test_an_int64_state_is_carried_and_returned_on_both_fronts(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = start_server(models=counter_repository(tmp_path))
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in (2, 3, 4)]
    with Client(server.target) as client:
        (info,) = [m for m in client.models() if m.name == "counter"]
        assert info.ready and [(s.input, s.output) for s in info.state] == [("count", "count_out")]
        with client.stream("counter") as stream:
            for chunk in chunks:
                np.testing.assert_array_equal(stream.send(chunk)["output"], chunk)
        _, state = client.infer("counter", np.concatenate(chunks)[None])
        assert state["count"].dtype == np.int64 and state["count"].tolist() == [[9]]
    tc = triton.InferenceServerClient(server.target)
    counts = []
    for k, chunk in enumerate(chunks):
        tensor = triton.InferInput("input", [1, *chunk.shape], "FP32")
        tensor.set_data_from_numpy(chunk[None])
        result = tc.infer("counter", [tensor], sequence_id=7, sequence_start=k == 0, sequence_end=k == len(chunks) - 1,
                          outputs=[triton.InferRequestedOutput("output"), triton.InferRequestedOutput("count_out")])
        np.testing.assert_array_equal(result.as_numpy("output")[0], chunk)
        counts.append(result.as_numpy("count_out"))
    assert [c.dtype for c in counts] == [np.int64] * 3 and [c.tolist() for c in counts] == [[[2]], [[5]], [[9]]]
    config = tc.get_model_config("counter").config
    (state,) = config.sequence_batching.state
    assert state.data_type == triton.model_config_pb2.TYPE_INT64
