"""Triton sequences through the real `tritonclient.grpc` against a real server: chunks sent with sequence_id /
start / end (unary and streamed) equal the whole-sequence onnxruntime run; errors; the native API alongside."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import np_to_triton_dtype

from seqserve_client import Client

if TYPE_CHECKING:
    from tests.service.grpc.helpers import Reference, RunningServer

TOLERANCE = 1e-4
SAFETY_NET_S = 120.0  # a hung server fails the test instead of blocking it; never a timed assertion


@dataclass
class Sequence:
    model: str
    sequence_id: int | str
    x: np.ndarray
    chunks: list[np.ndarray]
    outputs: list[np.ndarray] = field(default_factory=list)

    def request(self, k: int) -> dict[str, object]:
        """Keyword arguments of `infer` / `async_stream_infer` for chunk k."""
        chunk = self.chunks[k][None]
        tensor = triton.InferInput("input", list(chunk.shape), np_to_triton_dtype(chunk.dtype))
        tensor.set_data_from_numpy(chunk)
        return dict(model_name=self.model, inputs=[tensor], request_id=f"{self.sequence_id}:{k}",
                    sequence_id=self.sequence_id, sequence_start=k == 0, sequence_end=k == len(self.chunks) - 1)


def make_sequences(reference: Reference, models: list[str], count: int, seed: int) -> list[Sequence]:
    """`count` sequences over `models`, integer ids for even ones and string ids for odd ones."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(count):
        model = models[i % len(models)]
        x = reference.sequence(model, int(rng.integers(15, 50)), rng)
        made.append(Sequence(model, 1000 + i if i % 2 == 0 else f"seq-{i}", x, reference.chunks(x, rng)))
    return made


def interleaved(sequences: list[Sequence]) -> list[tuple[Sequence, int]]:
    """Round-robin over the sequences: every sequence is open while the others run."""
    longest = max(len(s.chunks) for s in sequences)
    return [(s, k) for k in range(longest) for s in sequences if k < len(s.chunks)]


def assert_parity(sequences: list[Sequence], reference: Reference) -> None:
    for s in sequences:
        want = reference.run(s.model, s.x)
        name = next(iter(want))
        np.testing.assert_allclose(np.concatenate(s.outputs), want[name], atol=TOLERANCE, rtol=0,
                                   err_msg=f"{s.model} sequence {s.sequence_id!r}")


def first_output(result: triton.InferResult) -> np.ndarray:
    """The one output of a response, without its batch axis."""
    (out,) = result.get_response().outputs
    return result.as_numpy(out.name)[0]


def test_unary_chunks_of_32_interleaved_sequences_equal_whole_runs(
    start_server: Callable[..., RunningServer], reference: Reference, streamable: list[str]
) -> None:
    assert {"vowels_lstm", "vowels_gru", "vowels_peephole_lstm", "vowels_jordan"} <= set(streamable)
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    sequences = make_sequences(reference, streamable, 32, seed=3)
    for s, k in interleaved(sequences):
        s.outputs.append(first_output(client.infer(**s.request(k))))
    assert_parity(sequences, reference)
    for model in streamable:
        assert server.active_sessions(model) == 0  # END freed every session


class StreamAnswers:
    """tritonclient's stream callback, collecting (request id, result) and errors in arrival order."""

    def __init__(self) -> None:
        self.arrived: queue.SimpleQueue[tuple[triton.InferResult | None, Exception | None]] = queue.SimpleQueue()

    def __call__(self, result: triton.InferResult | None, error: Exception | None) -> None:
        self.arrived.put((result, error))

    def take(self, count: int) -> list[tuple[triton.InferResult | None, Exception | None]]:
        return [self.arrived.get(timeout=SAFETY_NET_S) for _ in range(count)]


def test_streamed_chunks_of_32_interleaved_sequences_equal_whole_runs_in_order(
    start_server: Callable[..., RunningServer], reference: Reference, streamable: list[str]
) -> None:
    client = triton.InferenceServerClient(start_server().target)
    sequences = make_sequences(reference, streamable, 32, seed=4)
    by_id = {str(s.sequence_id): s for s in sequences}
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    sends = interleaved(sequences)
    for s, k in sends:
        client.async_stream_infer(**s.request(k))
    arrived = answers.take(len(sends))
    client.stop_stream()
    seen: dict[str, list[int]] = {key: [] for key in by_id}
    for result, error in arrived:
        assert error is None, error
        assert result is not None
        key, k = result.get_response().id.rsplit(":", 1)
        seen[key].append(int(k))
        by_id[key].outputs.append(first_output(result))
    assert all(ks == list(range(len(by_id[key].chunks))) for key, ks in seen.items())  # request order per sequence
    assert_parity(sequences, reference)


