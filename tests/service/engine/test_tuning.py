"""Self-tuning: the thread, spinning and inline decisions as functions of given costs, the live policies switching
when the measurements fed to them change, and the load-time tuning of the shipped models."""

from __future__ import annotations

import logging
import os

import pytest

from modelrepo import latest_versions
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.runtime import Runtime
from service.engine.tuning import (
    AUTO,
    PROBE_EVERY,
    InlinePolicy,
    LiveThreads,
    Tuning,
    choose_spinning,
    choose_threads,
    decide_inline,
    runs_in_flight,
    tune,
)
from service.settings import Settings
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, sequence

MS = 1_000_000
US = 1_000
MESSAGE = 100 * US  # serving one message


@pytest.mark.parametrize(
    ("costs", "chosen"),
    [
        ({1: 50 * US, 2: 20 * US}, 1),  # short runs go inline: no extra threads beside the loop, however fast
        ({1: 20 * MS, 2: 12 * MS}, 2),  # long runs (executor): 2 threads cut 40 %
        ({1: 20 * MS, 2: 18 * MS}, 1),  # 10 % is not worth a second core shared with the transport
        ({1: 20 * MS, 2: 12 * MS, 4: 8 * MS}, 4),
        ({1: 20 * MS, 2: 12 * MS, 4: 11 * MS}, 2),
        ({1: 20 * MS, 2: 25 * MS, 4: 15 * MS}, 4),  # each count is compared with the best so far
        ({1: 20 * MS}, 1),
    ],
)
def test_thread_choice_from_measured_costs(costs: dict[int, float], chosen: int) -> None:
    assert choose_threads(costs, MESSAGE) == chosen


@pytest.mark.parametrize(
    ("predicted", "message", "limit_us", "inline"),
    [
        (None, MESSAGE, AUTO, False),  # never measured: executor
        (50 * US, MESSAGE, AUTO, True),  # the run costs less than serving one message
        (1 * MS, MESSAGE, AUTO, False),  # longer runs overlap the transport (the old 5 ms prior ran these inline)
        (50 * US, 40 * US, AUTO, False),  # a cheap transport: executor
        (1 * US, MESSAGE, 0, False),  # overrides: 0 never inline
        (8 * MS, MESSAGE, 10_000, True),  # a fixed limit ignores the message cost
    ],
)
def test_inline_decision_from_run_and_message_costs(
    predicted: float | None, message: float, limit_us: int, inline: bool
) -> None:
    assert decide_inline(predicted, message, limit_us) is inline


@pytest.mark.parametrize(
    ("off", "on", "spinning"),
    [
        ((10 * MS, 10 * MS), (5 * MS, 9 * MS), True),  # twice as fast, no more CPU
        ((10 * MS, 10 * MS), (5 * MS, 11 * MS), False),  # twice as fast for 10 % more CPU: the loop's core pays
        ((10 * MS, 10 * MS), (9 * MS, 10 * MS), False),  # 10 % faster: not worth it
        ((1 * MS, 1 * MS), (0.5 * MS, 3 * MS), False),  # faster, but burns a core in the gap: steals the loop's
    ],
)
def test_spinning_from_measured_wall_and_cpu(off: tuple[int, int], on: tuple[int, int], spinning: bool) -> None:
    assert choose_spinning({False: off, True: on}) is spinning


def test_inline_policy_switches_when_its_measurements_change() -> None:
    policy = InlinePolicy(AUTO)
    assert not policy.inline(100)  # unmeasured
    policy.observe(100, run_ns=50 * US)  # 0.5 us per row-step: a 100-step batch costs 50 us < 100 us per message
    assert policy.inline(100) and not policy.inline(1000)  # a 500 us batch goes to the executor
    for _ in range(30):  # the model turns slow (the machine got busy): 5 us per row-step
        policy.observe(100, run_ns=500 * US)
    assert not policy.inline(100)
    for _ in range(30):  # and the transport turns expensive: 800 us of loop CPU per message
        policy.observe_loop(800 * US)
    assert policy.message_ns > 600 * US and policy.inline(100)
    for _ in range(30):  # a measured message cost is clamped: a quiet loop never sends every run inline
        policy.observe_loop(10**12)
    assert policy.message_ns <= 1_000 * US
    fixed = InlinePolicy(10**9, ns_per_step=1.0)
    assert all(fixed.inline(100) for _ in range(2 * PROBE_EVERY))  # an override follows no measurement


def test_live_threads_switch_when_their_measurements_change(caplog: pytest.LogCaptureFixture) -> None:
    name = STREAMABLE[0]
    live = LiveThreads({1: runtime(name, 1), 2: runtime(name, 2)}, chosen=1, label=name)
    picks = [live.pick(32) for _ in range(2 * PROBE_EVERY)]
    assert picks.count(2) == 2 and picks.count(1) == 2 * PROBE_EVERY - 2  # every PROBE_EVERY-th: the alternative
    with caplog.at_level(logging.INFO, logger="service.engine.tuning"):
        live.observe(1, 32, 320, run_ns=3200 * US)  # 10 us per row-step on 1 thread
        live.observe(2, 32, 320, run_ns=2900 * US)  # 2 threads cut 10 %: below MIN_GAIN, no change
        assert live.chosen(32) == 1 and live.changes == 0
        for _ in range(20):  # 2 threads now cut 50 % (the other work on the machine ended)
            live.observe(2, 32, 320, run_ns=1600 * US)
        assert live.chosen(32) == 2 and live.chosen(40) == 2 and live.changes == 1
        assert live.chosen(1) == 1  # another size class keeps its own choice
        for _ in range(5):  # still better: no further change, no further log line
            live.observe(2, 32, 320, run_ns=1600 * US)
        for _ in range(20):  # the second core is taken again: 2 threads cost as much as one
            live.observe(2, 32, 320, run_ns=3200 * US)
        assert live.chosen(32) == 1 and live.changes == 2
    changes = [r for r in caplog.records if "intra-op thread(s)" in r.getMessage()]
    assert len(changes) == 2  # each change logged once


