"""CPU per answered chunk: the server's (utime + stime of its process, from `/proc/PID/stat`) and the load
generator's own (this process, or its client processes), over the same load run.

A run is one `asyncio.run` of the load driver in this process (`processes == 1`), so the CPU and the answered
chunks (every answer, warm-up included, counted by the driver's progress counter) cover exactly the same span:
opening the streams is in it too, a few hundred messages against the tens of thousands of a run. With several
client processes the children's CPU comes from `RUSAGE_CHILDREN` once they are waited for, and the answered count
is the report's (measured) chunks scaled to the whole run.
"""

from __future__ import annotations

import asyncio
import os
import resource
from dataclasses import dataclass, replace
from pathlib import Path

from service.loadtest import LoadConfig, Report
from service.loadtest.report import build_report
from service.loadtest.runner import _no_wait, _run_processes, make_driver

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of process `pid` (every thread), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    return (int(fields[11]) + int(fields[12])) * TICK_S  # fields 14 and 15 of proc(5)


def own_cpu_s() -> float:
    """This process's CPU time and that of its terminated, waited-for children (client processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Count:
    def __init__(self) -> None:
        self.value = 0


@dataclass(frozen=True)
class Measured:
    report: Report
    answered: int  # every answer of the run, warm-up included
    server_cpu_s: float
    client_cpu_s: float

    def per_chunk_us(self, cpu_s: float) -> float:
        return cpu_s / self.answered * 1e6 if self.answered else 0.0

    @property
    def server_us(self) -> float:
        return self.per_chunk_us(self.server_cpu_s)

    @property
    def client_us(self) -> float:
        return self.per_chunk_us(self.client_cpu_s)


def measured_load(config: LoadConfig, server_pid: int) -> Measured:
    """Drive `config` (its `features` set) against the server process `server_pid`; CPU of both sides."""
    server0, client0 = process_cpu_s(server_pid), own_cpu_s()
    if config.processes > 1 and config.streams > 1:
        tally = _run_processes(config.split())
        answered = round(tally.chunks * (config.warmup_s + (config.duration_s or 0)) / (config.duration_s or 1))
    else:
        counter = _Count()
        tally = asyncio.run(make_driver(replace(config, progress=False), counter).run(_no_wait))
        answered = counter.value
    server1, client1 = process_cpu_s(server_pid), own_cpu_s()
    return Measured(build_report(config, tally), answered, server1 - server0, client1 - client0)
