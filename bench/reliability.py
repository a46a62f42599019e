"""Whether a bench run can be judged: the echo ceiling measured at the start and at the end of the run must agree
within 15 %, and processes outside the bench must have left the machine alone (at most 15 % of its CPU time
during the run, from `/proc/stat` minus the bench's own CPU time and its waited-for children's).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

DRIFT_LIMIT = 0.15  # |end - start| / start of the echo ceiling
BUSY_LIMIT = 0.15  # share of the machine's CPU time (all cores) taken by processes outside the bench
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # /proc/stat cpu: user nice system (idle iowait) irq softirq steal


@dataclass(frozen=True)
class CpuSample:
    at: float  # time.monotonic()
    machine_busy_s: float  # non-idle CPU seconds of the whole machine since boot
    own_s: float  # CPU seconds of this process and its terminated, waited-for children
    load_average: float  # 1-minute load average


def sample() -> CpuSample:
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    with open("/proc/loadavg", encoding="ascii") as f:
        load = float(f.read().split()[0])
    t = os.times()
    busy = sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks)) / os.sysconf("SC_CLK_TCK")
    return CpuSample(time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system, load)


def others_share(before: CpuSample, after: CpuSample, cpus: int | None = None) -> float:
    """The share of the machine's CPU time between the samples used by processes outside this one's tree."""
    capacity = (after.at - before.at) * (cpus or os.cpu_count() or 1)
    others = (after.machine_busy_s - before.machine_busy_s) - (after.own_s - before.own_s)
    return max(0.0, others / capacity) if capacity > 0 else 0.0


@dataclass(frozen=True)
class Reliability:
    echo_start: float  # chunks/s
    echo_end: float
    others_cpu_share: float
    load_average: tuple[float, float]  # 1-minute, at start and end (informative: the bench's own load counts)
    reasons: list[str] = field(default_factory=list)

    @property
    def reliable(self) -> bool:
        return not self.reasons

    @property
    def drift(self) -> float:
        return abs(self.echo_end - self.echo_start) / self.echo_start if self.echo_start else 1.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "drift": self.drift, "reliable": self.reliable}

    def summary(self) -> str:
        reasons = "; ".join(self.reasons)
        verdict = "Run reliable." if self.reliable else f"Run UNRELIABLE, targets not judged: {reasons}."
        return (f"{verdict} Echo ceiling {self.echo_start:.0f} -> {self.echo_end:.0f} chunks/s (drift "
                f"{100 * self.drift:.0f} %, limit {100 * DRIFT_LIMIT:.0f} %); other processes used "
                f"{100 * self.others_cpu_share:.0f} % of the CPU (limit {100 * BUSY_LIMIT:.0f} %); load average "
                f"{self.load_average[0]:.1f} -> {self.load_average[1]:.1f}.")


def judge(echo_start: float, echo_end: float, others_cpu_share: float,
          load_average: tuple[float, float] = (0.0, 0.0)) -> Reliability:
    reasons = []
    drift = abs(echo_end - echo_start) / echo_start if echo_start else 1.0
    if drift > DRIFT_LIMIT:
        reasons.append(f"the echo ceiling drifted {100 * drift:.0f} % between start and end")
    if others_cpu_share > BUSY_LIMIT:
        reasons.append(f"the machine was busy: other processes used {100 * others_cpu_share:.0f} % of its CPU")
    return Reliability(echo_start, echo_end, others_cpu_share, load_average, reasons)
