"""The memory bench's openers against a real server: Triton sequences opened by unary ModelInfer (START, no END)
stay open with no client call held, and leaving the opener ends them; the report names each transport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from bench import procs
from bench.memory import NATIVE_STREAM, TRITON_SEQUENCE_ID, MemoryResult, sequence_sessions, stream_sessions
from bench.render import markdown
from modelrepo import Manifest, latest_versions

MODEL = "vowels_lstm"
IDS = range(1, 41)


@pytest.fixture(scope="module")
def server(models_root: Path) -> Iterator[procs.Running]:
    with procs.real_server(models_root, ["--max-sessions", "100", "--session-idle-timeout", "3600"]) as running:
        yield running


@pytest.fixture(scope="module")
def features(models_root: Path) -> int:
    return Manifest.load(latest_versions(models_root)[MODEL].manifest_path).input.features


def continue_sequence(target: str, features: int, sequence_id: int) -> None:
    """One step of an open sequence, without START: fails with NOT_FOUND unless the sequence is open."""
    x = np.zeros((1, 1, features), dtype=np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    triton.InferenceServerClient(target).infer(MODEL, [tensor], sequence_id=sequence_id)


async def test_sequences_stay_open_without_a_call_and_end_on_leaving(server: procs.Running, features: int) -> None:
    async with sequence_sessions(server.target, MODEL, features, IDS):
        for sequence_id in (IDS[0], IDS[-1]):
            continue_sequence(server.target, features, sequence_id)
    with pytest.raises(InferenceServerException, match="not open"):
        continue_sequence(server.target, features, IDS[0])


async def test_stream_sessions_open_every_stream(server: procs.Running, features: int) -> None:
    async with stream_sessions(server.target, MODEL, features, range(len(IDS))):
        pass  # entering raises unless every stream was opened


def test_report_names_each_transport_with_its_verdict() -> None:
    results = [MemoryResult(MODEL, NATIVE_STREAM, 10, 0, 30_000, 3000.0, 384, 2432, False),
               MemoryResult(MODEL, TRITON_SEQUENCE_ID, 10, 0, 10_000, 1000.0, 384, 2432, True)]
    text = markdown([], results, "t")
    assert f"- MISSED: {NATIVE_STREAM} (" in text
    assert f"- HOLDS: {TRITON_SEQUENCE_ID} (" in text
