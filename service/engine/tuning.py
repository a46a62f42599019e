"""Self-tuning of one model from measured costs, at load and while serving (the flags override every decision;
docs/internals.md "Scheduling and self-tuning" has the rules and docs/performance.md their measurements).

- Inline or executor, per batch (`InlinePolicy`): inline only when the predicted run (moving average of run time
  per row-step, seeded at load) is below the measured cost of serving one message (the loop thread's CPU per
  message between batches, prior `MESSAGE_PRIOR_NS`); both costs are measured whichever way a batch ran.
- Intra-op threads: at load a full batch on 1, 2 and 4 threads (up to the cores), more only for a `MIN_GAIN` cut
  per step up and only for executor runs; while serving `LiveThreads` probes the alternative per batch-size class
  every `PROBE_EVERY`-th executor batch and re-decides: more threads for a `MIN_GAIN` cut, kept while they cut by
  `KEEP_GAIN` (a band, so measurements near the threshold do not flap), each change logged once.
- Spinning (`session.intra_op.allow_spinning`): on only when measured `MIN_GAIN` faster at no more process CPU,
  each run followed by a pause (`SPIN_GAP_S`) in which spinning threads burn the loop's core.
- Runs in flight (`runs_in_flight`): 2 where the cores hold two runs of the model's threads. On CUDA threads: 1.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from modelrepo import Manifest
from service.engine.inputs import zero_inputs
from service.engine.runtime import CUDA, Runtime, StateValue

log = logging.getLogger(__name__)
K = TypeVar("K")

THREAD_CHOICES = (1, 2, 4)
MIN_GAIN = 0.2  # more threads are taken only when they cut the run cost by at least this share
KEEP_GAIN = 0.1  # ... and kept while they cut it by at least this share (a band: no flapping near MIN_GAIN)
SPIN_GAP_S = 0.005  # the pause after each spinning-or-not run, in which spinning threads burn CPU
TUNE_STEPS = 10  # steps per row of the measured batch (a typical streaming chunk)
TUNE_ROWS_MAX = 64
TUNE_REPEATS = 3  # the minimum of these runs is the cost (interleaved across thread counts)
PROBE_EVERY = 64  # every n-th executor batch of a size class runs on the alternative thread count
SMOOTHING = 0.2  # weight of a new measurement in the moving averages
AUTO = -1  # `inline_run_max_us` meaning "decide from the measured costs"
MESSAGE_PRIOR_NS = 100_000.0  # serving one message on the loop, until measured
MESSAGE_MIN_NS, MESSAGE_MAX_NS = 20_000.0, 1_000_000.0  # the measured message cost is clamped to this range


def choose_threads(costs_ns: Mapping[int, float], message_ns: float) -> int:
    """The thread count to use, given the measured batch run cost per thread count (1 must be measured)."""
    best = 1
    if costs_ns[1] <= message_ns:  # its runs will go inline: more threads would compete with the loop for the cores
        return best
    for threads in sorted(costs_ns):
        if threads > best and costs_ns[threads] <= (1 - MIN_GAIN) * costs_ns[best]:
            best = threads
    return best


def decide_inline(predicted_ns: float | None, message_ns: float, limit_us: int) -> bool:
    """Whether a batch of predicted run cost runs on the loop: `limit_us` AUTO compares with one message's cost."""
    if predicted_ns is None:
        return False  # never measured: the executor (and measure it)
    return predicted_ns < message_ns if limit_us == AUTO else predicted_ns <= limit_us * 1000


@dataclass(frozen=True)
class Tuning:
    """What was decided for one model at load, and from what (shown in the start log and `ModelStatus`)."""

    intra_op_threads: int
    threads_auto: bool  # decided from `run_costs_ns` (False: set by --intra-op-threads, or CUDA)
    run_costs_ns: dict[int, int]  # a batch run at load, by thread count
    batch: tuple[int, int]  # (rows, steps) of that batch
    inline_run_max_us: int  # AUTO, or the --inline-run-max-us override
    message_ns: float  # the cost of serving one message assumed at start
    inline: bool = False  # the start decision for a full batch
    spinning: bool = False  # onnxruntime's allow_spinning for counts > 1 (measured when more than 1 thread is)
    spin_costs_ns: dict[bool, tuple[int, int]] = field(default_factory=dict)  # spinning on / off: (wall, CPU) ns
    runtimes: dict[int, Runtime] = field(default_factory=dict, compare=False, repr=False)  # by thread count

    @property
    def ns_per_step(self) -> float:
        rows, steps = self.batch
        return self.run_costs_ns[self.intra_op_threads] / (rows * steps)

    def describe(self) -> str:
        costs = ", ".join(f"{n}: {ns / 1000:.0f} us" for n, ns in sorted(self.run_costs_ns.items()))
        spin = ", ".join(f"{'on' if k else 'off'} {wall / 1000:.0f} us, CPU {cpu / 1000:.0f} us"
                         for k, (wall, cpu) in sorted(self.spin_costs_ns.items()))
        how = "measured" if self.threads_auto else "set"
        limit = "auto" if self.inline_run_max_us == AUTO else f"{self.inline_run_max_us} us"
        return (
            f"{self.intra_op_threads} intra-op thread(s) ({how}; batch {self.batch[0]}x{self.batch[1]} by threads: "
            f"{costs}); spinning {'on' if self.spinning else 'off'}{f' ({spin})' if spin else ''}; full batches "
            f"run {'inline' if self.inline else 'in the executor'} (inline limit {limit}, one message "
            f"{self.message_ns / 1000:.0f} us); re-decided while serving"
        )


