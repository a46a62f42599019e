"""Silero VAD through the real server: 64 concurrent streams with chunks of 1 to 8 frames, on the native and the
Triton protocol, equal Silero's own reference loop (its `OnnxWrapper` over the original graph) frame by frame;
the server batched them (mean batch > 1); wrong frame sizes are refused; the `vad` client finds real speech."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from silero_vad.utils_vad import OnnxWrapper

from modelrepo.importer.silero import model_file
from seqserve_client import AsyncClient, Client, ServerError
from seqserve_client.vad import frame_probabilities, frames_of, speech_segments
from tests.service.grpc.helpers import RunningServer
from tests.service.speech import conversation, espeak_available, write_wav

MODEL, FRAME, RATE = "silero_vad", 512, 16000
STREAMS = 64
TOLERANCE = 1e-5
SAFETY_NET_S = 120.0  # a hung server fails the test instead of blocking it; never a timed assertion


def audio(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Noise, tones and bursts at varied loudness: probabilities that are not all near zero."""
    t = np.arange(frames * FRAME) / RATE
    tone = np.sin(2 * np.pi * rng.uniform(100, 300) * t) * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
    return (rng.uniform(0.05, 0.5) * tone + rng.uniform(0.001, 0.1) * rng.standard_normal(len(t))).astype(np.float32)


def silero_loop(x: np.ndarray) -> np.ndarray:
    """Silero's own streaming loop: its OnnxWrapper over the original graph from the wheel, one frame per call."""
    wrapper = OnnxWrapper(str(model_file()), force_onnx_cpu=True)
    return np.array([float(wrapper(torch.from_numpy(frame.copy()), RATE)[0, 0]) for frame in frames_of(x, FRAME)])