def test_stream_survives_errors_and_other_sequences_continue(
    start_server: Callable[..., RunningServer], reference: Reference, streamable: list[str]
) -> None:
    client = triton.InferenceServerClient(start_server().target)
    sequences = make_sequences(reference, streamable, 4, seed=5)
    victim = sequences[0]
    wrong_shape = triton.InferInput("input", [1, 3, 5], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 3, 5), np.float32))
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    sends = interleaved(sequences)
    bad = {
        "no-start": dict(model_name=victim.model, inputs=victim.request(1)["inputs"], request_id="no-start",
                         sequence_id=424242),
        "wrong-shape": dict(model_name=victim.model, inputs=[wrong_shape], request_id="wrong-shape",
                            sequence_id=victim.sequence_id),
        "unknown-model": dict(model_name="no_such_model", inputs=victim.request(1)["inputs"],
                              request_id="unknown-model", sequence_id=7, sequence_start=True),
    }
    for i, (s, k) in enumerate(sends):
        client.async_stream_infer(**s.request(k))
        if i == len(sequences):  # every sequence has started; the victim is mid-sequence
            for kwargs in bad.values():
                client.async_stream_infer(**kwargs)
    arrived = answers.take(len(sends) + len(bad))
    client.stop_stream()
    errors = [str(error) for _, error in arrived if error is not None]
    assert len(errors) == len(bad)
    (no_start,) = [e for e in errors if "'no-start'" in e]
    assert "NOT_FOUND" in no_start and "START" in no_start
    assert any("'wrong-shape'" in e and "INVALID_ARGUMENT" in e for e in errors)
    assert any("'unknown-model'" in e and "NOT_FOUND" in e for e in errors)
    results = sorted((r for r, _ in arrived if r is not None), key=lambda r: int(r.get_response().id.split(":")[1]))
    by_id = {str(s.sequence_id): s for s in sequences}
    for result in results:
        by_id[result.get_response().id.rsplit(":", 1)[0]].outputs.append(first_output(result))
    assert_parity(sequences, reference)  # the victim's state was untouched by its rejected chunk


