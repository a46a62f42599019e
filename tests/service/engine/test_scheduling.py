"""The batcher's scheduling rules on real graphs and a real executor: a long run never blocks the event loop (other
models' steps are answered while it runs), natural batching, and per-session order with several runs in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from modelrepo import StatePair, latest_versions
from service.engine.batching import Batcher
from service.engine.metrics import Metrics
from service.engine.runtime import Runtime
from service.engine.state.pool import StatePool
from service.engine.tuning import AUTO, InlinePolicy
from tests.service.engine.test_batching import Owner
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, reference, sequence

SLOW_TRIPS = 20_000.0  # ~0.4 s of 64x64 matmuls: far longer than answering a few steps of another model
STATE = [StatePair(input="h0", output="hn", shape=[1])]


def slow_graph() -> onnx.ModelProto:
    """input (B, T, 1), h0 (B, 1) -> out = input, hn = h0 + input summed over time; on the side a `Loop` of
    round(max(input)) 64x64 matmuls whose result is multiplied by 0: how long a run takes is up to its input."""
    w = h.make_tensor("w", T.FLOAT, [64, 64], (np.eye(64, dtype=np.float32) * 0.5).ravel().tolist())
    v0 = h.make_tensor("v0", T.FLOAT, [64, 64], np.ones(64 * 64, np.float32).tolist())
    body = h.make_graph(
        [h.make_node("MatMul", ["v_in", "w"], ["v_out"]), h.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("v_in", T.FLOAT, [64, 64])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [64, 64])],
    )
    nodes = [
        h.make_node("ReduceMax", ["input"], ["top"], keepdims=0),
        h.make_node("Cast", ["top"], ["trips"], to=T.INT64),
        h.make_node("Constant", [], ["true"], value=h.make_tensor("t", T.BOOL, [], [True])),
        h.make_node("Loop", ["trips", "true", "v0"], ["v"], body=body),
        h.make_node("ReduceSum", ["v"], ["v_sum"], keepdims=0),
        h.make_node("Mul", ["v_sum", "zero"], ["nothing"]),
        h.make_node("ReduceSum", ["input", "axis1"], ["summed"], keepdims=0),
        h.make_node("Add", ["h0", "summed"], ["partial"]),
        h.make_node("Add", ["partial", "nothing"], ["hn"]),
        h.make_node("Identity", ["input"], ["out"]),
    ]
    graph = h.make_graph(
        nodes, "slow",
        [h.make_tensor_value_info("input", T.FLOAT, ["B", "T", 1]), h.make_tensor_value_info("h0", T.FLOAT, ["B", 1])],
        [h.make_tensor_value_info("out", T.FLOAT, ["B", "T", 1]), h.make_tensor_value_info("hn", T.FLOAT, ["B", 1])],
        [w, v0, h.make_tensor("zero", T.FLOAT, [], [0.0]), h.make_tensor("axis1", T.INT64, [1], [1])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def slow_batcher(
    path: Path, executor: ThreadPoolExecutor, inline: InlinePolicy, **kw: int
) -> tuple[Batcher, StatePool]:
    onnx.save(slow_graph(), path)
    runtime = Runtime(path, "cpu", 1, "slow", {"h0": "hn"})
    pool = StatePool(STATE, max_slots=64, initial_capacity=4)
    batcher = Batcher(runtime, "input", pool, executor, Metrics().for_model("slow"), kw.get("max_batch_size", 64),
                      500, 256, inline, max_runs=kw.get("max_runs", 1))
    batcher.start()
    return batcher, pool


def shipped_batcher(executor: ThreadPoolExecutor, inline_run_max_us: int = 0, max_batch_size: int = 64,
                    max_runs: int = 1) -> tuple[Batcher, StatePool]:
    name = STREAMABLE[0]
    m = MANIFESTS[name]
    runtime = Runtime(latest_versions(SHIPPED)[name].model_path, "cpu", 1, name, {p.input: p.output for p in m.state})
    pool = StatePool(m.state, max_slots=64, initial_capacity=2)
    batcher = Batcher(runtime, m.input.name, pool, executor, Metrics().for_model(name), max_batch_size, 500, 256,
                      InlinePolicy(inline_run_max_us), max_runs=max_runs)
    batcher.start()
    return batcher, pool


async def test_a_long_run_never_blocks_the_loop(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    """The slow model's cost is measured (fed: 1 ms per row-step, ten times one message), so its batch goes to a
    worker thread; while it runs, another model's steps are queued, run and answered on the same loop."""
    slow, slow_pool = slow_batcher(tmp_path / "slow.onnx", executor, InlinePolicy(AUTO, ns_per_step=1e6))
    fast, fast_pool = shipped_batcher(executor, inline_run_max_us=10**9)  # the other model: always inline
    try:
        (long,) = slow.enqueue([(np.full((3, 1), SLOW_TRIPS, np.float32), Owner(0, slow_pool.alloc(0.0)), None)])
        owner = Owner(1, fast_pool.alloc(0.0))
        x = sequence(MANIFESTS[STREAMABLE[0]], 1, 12)[0]
        answers = []
        for start in range(0, 12, 3):  # four steps one after the other, each awaited: a stream's closed loop
            (step,) = fast.enqueue([(x[start:start + 3], owner, None)])
            answers.append((await step)[0])
        assert not long.done()  # every answer came while the long run was still in flight
        outputs, _ = await long
        np.testing.assert_array_equal(outputs["out"][:, 0], SLOW_TRIPS)
        out = MANIFESTS[STREAMABLE[0]].outputs[0].name
        whole = reference(STREAMABLE[0], x[np.newaxis])[out][0]
        np.testing.assert_allclose(np.concatenate([a[out] for a in answers]), whole, atol=1e-5)
    finally:
        await slow.close()
        await fast.close()