def _run_cost_ns(manifest: Manifest, runtime: Runtime, rows: int) -> int:
    state: dict[str, StateValue] = {
        p.input: np.full((rows, *p.shape), p.initial, dtype=p.dtype) for p in manifest.state
    }
    start = time.perf_counter_ns()
    runtime.run(zero_inputs(manifest, rows, TUNE_STEPS), state)
    return time.perf_counter_ns() - start


def _min_costs(manifest: Manifest, runtimes: Mapping[K, Runtime], rows: int) -> dict[K, int]:
    costs: dict[K, int] = {}
    for _ in range(TUNE_REPEATS):
        for key, rt in runtimes.items():
            cost = _run_cost_ns(manifest, rt, rows)
            costs[key] = min(costs.get(key, cost), cost)
    return costs


def _spin_costs(manifest: Manifest, runtimes: Mapping[bool, Runtime], rows: int) -> dict[bool, tuple[int, int]]:
    """(min wall ns of a run, min process CPU ns of the run and the pause after it) with spinning off / on."""
    costs: dict[bool, tuple[int, int]] = {}
    for _ in range(TUNE_REPEATS):
        for spin, rt in runtimes.items():
            cpu = time.process_time_ns()
            wall = _run_cost_ns(manifest, rt, rows)
            time.sleep(SPIN_GAP_S)  # the gap between two runs while serving (a measurement, not a synchronisation)
            used = time.process_time_ns() - cpu
            old = costs.get(spin, (wall, used))
            costs[spin] = (min(old[0], wall), min(old[1], used))
    return costs


def choose_spinning(costs: Mapping[bool, tuple[int, int]]) -> bool:
    """Spinning only for a `MIN_GAIN` cut of the run at no more CPU (`(wall, cpu)` by off / on). A smaller gain
    measured at load did not hold while serving: short runs in quick succession keep spinning threads burning."""
    (wall_off, cpu_off), (wall_on, cpu_on) = costs[False], costs[True]
    return wall_on <= (1 - MIN_GAIN) * wall_off and cpu_on <= cpu_off


def tune(
    manifest: Manifest,
    runtime: Runtime,
    make_runtime: Callable[[int, bool], Runtime],
    requested_threads: int,
    max_batch_size: int,
    inline_run_max_us: int,
) -> tuple[Runtime, Tuning]:
    """The runtime to serve with (`runtime` has `requested_threads or 1` threads, no spinning) and the decisions."""
    rows = min(max_batch_size, TUNE_ROWS_MAX)
    auto = requested_threads == 0 and runtime.provider != CUDA
    runtimes = {requested_threads or 1: runtime}
    if auto:
        cores = os.cpu_count() or 1
        runtimes.update((n, make_runtime(n, False)) for n in THREAD_CHOICES if 1 < n <= cores)
    spin_costs: dict[bool, tuple[int, int]] = {}
    spinning = False
    pair = next((n for n in sorted(runtimes) if n > 1), None)
    if pair is not None and runtime.provider != CUDA:  # spinning: measured on the smallest count above 1
        spun = make_runtime(pair, True)
        spin_costs = _spin_costs(manifest, {False: runtimes[pair], True: spun}, rows)
        spinning = choose_spinning(spin_costs)
        if spinning:
            runtimes = {n: spun if n == pair else rt if n == 1 else make_runtime(n, True) for n, rt in runtimes.items()}
    costs = _min_costs(manifest, runtimes, rows)
    message = MESSAGE_PRIOR_NS
    threads = choose_threads(costs, message) if auto else next(iter(runtimes))
    tuning = Tuning(threads, auto, costs, (rows, TUNE_STEPS), inline_run_max_us, message, False, spinning, spin_costs)
    inline = decide_inline(tuning.ns_per_step * rows * TUNE_STEPS, message, inline_run_max_us)
    return runtimes[threads], Tuning(threads, auto, costs, (rows, TUNE_STEPS), inline_run_max_us, message, inline,
                                     spinning, spin_costs, runtimes if auto else {})


