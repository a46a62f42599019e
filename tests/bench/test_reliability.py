"""The bench's reliability judgement and its target lines, from given numbers (nothing is timed)."""

from __future__ import annotations

import pytest

from bench import targets
from bench.limits import aggregate, limits
from bench.models import REFERENCE, SUNSPOTS
from bench.plan import BASELINE, BATCHED, ECHO, NATIVE, TRITON, TRITON_MUX, Run
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


def run(path: str, model: str, streams: int, chunks_per_s: float, p50: float = 1.0, server_us: float = 100.0,
        mean_batch: float = 0.0, limit: float = 10_000.0) -> Run:
    report = {"throughput_chunks_per_s": chunks_per_s, "p50_ms": p50, "p99_ms": 10.0, "chunk": 10, "errors": {}}
    return Run(path, model, streams, report, mean_batch=mean_batch, server_cpu_us=server_us, limit_chunks_per_s=limit)


RUNS = [run(ECHO, REFERENCE, 64, 9000.0), run(BATCHED, REFERENCE, 64, 5000.0, server_us=200.0),
        run(NATIVE, REFERENCE, 64, 9000.0, server_us=150.0, mean_batch=40.0),
        run(TRITON, REFERENCE, 64, 4000.0, server_us=250.0, mean_batch=30.0),
        run(TRITON_MUX, REFERENCE, 64, 1500.0, mean_batch=33.0),
        run(BASELINE, SUNSPOTS, 1, 2000.0, p50=0.4), run(NATIVE, SUNSPOTS, 1, 1900.0, p50=0.43),
        run(TRITON, SUNSPOTS, 1, 1500.0, p50=0.5)]


def test_targets_from_given_numbers() -> None:
    by_text = {c.text.split(" (")[0]: c for c in targets.checks(RUNS)}
    native = by_text[f"{REFERENCE} x64, native Stream / minimal batched chunks/s"]
    assert native.holds and native.margin == pytest.approx(0.8)  # 1.8 >= 1.0
    triton = by_text[f"{REFERENCE} x64, Triton ModelStreamInfer / minimal batched chunks/s"]
    assert not triton.holds and triton.margin == pytest.approx(-0.2)  # 0.8 < 1.0
    assert "misses by 20 %" in triton.line(True)
    assert by_text[f"{REFERENCE} x64, native Stream server CPU us/chunk"].holds  # 150 <= 200
    assert not by_text[f"{REFERENCE} x64, Triton ModelStreamInfer server CPU us/chunk"].holds  # 250 > 200
    assert by_text[f"{REFERENCE} x64, native Stream / physical limit 10000 chunks/s"].holds  # 0.9 >= 0.85
    assert not by_text[f"{REFERENCE} x64, Triton ModelStreamInfer / physical limit 10000 chunks/s"].holds
    assert by_text[f"{SUNSPOTS} x1, native Stream p50 ms"].holds  # 0.43 <= 0.44
    assert not by_text[f"{SUNSPOTS} x1, Triton ModelStreamInfer p50 ms"].holds
    assert by_text[f"{REFERENCE} x64, Triton multiplexed mean batch"].holds  # 33 >= 0.8 x 40
    assert len(by_text) == 9


def test_an_unreliable_run_judges_nothing() -> None:
    text = markdown(RUNS, [], "t", judge(6000.0, 3000.0, 0.0))
    assert "UNRELIABLE" in text
    assert "HOLDS" not in text and "MISSED" not in text
    assert text.count("NOT JUDGED") == 9
    assert "MISSED" in markdown(RUNS, [], "t", judge(6000.0, 6000.0, 0.0))


def test_repeats_fold_into_medians_and_every_sample_is_kept() -> None:
    rows = aggregate([run(NATIVE, REFERENCE, 64, rate, server_us=us) for rate, us in ((100, 10), (300, 30), (200, 20))])
    assert len(rows) == 1
    assert rows[0].chunks_per_s == 200 and rows[0].server_cpu_us == 20
    assert rows[0].samples == [100, 300, 200]


def test_the_physical_limit_is_cores_over_the_cpu_per_chunk() -> None:
    class Timer:
        def cpu_us_per_chunk(self, sizes: dict[int, int]) -> float:
            assert sizes == {64: 1}
            return 50.0

    echo = Run(ECHO, REFERENCE, 64, {}, client_cpu_us=70.0, server_cpu_us=80.0)
    native = run(NATIVE, REFERENCE, 64, 1000.0, limit=0.0)
    found = limits([echo, native], {REFERENCE: Timer()}, cores=2)  # type: ignore[dict-item]
    assert found[0].chunks_per_s == pytest.approx(2e6 / 200.0)
    assert native.limit_chunks_per_s == pytest.approx(10_000.0)