def test_unary_sequence_errors_and_lifecycle(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    (s,) = make_sequences(reference, ["vowels_lstm"], 1, seed=6)
    first = s.request(0)
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer(**{**first, "sequence_start": False})
    assert caught.value.status() == "StatusCode.NOT_FOUND" and "START" in caught.value.message()
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer(**{**first, "model_name": "vowels_bigru"})
    assert caught.value.status() == "StatusCode.FAILED_PRECONDITION"

    client.infer(**first)
    client.infer(**s.request(1))
    assert server.active_sessions("vowels_lstm") == 1
    # START again restarts the sequence from the initial state
    s.outputs = [first_output(client.infer(**s.request(k))) for k in range(len(s.chunks) - 1)]
    client.infer(**{**s.request(0), "sequence_start": True, "sequence_end": True})  # a one-shot sequence: ended
    assert server.active_sessions("vowels_lstm") == 0
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer(**s.request(len(s.chunks) - 1))
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    want = reference.run("vowels_lstm", np.concatenate(s.chunks[:-1]))["logits"]
    np.testing.assert_allclose(np.concatenate(s.outputs), want, atol=TOLERANCE, rtol=0)


def test_idle_eviction_ends_the_sequence(start_server: Callable[..., RunningServer], reference: Reference) -> None:
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    (s,) = make_sequences(reference, ["vowels_gru"], 1, seed=7)
    client.infer(**s.request(0))
    model = server.registry.get("vowels_gru")

    async def evict_everything_idle() -> int:
        return model.evict_idle(float("inf"))

    assert server.call(evict_everything_idle()) == 1
    assert server.active_sessions("vowels_gru") == 0
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer(**s.request(1))
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_native_stream_and_triton_sequence_on_one_model_at_once(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = start_server()
    triton_client = triton.InferenceServerClient(server.target)
    native, tri = make_sequences(reference, ["vowels_lstm"], 2, seed=8)
    with Client(server.target) as client, client.stream("vowels_lstm") as stream:
        for k in range(max(len(native.chunks), len(tri.chunks))):
            if k < len(native.chunks):
                native.outputs.append(stream.send(native.chunks[k])["logits"])
            if k < len(tri.chunks):
                tri.outputs.append(first_output(triton_client.infer(**tri.request(k))))
    assert_parity([native, tri], reference)


def test_stream_reuses_an_id_right_after_end(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    """Sent without waiting: A's chunks, A's END, then a new sequence B on the same id starting at once."""
    client = triton.InferenceServerClient(start_server().target)
    first, second = make_sequences(reference, ["vowels_lstm"], 2, seed=9)
    second.sequence_id = first.sequence_id
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    sends = [(s, k) for s in (first, second) for k in range(len(s.chunks))]
    for s, k in sends:
        client.async_stream_infer(**{**s.request(k), "request_id": f"{id(s)}:{k}"})
    arrived = answers.take(len(sends))
    client.stop_stream()
    by_key = {str(id(first)): first, str(id(second)): second}
    for result, error in arrived:
        assert error is None, error
        assert result is not None
        by_key[result.get_response().id.split(":")[0]].outputs.append(first_output(result))
    assert_parity([first, second], reference)


def test_a_sequence_outlives_its_stream(start_server: Callable[..., RunningServer], reference: Reference) -> None:
    """Streamed chunks, the stream cancelled, then the sequence finished with unary calls: still one sequence."""
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    (s,) = make_sequences(reference, ["vowels_lstm"], 1, seed=10)
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    for k in range(len(s.chunks) - 1):
        client.async_stream_infer(**s.request(k))
    s.outputs = [first_output(result) for result, _ in answers.take(len(s.chunks) - 1)]
    client.stop_stream(cancel_requests=True)
    s.outputs.append(first_output(client.infer(**s.request(len(s.chunks) - 1))))
    assert_parity([s], reference)
    assert server.active_sessions("vowels_lstm") == 0


def test_a_stream_still_open_at_shutdown_is_ended_by_the_server_with_unavailable(
    start_server: Callable[..., RunningServer], reference: Reference, streamable: list[str]
) -> None:
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    (sequence,) = make_sequences(reference, streamable[:1], 1, seed=8)
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    client.async_stream_infer(**{**sequence.request(0), "sequence_end": False})  # the sequence stays open
    ((_, error),) = answers.take(1)
    assert error is None, error
    server.stop(grace=0.0)  # the grace is used up at once: the open sequence's stream is cut
    ((result, error),) = answers.take(1)
    assert result is None and isinstance(error, triton.InferenceServerException)
    assert error.status() == "StatusCode.UNAVAILABLE" and "shutting down" in (error.message() or ""), error
    client.stop_stream()


def test_a_shutdown_answers_every_request_of_the_sequences_it_lets_finish(
    start_server: Callable[..., RunningServer], reference: Reference, streamable: list[str]
) -> None:
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    sequences = make_sequences(reference, streamable, 4, seed=9)
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    for s in sequences:  # every sequence is open (its START answered) before the shutdown starts
        client.async_stream_infer(**{**s.request(0), "sequence_end": len(s.chunks) == 1})
    starts = answers.take(len(sequences))
    rest = [(s, k) for s in sequences for k in range(1, len(s.chunks))]
    for s, k in rest:  # pipelined: most are still in flight when the drain begins
        client.async_stream_infer(**s.request(k))
    server.stop(grace=60.0)  # open sequences may finish; the stream is ended once their sessions have
    arrived = starts + answers.take(len(rest))
    assert [error for _, error in arrived] == [None] * len(arrived)
    for result, _ in arrived:
        key, k = result.get_response().id.rsplit(":", 1)  # type: ignore[union-attr]
        next(s for s in sequences if str(s.sequence_id) == key).outputs.append(first_output(result))  # type: ignore[arg-type]
    assert_parity(sequences, reference)
    ((result, error),) = answers.take(1)
    assert result is None and "shutting down" in str(error), error
    client.stop_stream()


def test_sequences_multiplexed_on_one_stream_batch_together(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    """16 sequences on one `ModelStreamInfer` stream, each sending its next chunk once answered (closed loop, as a
    voice agent multiplexing its calls does): their steps meet in the model's batches, and every output is exact."""
    model = "vowels_lstm"
    client = triton.InferenceServerClient(start_server().target)
    sequences = make_sequences(reference, [model], 16, seed=8)
    for s in sequences:  # equal chunk lengths: steps batch only with steps of their own length
        s.chunks[:] = [s.x[i:i + 4] for i in range(0, len(s.x), 4)]
    by_id = {str(s.sequence_id): s for s in sequences}
    before = client.get_inference_statistics(model).model_stats[0]
    answers = StreamAnswers()
    client.start_stream(callback=answers)
    for s in sequences:
        client.async_stream_infer(**s.request(0))
    pending = len(sequences)
    while pending:
        ((result, error),) = answers.take(1)
        assert error is None and result is not None, error
        key, k = result.get_response().id.rsplit(":", 1)
        s = by_id[key]
        s.outputs.append(first_output(result))
        if int(k) + 1 < len(s.chunks):
            client.async_stream_infer(**s.request(int(k) + 1))
        else:
            pending -= 1
    client.stop_stream()
    assert_parity(sequences, reference)
    after = client.get_inference_statistics(model).model_stats[0]
    steps = after.inference_count - before.inference_count
    runs = after.execution_count - before.execution_count
    assert steps == sum(len(s.chunks) for s in sequences)
    assert steps / runs > 1  # steps of different sequences shared model runs
