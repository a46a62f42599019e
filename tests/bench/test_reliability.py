"""The bench's reliability judgement and its target lines, from given numbers (nothing is timed)."""

from __future__ import annotations

import pytest

from bench import targets
from bench.models import REFERENCE
from bench.plan import BASELINE, ECHO, NATIVE, TRITON, TRITON_MUX, Run
from bench.reliability import CpuSample, judge, others_share, sample
from bench.render import markdown


def test_steady_echo_on_a_quiet_machine_is_reliable() -> None:
    verdict = judge(5000.0, 4500.0, 0.05)
    assert verdict.reliable and verdict.reasons == []
    assert verdict.drift == pytest.approx(0.10)


@pytest.mark.parametrize(("end", "others", "why"), [(4000.0, 0.0, "drifted 20 %"), (5000.0, 0.30, "busy"),
                                                     (6000.0, 0.0, "drifted 20 %")])
def test_drift_over_15_percent_or_a_busy_machine_is_unreliable(end: float, others: float, why: str) -> None:
    verdict = judge(5000.0, end, others)
    assert not verdict.reliable
    assert why in " ".join(verdict.reasons)
    assert "UNRELIABLE" in verdict.summary()


def test_others_share_is_machine_time_less_our_own() -> None:
    before = CpuSample(at=10.0, machine_busy_s=100.0, own_s=20.0, load_average=1.0)
    after = CpuSample(at=20.0, machine_busy_s=115.0, own_s=31.0, load_average=2.0)  # 15 s busy, 11 s ours
    assert others_share(before, after, cpus=2) == pytest.approx(4.0 / 20.0)
    assert others_share(before, before, cpus=2) == 0.0
    now = sample()
    assert now.machine_busy_s > 0 and now.own_s >= 0


def run(path: str, model: str, streams: int, chunks_per_s: float, p50: float = 1.0, p99: float = 10.0,
        mean_batch: float = 0.0) -> Run:
    report = {"throughput_chunks_per_s": chunks_per_s, "p50_ms": p50, "p99_ms": p99, "chunk": 10, "errors": {}}
    return Run(path, model, streams, report, mean_batch=mean_batch, batched_run_ms=2.0)


RUNS = [run(ECHO, REFERENCE, 64, 6000.0, p99=20.0), run(BASELINE, REFERENCE, 64, 900.0),
        run(NATIVE, REFERENCE, 64, 3000.0, p99=43.0, mean_batch=40.0),
        run(TRITON, REFERENCE, 64, 2000.0, p99=30.0, mean_batch=30.0),
        run(TRITON_MUX, REFERENCE, 64, 1500.0, mean_batch=33.0)]


def test_targets_from_given_numbers() -> None:
    by_text = {c.text.split(" (")[0]: c for c in targets.checks(RUNS)}
    assert by_text[f"{REFERENCE} x64, native Stream / baseline chunks/s"].holds  # 3.33 >= 3
    assert not by_text[f"{REFERENCE} x64, Triton ModelStreamInfer / baseline chunks/s"].holds  # 2.22
    assert by_text[f"{REFERENCE} x64, native Stream / echo chunks/s"].holds  # 0.5
    assert not by_text[f"{REFERENCE} x64, native Stream p99 ms"].holds  # 43 > 2 x 20 + 2
    assert by_text[f"{REFERENCE} x64, Triton ModelStreamInfer p99 ms"].holds
    assert by_text[f"{REFERENCE} x64, Triton multiplexed mean batch"].holds  # 33 >= 0.8 x 40
    assert len(by_text) == 7  # the vowels_lstm checks need its runs


def test_an_unreliable_run_judges_nothing() -> None:
    text = markdown(RUNS, [], "t", judge(6000.0, 3000.0, 0.0))
    assert "UNRELIABLE" in text
    assert "HOLDS" not in text and "MISSED" not in text
    assert text.count("NOT JUDGED") == 7
    assert "MISSED" in markdown(RUNS, [], "t", judge(6000.0, 6000.0, 0.0))