def _average(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new


class InlinePolicy:
    """The live inline-versus-executor decision of one batcher (event loop thread only)."""

    def __init__(self, limit_us: int, ns_per_step: float | None = None, message_ns: float | None = None) -> None:
        self.limit_us = limit_us
        self.ns_per_step = ns_per_step
        self.message_ns = MESSAGE_PRIOR_NS if message_ns is None else message_ns

    def inline(self, steps: int) -> bool:
        predicted = None if self.ns_per_step is None else self.ns_per_step * steps
        return decide_inline(predicted, self.message_ns, self.limit_us)

    def observe(self, steps: int, run_ns: int) -> None:
        """A finished run of `steps` row-steps on one thread (the cost an inline run would have)."""
        self.ns_per_step = _average(self.ns_per_step, run_ns / steps)

    def observe_loop(self, ns_per_message: float) -> None:
        """The loop thread's CPU per message served between two batches (inline runs not counted)."""
        clamped = min(max(ns_per_message, MESSAGE_MIN_NS), MESSAGE_MAX_NS)
        self.message_ns = _average(self.message_ns, clamped)


class LiveThreads:
    """The live intra-op thread count of one model's executor batches, per batch size class (event loop thread only).

    Costs per row-step differ with the batch size (a small batch parallelises worse), so every size class (the
    rows' bit length: 1, 2-3, 4-7, ... 64) keeps its own moving averages and its own choice, starting from the
    load-time choice: every `probe_every`-th batch of a class runs on its best alternative count.
    """

    def __init__(
        self, runtimes: Mapping[int, Runtime], chosen: int, label: str, probe_every: int = PROBE_EVERY
    ) -> None:
        self.runtimes = dict(runtimes)
        self.initial = chosen
        self.changes = 0
        self._chosen: dict[int, int] = {}  # size class -> threads
        self._costs: dict[tuple[int, int], float] = {}  # (size class, threads) -> ns per row-step
        self._batches: dict[int, int] = {}
        self._label = label
        self._probe_every = probe_every

    def chosen(self, rows: int) -> int:
        return self._chosen.get(rows.bit_length(), self.initial)

    def pick(self, rows: int) -> int:
        """The thread count for the next executor batch of `rows`: the chosen one, or now and then another."""
        size = rows.bit_length()
        chosen = self.chosen(rows)
        self._batches[size] = n = self._batches.get(size, 0) + 1
        others = [t for t in self.runtimes if t != chosen]
        if not others or n % self._probe_every:
            return chosen
        unmeasured = [t for t in others if (size, t) not in self._costs]
        return unmeasured[0] if unmeasured else min(others, key=lambda t: self._costs[(size, t)])

    def observe(self, threads: int, rows: int, steps: int, run_ns: int) -> None:
        """A finished executor run of `rows` on `threads`; re-decides that size class's count."""
        size = rows.bit_length()
        self._costs[(size, threads)] = _average(self._costs.get((size, threads)), run_ns / steps)
        best = self.chosen(rows)
        current = self._costs.get((size, best))
        if current is None:
            return
        for t in sorted(self.runtimes):
            cost = self._costs.get((size, t))
            if cost is None or t == best:
                continue
            # more threads must cut the run by MIN_GAIN to be taken, and keep cutting it by KEEP_GAIN to stay
            if (t > best and cost <= (1 - MIN_GAIN) * current) or (t < best and (1 - KEEP_GAIN) * cost < current):
                best, current = t, cost
        if best != self.chosen(rows):
            costs = ", ".join(f"{t}: {c:.0f} ns" for (k, t), c in sorted(self._costs.items()) if k == size)
            log.info("%s: executor batches of %d-%d rows now on %d intra-op thread(s) (per row-step: %s)",
                     self._label, 1 << (size - 1), (1 << size) - 1, best, costs)
            self._chosen[size] = best
            self.changes += 1


def runs_in_flight(requested: int, tuning: Tuning | None, cores: int | None = None) -> int:
    """`requested`, or (0) 2 runs where the cores hold two runs of the model's intra-op threads, else 1: measured
    side by side, 2 runs x 1 thread cost less server CPU per chunk than 1 x 2 or 1 x 1 (docs/performance.md)."""
    if requested:
        return requested
    threads = tuning.intra_op_threads if tuning is not None else 1
    return 2 if (cores or os.cpu_count() or 1) >= 2 * threads else 1
