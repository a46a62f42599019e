"""How long a batch waits for company (`service/engine/company.py`), on given times: no clock, no model."""

from __future__ import annotations

from service.engine.company import EXTEND, Company

D = 500_000  # the queue delay, ns


def test_nobody_expected_means_no_wait() -> None:
    company = Company(D)
    assert company.deadline(oldest=0, now=0) is None
    company.served(1, now=0)
    company.arrived(1, now=10)
    assert company.deadline(oldest=10, now=10) is None  # the only expected session is back


def test_the_wait_lasts_the_delay_after_the_oldest_step_while_someone_is_expected() -> None:
    company = Company(D)
    company.served(1, now=0)
    company.served(2, now=0)
    company.arrived(1, now=100)
    assert company.deadline(oldest=100, now=100) == 100 + D


def test_each_arrival_extends_the_wait_up_to_the_cap() -> None:
    """Sequences multiplexed on one stream come back one by one: keep waiting while they keep coming."""
    company = Company(D)
    for owner in range(64):
        company.served(owner, now=0)
    t = 1_000
    company.arrived(0, now=t)
    oldest = t
    for owner in range(1, 30):  # one arrival every 0.4 delays
        t += 2 * D // 5
        company.arrived(owner, now=t)
        assert company.deadline(oldest, now=t) == min(t + D, oldest + EXTEND * D)
    assert company.deadline(oldest, now=t) == oldest + EXTEND * D  # capped


def test_sessions_that_went_quiet_are_no_longer_waited_for() -> None:
    company = Company(D)
    company.served(1, now=0)
    company.served(2, now=0)
    company.arrived(1, now=D)  # turnaround D: the horizon stays at its floor, EXTEND delays
    horizon = EXTEND * D
    assert company.deadline(oldest=horizon - 1, now=horizon - 1) is not None  # 2 may still come
    assert company.deadline(oldest=horizon + 1, now=horizon + 1) is None  # 2 went quiet
    assert len(company) == 0


def test_the_horizon_follows_a_long_measured_turnaround() -> None:
    company = Company(D)
    turnaround = 40 * D  # e.g. 64 sequences in flight on one stream
    for owner in range(3):
        company.served(owner, now=0)
        company.arrived(owner, now=turnaround)
        company.served(owner, now=turnaround)
    assert company.horizon_ns == 2 * turnaround
    assert company.deadline(oldest=turnaround * 2, now=turnaround * 2) is not None  # still expected


def test_forget_says_whether_the_session_was_expected() -> None:
    company = Company(D)
    company.served(7, now=0)
    assert company.forget(7) and not company.forget(7)
