"""The CUDA path through the engine's public API (`Registry`, `ServedModel`, `Session`, `Settings(device="cuda")`):
the provider really is CUDA, streamed and batched outputs equal the CPU run, and the state of sessions stepping
together stays on the device between batches. Marked `cuda`; skipped, with onnxruntime's reason, where the CUDA
execution provider cannot be made active (no GPU, no CUDA/cuDNN libraries, no onnxruntime-gpu).

`scripts/gpu_check.sh` runs these on a GPU machine (`pytest -m cuda`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import onnxruntime as ort
import pytest

from service.engine.errors import ConfigurationError
from service.engine.metrics import Metrics
from service.engine.model import ServedModel
from service.engine.registry import Registry
from service.engine.runtime import CUDA
from service.settings import Settings
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, reference, sequence

pytestmark = pytest.mark.cuda

SESSIONS, CHUNKS, STEPS = 8, 4, 5
RTOL, ATOL = 1e-4, 1e-5  # cuDNN / cuBLAS kernels against the CPU provider


def resident_state(model: ServedModel) -> dict[str, object]:
    """The state pool's arrays as the store keeps them between batches (device `OrtValue`s on CUDA).

    The one place these tests look inside the engine (`service/engine/state/device.py`, reached through the model's
    pool): adapt it here when the engine's state keeping changes.
    """
    store = model._pool.store  # type: ignore[attr-defined]
    return {f"pool_{i}": value for i, value in enumerate(store._pool)}


def on_device(value: object) -> bool:
    return isinstance(value, ort.OrtValue) and value.device_name().lower() == "cuda"


@pytest.fixture
async def cuda_registry() -> AsyncIterator[Registry]:
    settings = Settings(models=SHIPPED, device="cuda", intra_op_threads=1)  # type: ignore[call-arg]
    try:
        registry = await Registry.load(settings, Metrics())
    except ConfigurationError as exc:
        pytest.skip(f"no active CUDA execution provider: {exc}")
    yield registry
    await registry.close()


async def test_every_model_runs_on_the_cuda_provider(cuda_registry: Registry) -> None:
    statuses = cuda_registry.statuses()
    assert statuses and all(s.ready and s.provider == CUDA for s in statuses), statuses
    assert all(cuda_registry.get(name).provider == CUDA for name in MANIFESTS)


@pytest.mark.parametrize("name", STREAMABLE)
async def test_batched_streams_equal_the_cpu_run_and_keep_state_on_the_device(
    cuda_registry: Registry, name: str
) -> None:
    model = cuda_registry.get(name)
    x = sequence(MANIFESTS[name], SESSIONS, CHUNKS * STEPS, seed=11)
    sessions = [model.open_session() for _ in range(SESSIONS)]
    try:
        pieces: list[list[dict[str, np.ndarray]]] = [[] for _ in sessions]
        for c in range(CHUNKS):
            chunk = slice(c * STEPS, (c + 1) * STEPS)
            results = await asyncio.gather(*(s.step(x[i, chunk]) for i, s in enumerate(sessions)))
            for i, outputs in enumerate(results):
                pieces[i].append(outputs)
            held = resident_state(model)
            assert held and all(on_device(v) for v in held.values()), {k: type(v) for k, v in held.items()}
        expected = reference(name, x)  # one whole-sequence run of all sequences on the CPU provider
        for i, session in enumerate(sessions):
            for out in MANIFESTS[name].outputs:
                got = np.concatenate([p[out.name] for p in pieces[i]])
                np.testing.assert_allclose(got, expected[out.name][i], rtol=RTOL, atol=ATOL)
            state = session.state()
            for pair in MANIFESTS[name].state:
                np.testing.assert_allclose(state[pair.input], expected[pair.output][i], rtol=RTOL, atol=ATOL)
    finally:
        for session in sessions:
            session.close()


@pytest.mark.parametrize("name", sorted(MANIFESTS))
async def test_whole_sequence_infer_equals_the_cpu_run(cuda_registry: Registry, name: str) -> None:
    x = sequence(MANIFESTS[name], 3, 7, seed=5)
    outputs, state = await cuda_registry.get(name).infer(x)
    expected = reference(name, x)
    for out in MANIFESTS[name].outputs:
        np.testing.assert_allclose(outputs[out.name], expected[out.name], rtol=RTOL, atol=ATOL)
    for pair in MANIFESTS[name].state:
        np.testing.assert_allclose(state[pair.input], expected[pair.output], rtol=RTOL, atol=ATOL)
