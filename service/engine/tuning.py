"""Self-tuning of one model from measured costs: intra-op threads at load, inline-versus-executor per batch.

Two costs decide (the flags `--intra-op-threads` and `--inline-run-max-us` override them):

- the **run cost** of a batch: measured at load on a full batch (`max_batch_size` rows, capped at 64, of
  `TUNE_STEPS` steps), then a moving average of the model's measured run time per row and step while serving;
- the **hop cost** of the executor: what a run handed to the worker thread costs beyond the run itself (waking the
  worker, and the GIL hand-offs between it and a busy event loop thread, each bounded by the interpreter's switch
  interval). Its prior is one switch interval (5 ms by default), the hop a busy server sees; while serving it is
  a moving average of the measured hops (every `PROBE_EVERY`-th batch of an inline model goes through the executor
  to keep measuring it).

A batch runs inline on the event loop when its predicted run cost is at most the hop cost (the hop would cost
more than the run blocks the loop); a longer one goes to the executor, so that its run overlaps the transport.
More intra-op threads are chosen only for a model whose runs go to the executor (an inline run shares the loop's
core) and only when each step up cuts the measured run cost by at least `MIN_GAIN` (the cores are shared with the
gRPC transport). On CUDA the threads do not matter: 1.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from modelrepo import Manifest
from service.engine.inputs import zero_inputs
from service.engine.runtime import CUDA, Runtime, StateValue

THREAD_CHOICES = (1, 2, 4)
MIN_GAIN = 0.2  # a thread count is taken only when it cuts the run cost by at least this share
TUNE_STEPS = 10  # steps per row of the measured batch (a typical streaming chunk)
TUNE_ROWS_MAX = 64
TUNE_REPEATS = 3  # the minimum of these runs is the cost (interleaved across thread counts)
PROBE_EVERY = 32
SMOOTHING = 0.2  # weight of a new measurement in the moving averages
AUTO = -1  # `inline_run_max_us` meaning "decide from the measured costs"


def prior_hop_ns() -> float:
    return sys.getswitchinterval() * 1e9


def choose_threads(costs_ns: Mapping[int, float], hop_ns: float) -> int:
    """The thread count to use, given the measured batch run cost per thread count (1 must be measured)."""
    best = 1
    if costs_ns[1] <= hop_ns:  # its runs will go inline: more threads would compete with the loop for the cores
        return best
    for threads in sorted(costs_ns):
        if threads > best and costs_ns[threads] <= (1 - MIN_GAIN) * costs_ns[best]:
            best = threads
    return best


def decide_inline(predicted_ns: float | None, hop_ns: float, limit_us: int) -> bool:
    """Whether a batch of predicted run cost runs on the loop: `limit_us` AUTO compares with the hop cost."""
    if predicted_ns is None:
        return False  # never measured: the executor (and measure it)
    return predicted_ns <= (hop_ns if limit_us == AUTO else limit_us * 1000)


@dataclass(frozen=True)
class Tuning:
    """What was decided for one model at load, and from what (shown in the start log and `ModelStatus`)."""

    intra_op_threads: int
    threads_auto: bool  # decided from `run_costs_ns` (False: set by --intra-op-threads, or CUDA)
    run_costs_ns: dict[int, int]  # a batch run at load, by thread count
    batch: tuple[int, int]  # (rows, steps) of that batch
    inline_run_max_us: int  # AUTO, or the --inline-run-max-us override
    hop_ns: float  # the executor hop cost assumed at start
    inline: bool = False  # the start decision for a full batch

    @property
    def ns_per_step(self) -> float:
        rows, steps = self.batch
        return self.run_costs_ns[self.intra_op_threads] / (rows * steps)

    def describe(self) -> str:
        costs = ", ".join(f"{n}: {ns / 1000:.0f} us" for n, ns in sorted(self.run_costs_ns.items()))
        how = "measured" if self.threads_auto else "set"
        limit = "auto" if self.inline_run_max_us == AUTO else f"{self.inline_run_max_us} us"
        return (
            f"{self.intra_op_threads} intra-op thread(s) ({how}; batch {self.batch[0]}x{self.batch[1]} by threads: "
            f"{costs}); full batches run {'inline' if self.inline else 'in the executor'} "
            f"(inline limit {limit}, executor hop {self.hop_ns / 1000:.0f} us)"
        )


def _run_cost_ns(manifest: Manifest, runtime: Runtime, rows: int) -> int:
    state: dict[str, StateValue] = {
        p.input: np.full((rows, *p.shape), p.initial, dtype=p.dtype) for p in manifest.state
    }
    start = time.perf_counter_ns()
    runtime.run(zero_inputs(manifest, rows, TUNE_STEPS), state)
    return time.perf_counter_ns() - start


def tune(
    manifest: Manifest,
    runtime: Runtime,
    make_runtime: Callable[[int], Runtime],
    requested_threads: int,
    max_batch_size: int,
    inline_run_max_us: int,
) -> tuple[Runtime, Tuning]:
    """The runtime to serve with (`runtime` has `requested_threads or 1` threads) and the decisions taken."""
    rows = min(max_batch_size, TUNE_ROWS_MAX)
    auto = requested_threads == 0 and runtime.provider != CUDA
    runtimes = {requested_threads or 1: runtime}
    if auto:
        cores = os.cpu_count() or 1
        runtimes.update((n, make_runtime(n)) for n in THREAD_CHOICES if 1 < n <= cores)
    costs: dict[int, int] = {}
    for _ in range(TUNE_REPEATS):
        for threads, rt in runtimes.items():
            cost = _run_cost_ns(manifest, rt, rows)
            costs[threads] = min(costs.get(threads, cost), cost)
    hop = prior_hop_ns()
    threads = choose_threads(costs, hop) if auto else next(iter(runtimes))
    tuning = Tuning(threads, auto, costs, (rows, TUNE_STEPS), inline_run_max_us, hop)
    inline = decide_inline(tuning.ns_per_step * rows * TUNE_STEPS, hop, inline_run_max_us)
    return runtimes[threads], Tuning(threads, auto, costs, (rows, TUNE_STEPS), inline_run_max_us, hop, inline)


class InlinePolicy:
    """The live inline-versus-executor decision of one batcher (event loop thread only)."""

    def __init__(self, limit_us: int, ns_per_step: float | None = None, hop_ns: float | None = None) -> None:
        self.limit_us = limit_us
        self.ns_per_step = ns_per_step
        self.hop_ns = prior_hop_ns() if hop_ns is None else hop_ns
        self._inline_runs = 0

    def inline(self, steps: int) -> bool:
        predicted = None if self.ns_per_step is None else self.ns_per_step * steps
        if not decide_inline(predicted, self.hop_ns, self.limit_us):
            return False
        self._inline_runs += 1
        return self.limit_us != AUTO or self._inline_runs % PROBE_EVERY != 0  # now and then: measure the hop

    def observe(self, steps: int, run_ns: int, hop_ns: int | None) -> None:
        """A finished run of `steps` row-steps; `hop_ns` when it went through the executor."""
        cost = run_ns / steps
        self.ns_per_step = cost if self.ns_per_step is None else _average(self.ns_per_step, cost)
        if hop_ns is not None:
            self.hop_ns = _average(self.hop_ns, max(hop_ns, 0))


def _average(old: float, new: float) -> float:
    return (1 - SMOOTHING) * old + SMOOTHING * new