def jobs(seed: int) -> list[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """(frames, chunks of 1..8 frames, Silero's probabilities) for every stream."""
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(STREAMS):
        frames = frames_of(audio(rng, int(rng.integers(6, 20))), FRAME)
        chunks, start = [], 0
        while start < len(frames):
            chunks.append(frames[start : start + int(rng.integers(1, 9))])
            start += len(chunks[-1])
        made.append((frames, chunks, silero_loop(frames.reshape(-1))))
    return made


def mean_batch(server: RunningServer) -> tuple[float, float]:
    return (server.metric("seqserve_batch_size_sum", model=MODEL), server.metric("seqserve_batch_size_count",
                                                                                 model=MODEL))


async def native(target: str, chunks: list[np.ndarray]) -> np.ndarray:
    async with AsyncClient(target) as client, client.stream(MODEL) as stream:
        for chunk in chunks:
            await stream.submit(chunk)
        return np.concatenate([(await stream.receive())["output"][:, 0] for _ in chunks])


def via_triton(target: str, work: list[tuple[np.ndarray, list[np.ndarray], np.ndarray]]) -> list[np.ndarray]:
    """Every stream a Triton sequence on one gRPC stream, chunks interleaved round-robin."""
    client = triton.InferenceServerClient(target)
    arrived: queue.SimpleQueue[tuple[triton.InferResult | None, Exception | None]] = queue.SimpleQueue()
    client.start_stream(callback=lambda result, error: arrived.put((result, error)))
    sends = [(i, k) for k in range(max(len(c) for _, c, _ in work)) for i, (_, c, _) in enumerate(work) if k < len(c)]
    for i, k in sends:
        chunk = work[i][1][k][None]
        tensor = triton.InferInput("input", list(chunk.shape), "FP32")
        tensor.set_data_from_numpy(chunk)
        client.async_stream_infer(MODEL, [tensor], request_id=f"{i}:{k}", sequence_id=5000 + i,
                                  sequence_start=k == 0, sequence_end=k == len(work[i][1]) - 1)
    got: dict[int, dict[int, np.ndarray]] = {i: {} for i in range(len(work))}
    for _ in sends:
        result, error = arrived.get(timeout=SAFETY_NET_S)
        assert error is None and result is not None, error
        i, k = map(int, result.get_response().id.split(":"))
        got[i][k] = result.as_numpy("output")[0, :, 0]
    client.stop_stream()
    return [np.concatenate([got[i][k] for k in sorted(got[i])]) for i in range(len(work))]


async def test_64_vad_streams_equal_silero_own_loop_on_both_protocols(start_server: Callable[..., RunningServer]
                                                                      ) -> None:
    # A generous queue delay: steps batch only with steps of their own frame count, and on a loaded machine partners
    # of equal length arrive further apart (the mean batch stays > 1 whatever the load; answers are unaffected).
    server = start_server(max_batch_size=64, max_queue_delay_us=20_000)
    work = jobs(seed=10)
    assert max(float(p.max()) for _, _, p in work) > 0.2  # not all near zero: the comparison means something
    got = await asyncio.gather(*(native(server.target, chunks) for _, chunks, _ in work))
    steps, batches = mean_batch(server)
    worst = max(float(np.max(np.abs(g - want))) for g, (_, _, want) in zip(got, work, strict=True))
    assert worst <= TOLERANCE, worst
    assert steps / batches > 1, (steps, batches)
    got = await asyncio.to_thread(via_triton, server.target, work)
    worst = max(float(np.max(np.abs(g - want))) for g, (_, _, want) in zip(got, work, strict=True))
    more_steps, more_batches = mean_batch(server)
    assert worst <= TOLERANCE, worst
    assert (more_steps - steps) / (more_batches - batches) > 1
    assert server.active_sessions(MODEL) == 0
    print(f"native and triton: {STREAMS} streams, {sum(len(f) for f, _, _ in work)} frames in all, max abs diff "
          f"{worst:.1e}, mean batch native {steps / batches:.1f}, "
          f"triton {(more_steps - steps) / (more_batches - batches):.1f}")


def test_a_chunk_of_the_wrong_frame_size_is_refused_and_the_state_kept(
        start_server: Callable[..., RunningServer]) -> None:
    server = start_server()
    frames = frames_of(audio(np.random.default_rng(3), 6), FRAME)
    want = silero_loop(frames.reshape(-1))
    with Client(server.target) as client, client.stream(MODEL) as stream:
        first = stream.send(frames[:3])["output"][:, 0]
        with pytest.raises(ServerError) as refused:
            stream.send(np.zeros((2, FRAME - 1), np.float32))
        assert refused.value.code.name == "INVALID_ARGUMENT" and "512 features" in str(refused.value)
        rest = stream.send(frames[3:])["output"][:, 0]
    np.testing.assert_allclose(np.concatenate([first, rest]), want, atol=TOLERANCE, rtol=0)


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (make test installs it)")
def test_vad_client_finds_the_phrases_espeak_ng_speaks(start_server: Callable[..., RunningServer],
                                                       tmp_path: Path, repo_root: Path) -> None:
    speech, spans = conversation()
    server = start_server()
    with Client(server.target) as client:
        probs = frame_probabilities(client, speech, chunk_frames=3)
    np.testing.assert_allclose(probs, silero_loop(speech), atol=TOLERANCE, rtol=0)  # real speech: same numbers
    segments = speech_segments(probs)
    assert_found(segments, spans)
    write_wav(tmp_path / "speech.wav", speech)
    cli = subprocess.run([sys.executable, "-m", "service.client", "--target", server.target, "vad",
                          str(tmp_path / "speech.wav")], capture_output=True, text=True, check=True, cwd=repo_root)
    printed = [line.split() for line in cli.stdout.splitlines() if line.startswith("speech")]
    assert_found([(float(p[1][:-1]), float(p[3][:-1])) for p in printed], spans)


def assert_found(segments: list[tuple[float, float]], spans: list[tuple[float, float]]) -> None:
    """Every segment inside a phrase (within 0.3 s), and most of every phrase covered by segments."""
    assert segments
    for start, end in segments:
        assert any(a - 0.3 <= start and end <= b + 0.3 for a, b in spans), (start, end, spans)
    for a, b in spans:
        covered = sum(max(0.0, min(end, b) - max(start, a)) for start, end in segments)
        assert covered >= 0.7 * (b - a), (a, b, segments)