def test_live_threads_do_not_flap_near_the_threshold() -> None:
    """More threads are taken for a MIN_GAIN cut and kept while they cut by KEEP_GAIN: measurements that wander
    around MIN_GAIN (noise on a shared machine) change nothing, a cut below KEEP_GAIN goes back to fewer."""
    name = STREAMABLE[0]
    live = LiveThreads({1: runtime(name, 1), 2: runtime(name, 2)}, chosen=2, label=name)
    live.observe(1, 32, 320, run_ns=3200 * US)  # 10 us per row-step on 1 thread
    for run_us in (2600, 2500, 2700, 2450, 2650) * 4:  # 2 threads cut 16-23 %: around MIN_GAIN, above KEEP_GAIN
        live.observe(2, 32, 320, run_ns=run_us * US)
    assert live.chosen(32) == 2 and live.changes == 0
    for _ in range(20):  # 2 threads now cut only 5 %
        live.observe(2, 32, 320, run_ns=3040 * US)
    assert live.chosen(32) == 1 and live.changes == 1
    for run_us in (2700, 2650, 2750) * 5:  # 14-17 %: not enough to take 2 threads again
        live.observe(2, 32, 320, run_ns=run_us * US)
    assert live.chosen(32) == 1 and live.changes == 1


def runtime(name: str, threads: int) -> Runtime:
    pairs = {p.input: p.output for p in MANIFESTS[name].state}
    return Runtime(latest_versions(SHIPPED)[name].model_path, "cpu", threads, name, pairs)


def test_tune_measures_thread_counts_only_when_asked_to() -> None:
    name = STREAMABLE[0]
    made: list[tuple[int, bool]] = []

    def make(threads: int, spinning: bool) -> Runtime:
        made.append((threads, spinning))
        return runtime(name, threads)

    given = runtime(name, 2)
    chosen, tuning = tune(MANIFESTS[name], given, make, 2, max_batch_size=8, inline_run_max_us=0)
    assert made == [(2, True)] and set(tuning.spin_costs_ns) == {False, True}  # only spinning is measured
    assert (chosen is given) is not tuning.spinning
    assert (tuning.intra_op_threads, tuning.threads_auto, set(tuning.run_costs_ns)) == (2, False, {2})
    assert tuning.batch == (8, 10) and not tuning.inline and tuning.runtimes == {}  # --inline-run-max-us 0
    made.clear()
    _, tuning = tune(MANIFESTS[name], runtime(name, 1), make, 0, max_batch_size=64, inline_run_max_us=AUTO)
    counts = [n for n in (2, 4) if n <= (os.cpu_count() or 1)]
    assert [n for n, spin in made if not spin] == counts
    assert set(tuning.run_costs_ns) == {1, *counts} == set(tuning.runtimes) and tuning.threads_auto


async def test_shipped_models_are_tuned_from_their_own_measurements(caplog: pytest.LogCaptureFixture) -> None:
    """Measured at load (no --intra-op-threads, no --inline-run-max-us), logged once each, and each decision is the
    one the decision rules give for the costs that were measured (the costs themselves depend on the machine's load,
    so the test asserts the rule, not an outcome)."""
    with caplog.at_level(logging.INFO, logger="service.engine.registry"):
        registry = await Registry.load(Settings(models=SHIPPED, device="cpu"), Metrics())  # the defaults: auto
    try:
        for status in registry.statuses():
            tuning = status.tuning
            assert tuning is not None and tuning.threads_auto
            assert 1 in tuning.run_costs_ns and len(tuning.run_costs_ns) >= min(2, os.cpu_count() or 1)
            assert tuning.intra_op_threads == choose_threads(tuning.run_costs_ns, tuning.message_ns)
            rows, steps = tuning.batch
            assert tuning.inline == decide_inline(tuning.ns_per_step * rows * steps, tuning.message_ns, AUTO)
            if tuning.spin_costs_ns:  # more than one core: spinning measured, kept only for a MIN_GAIN cut
                assert tuning.spinning == choose_spinning(tuning.spin_costs_ns)
            tuned = [r for r in caplog.records if r.getMessage().startswith(f"tuned {status.name} version")]
            said = f"{tuning.intra_op_threads} intra-op thread(s) (measured"
            assert len(tuned) == 1 and said in tuned[0].getMessage()
        model = registry.get(STREAMABLE[0])
        assert model.tuning == next(s.tuning for s in registry.statuses() if s.name == STREAMABLE[0])
        assert model.inline.ns_per_step is not None  # seeded at load: the first batch need not measure
        session = model.open_session()
        await session.step(sequence(model.manifest, 1, 3)[0])
        session.close()
    finally:
        await registry.close()


@pytest.mark.parametrize(("requested", "threads", "cores", "runs"),
                         [(0, 1, 2, 2), (0, 2, 2, 1), (0, 2, 4, 2), (0, 1, 1, 1), (3, 2, 2, 3)])
def test_runs_in_flight_where_the_cores_hold_them(requested: int, threads: int, cores: int, runs: int) -> None:
    tuning = Tuning(threads, True, {threads: 1}, (1, 1), AUTO, MESSAGE)
    assert runs_in_flight(requested, tuning, cores) == runs