async def test_busy_batching_takes_what_queued_during_the_run(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    """Steps that arrive while a run is in flight form the next batch together, with no queue delay."""
    slow, pool = slow_batcher(tmp_path / "slow.onnx", executor, InlinePolicy(0))
    try:
        (first,) = slow.enqueue([(np.full((2, 1), SLOW_TRIPS / 4, np.float32), Owner(0, pool.alloc(0.0)), None)])
        await asyncio.sleep(0)  # the batcher takes the first step (a yield to the loop, not a wait for time)
        rest = slow.enqueue([(np.ones((2, 1), np.float32), Owner(i, pool.alloc(0.0)), None) for i in range(1, 6)])
        assert not first.done()
        await asyncio.gather(first, *rest)
        sizes = {b.batch_size: b.count for b in slow._metrics.snapshot().batches}
        assert sizes == {1: 1, 5: 1}
    finally:
        await slow.close()


@pytest.mark.parametrize("max_runs", [1, 2])
async def test_session_order_holds_with_several_runs_in_flight(executor: ThreadPoolExecutor, max_runs: int) -> None:
    """Eight sessions queue three chunks each at once; batches of at most 2, up to `max_runs` in flight: every
    session's chunks still run one at a time, in order (chunked == one whole-sequence run)."""
    batcher, pool = shipped_batcher(executor, max_batch_size=2, max_runs=max_runs)
    name = STREAMABLE[0]
    out = MANIFESTS[name].outputs[0].name
    try:
        owners = [Owner(i, pool.alloc(0.0)) for i in range(8)]
        xs = sequence(MANIFESTS[name], 8, 9, seed=3)
        rows = [(xs[i, c * 3:(c + 1) * 3], o, None) for c in range(3) for i, o in enumerate(owners)]
        results = await asyncio.gather(*batcher.enqueue(rows))
        whole = reference(name, xs)[out]
        for i in range(8):
            got = np.concatenate([results[c * 8 + i][0][out] for c in range(3)])
            np.testing.assert_allclose(got, whole[i], atol=1e-5)
        sizes = {b.batch_size: b.count for b in batcher._metrics.snapshot().batches}
        assert sizes == {2: 12}  # one step per session per batch, never two of one session in flight
    finally:
        await batcher.close()


async def test_the_next_run_starts_before_the_answers_of_the_last_go_out(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    """When a run ends, what queued meanwhile is already in the model's hands by the time the first caller of the
    finished batch hears back: the model does not wait for the transport to answer a batch (one run in flight)."""
    slow, pool = slow_batcher(tmp_path / "slow.onnx", executor, InlinePolicy(0))
    try:
        (first,) = slow.enqueue([(np.full((2, 1), SLOW_TRIPS / 4, np.float32), Owner(0, pool.alloc(0.0)), None)])
        await asyncio.sleep(0)  # the batcher takes the first step (a yield to the loop, not a wait for time)
        rest = slow.enqueue([(np.ones((2, 1), np.float32), Owner(i, pool.alloc(0.0)), None) for i in range(1, 4)])
        seen: list[int] = []
        first.add_done_callback(lambda _: seen.append(slow.queued))  # runs as the first batch is answered
        await asyncio.gather(first, *rest)
        assert seen == [0]  # the three steps had left the queue: their run had started
    finally:
        await slow.close()
