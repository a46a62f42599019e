"""The hand-written baseline server: answers the native `Stream` like seqserve (chunked == one whole-sequence
onnxruntime run) and the load generator drives it unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from bench import procs
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.generated.seqserve.v1 import seqserve_pb2_grpc as pb_grpc
from service.loadtest import LoadConfig, run_load
from tests.service.helpers import MANIFESTS, reference, sequence

MODEL = "vowels_lstm"


@pytest.fixture(scope="module")
def baseline(models_root: Path) -> Iterator[procs.Running]:
    with procs.baseline_server(models_root, MODEL) as running:
        yield running


def chunk_request(seq: int, x: np.ndarray) -> pb.StreamRequest:
    tensor = pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=x.shape, data=x.astype(np.float32).tobytes())
    return pb.StreamRequest(seq=seq, chunk=pb.Chunk(input=tensor))


def test_chunked_stream_equals_one_whole_sequence_run(baseline: procs.Running) -> None:
    x = sequence(MANIFESTS[MODEL], batch=1, steps=12, seed=4)[0]
    requests = [pb.StreamRequest(seq=0, open=pb.Open(model=MODEL))]
    requests += [chunk_request(i + 1, x[start:start + 4]) for i, start in enumerate(range(0, 12, 4))]
    with grpc.insecure_channel(baseline.target) as channel:
        replies = list(pb_grpc.SeqServeStub(channel).Stream(iter(requests)))
    assert [r.seq for r in replies] == [0, 1, 2, 3]
    assert replies[0].WhichOneof("kind") == "opened"
    whole = reference(MODEL, x[np.newaxis])
    for output in MANIFESTS[MODEL].outputs:
        got = np.concatenate([np.frombuffer(r.result.outputs[output.name].data, np.float32).reshape(4, -1)
                              for r in replies[1:]])
        np.testing.assert_allclose(got, whole[output.name][0], rtol=1e-5, atol=1e-6)


def test_load_generator_drives_it(baseline: procs.Running) -> None:
    report = run_load(LoadConfig(target=baseline.target, streams=3, chunks=4, features=12, progress=False))
    assert report.errors == {}
    assert report.chunks == 12
