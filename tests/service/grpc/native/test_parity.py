"""Through the real server: chunked streams equal whole-sequence runs, and batched equals unbatched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from seqserve_client import AsyncClient

STREAMS_PER_MODEL = 64
TOLERANCE = 1e-4
EVERY_CELL = {"vowels_lstm", "vowels_gru", "vowels_peephole_lstm", "vowels_jordan"}  # LSTM, GRU, peephole, Jordan
Job = tuple[str, np.ndarray, list[np.ndarray]]  # model, whole sequence, its chunks


async def stream_chunks(client: AsyncClient, model: str, chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Pipeline every chunk (all in flight at once), then collect the answers in order and concatenate them."""
    async with client.stream(model) as stream:
        for chunk in chunks:
            await stream.submit(chunk)
        answers = [await stream.receive() for _ in chunks]
    return {name: np.concatenate([a[name] for a in answers]) for name in answers[0]}


async def run_jobs(target: str, jobs: list[Job]) -> list[dict[str, np.ndarray]]:
    """Every job as its own stream, all concurrently, on one channel."""
    async with AsyncClient(target) as client:
        return await asyncio.gather(*(stream_chunks(client, model, chunks) for model, _, chunks in jobs))


def make_jobs(models: list[str], reference, per_model: int, seed: int) -> list[Job]:
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(per_model * len(models)):
        model = models[i % len(models)]
        x = reference.sequence(model, int(rng.integers(1, 80)), rng)
        jobs.append((model, x, reference.chunks(x, rng)))
    return jobs


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float = TOLERANCE) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=atol)


async def test_concurrent_chunked_streams_equal_whole_sequence_runs(
    start_server: Callable, streamable: list[str], reference
) -> None:
    assert set(streamable) >= EVERY_CELL
    server = start_server()
    jobs = make_jobs(streamable, reference, STREAMS_PER_MODEL, seed=1)
    results = await run_jobs(server.target, jobs)
    for (model, x, _), got in zip(jobs, results, strict=True):
        assert_close(got, reference.run(model, x))
    for model in streamable:
        assert server.active_sessions(model) == 0


async def test_batched_equals_unbatched_with_mixed_chunk_lengths(
    start_server: Callable, streamable: list[str], reference
) -> None:
    batched = start_server(max_batch_size=64, max_queue_delay_us=2000)
    unbatched = start_server(max_batch_size=1)
    jobs = make_jobs(streamable, reference, 16, seed=2)
    got_batched = await run_jobs(batched.target, jobs)
    got_unbatched = await run_jobs(unbatched.target, jobs)
    for (model, x, _), one, other in zip(jobs, got_batched, got_unbatched, strict=True):
        assert_close(one, other, atol=1e-5)
        assert_close(one, reference.run(model, x))
    # The batched server really batched (over all models: with mixed chunk lengths, which of them met a partner of
    # equal length in time depends on the machine's load), the unbatched one never did, for any model.
    steps = sum(batched.metric("seqserve_batch_size_sum", model=model) for model in streamable)
    assert steps > sum(batched.metric("seqserve_batch_size_count", model=model) for model in streamable)
    for model in streamable:
        assert unbatched.metric("seqserve_batch_size_sum", model=model) == unbatched.metric(
            "seqserve_batch_size_count", model=model
        )
