"""Self-tuning: the thread and inline decisions as pure functions of given costs, and on the shipped models."""

from __future__ import annotations

import logging
import os

import pytest

from modelrepo import latest_versions
from service.engine.metrics import Metrics
from service.engine.registry import Registry
from service.engine.runtime import Runtime
from service.engine.tuning import AUTO, PROBE_EVERY, InlinePolicy, choose_threads, decide_inline, tune
from service.settings import Settings
from tests.service.helpers import MANIFESTS, SHIPPED, STREAMABLE, sequence

MS = 1_000_000
HOP = 5 * MS


@pytest.mark.parametrize(
    ("costs", "chosen"),
    [
        ({1: 1 * MS, 2: 0.2 * MS}, 1),  # short runs go inline: no extra threads beside the loop, however fast
        ({1: 20 * MS, 2: 12 * MS}, 2),  # long runs (executor): 2 threads cut 40 %
        ({1: 20 * MS, 2: 18 * MS}, 1),  # 10 % is not worth a second core shared with the transport
        ({1: 20 * MS, 2: 12 * MS, 4: 8 * MS}, 4),
        ({1: 20 * MS, 2: 12 * MS, 4: 11 * MS}, 2),
        ({1: 20 * MS, 2: 25 * MS, 4: 15 * MS}, 4),  # each count is compared with the best so far
        ({1: 20 * MS}, 1),
    ],
)
def test_thread_choice_from_measured_costs(costs: dict[int, float], chosen: int) -> None:
    assert choose_threads(costs, HOP) == chosen


@pytest.mark.parametrize(
    ("predicted", "hop", "limit_us", "inline"),
    [
        (None, HOP, AUTO, False),  # never measured: executor
        (1 * MS, HOP, AUTO, True),  # the run costs less than the hop
        (8 * MS, HOP, AUTO, False),  # longer runs overlap the transport
        (1 * MS, 0.5 * MS, AUTO, False),  # a cheap hop (idle server): executor
        (1 * MS, HOP, 0, False),  # overrides: 0 never inline
        (8 * MS, HOP, 10_000, True),  # a fixed limit ignores the hop
    ],
)
def test_inline_decision_from_run_and_hop_costs(
    predicted: float | None, hop: float, limit_us: int, inline: bool
) -> None:
    assert decide_inline(predicted, hop, limit_us) is inline


def test_inline_policy_learns_from_measurements_and_probes_the_hop() -> None:
    policy = InlinePolicy(AUTO, hop_ns=HOP)
    assert not policy.inline(100)  # unmeasured
    policy.observe(100, run_ns=100_000, hop_ns=4 * MS)  # 1 us per row-step, a slow hop
    decisions = [policy.inline(100) for _ in range(2 * PROBE_EVERY)]
    assert decisions.count(False) == 2  # every PROBE_EVERY-th inline batch goes to the executor to measure the hop
    assert not policy.inline(10_000)  # a batch predicted at 10 ms: executor
    for _ in range(30):  # the hop turns cheap (an idle server): the measured average follows
        policy.observe(100, run_ns=100_000, hop_ns=20_000)
    assert policy.hop_ns < 100_000 and not policy.inline(100)
    fixed = InlinePolicy(10**9, ns_per_step=1.0)
    assert all(fixed.inline(100) for _ in range(2 * PROBE_EVERY))  # an override never probes


def runtime(name: str, threads: int) -> Runtime:
    pairs = {p.input: p.output for p in MANIFESTS[name].state}
    return Runtime(latest_versions(SHIPPED)[name].model_path, "cpu", threads, name, pairs)


def test_tune_measures_thread_counts_only_when_asked_to() -> None:
    name = STREAMABLE[0]
    made: list[int] = []

    def make(threads: int) -> Runtime:
        made.append(threads)
        return runtime(name, threads)

    given = runtime(name, 2)
    chosen, tuning = tune(MANIFESTS[name], given, make, 2, max_batch_size=8, inline_run_max_us=0)
    assert chosen is given and made == []
    assert (tuning.intra_op_threads, tuning.threads_auto, set(tuning.run_costs_ns)) == (2, False, {2})
    assert tuning.batch == (8, 10) and not tuning.inline  # --inline-run-max-us 0
    _, tuning = tune(MANIFESTS[name], runtime(name, 1), make, 0, max_batch_size=64, inline_run_max_us=AUTO)
    assert made == [n for n in (2, 4) if n <= (os.cpu_count() or 1)]
    assert set(tuning.run_costs_ns) == {1, *made} and tuning.threads_auto


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
            assert tuning.intra_op_threads == choose_threads(tuning.run_costs_ns, tuning.hop_ns)
            rows, steps = tuning.batch
            assert tuning.inline == decide_inline(tuning.ns_per_step * rows * steps, tuning.hop_ns, AUTO)
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
