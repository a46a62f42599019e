"""Issue 9's targets, computed from one run's measurements (chunk 10, the client on the same cores):

- reference LSTM 2x256, 64 streams: native and Triton each >= 3x the hand-written baseline and >= 0.5x the echo
  ceiling; p99 <= 2x the echo's p99 plus one batched run (in-process, at the mean batch the server formed);
- vowels_lstm, 64 streams: native and Triton >= 0.75x the echo ceiling;
- vowels_lstm, 1 stream: p50 <= 1.1x the baseline's p50 on both paths;
- Triton multiplexed (all sequences on one stream): mean batch >= 0.8x the native mean batch, at 64 streams.

A run that is not reliable (bench/reliability.py) prints every check as NOT JUDGED, with its numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.models import REFERENCE, SHIPPED
from bench.plan import BASELINE, ECHO, NATIVE, TRITON, TRITON_MUX, Run, find

STREAMS = 64
SMALL = SHIPPED[0]
PATH_NAMES = {NATIVE: "native Stream", TRITON: "Triton ModelStreamInfer"}


@dataclass(frozen=True)
class Check:
    text: str
    value: float
    limit: float
    at_most: bool = False  # value <= limit holds (else value >= limit)

    @property
    def holds(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self, reliable: bool) -> str:
        verdict = ("HOLDS" if self.holds else "MISSED") if reliable else "NOT JUDGED (unreliable run)"
        return f"- {verdict}: {self.text}: {self.value:.2f} vs {'<=' if self.at_most else '>='} {self.limit:.2f}"

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "holds": self.holds}


def _ratio(a: Run, b: Run) -> float:
    return a.chunks_per_s / b.chunks_per_s if b.chunks_per_s else 0.0


def checks(runs: list[Run]) -> list[Check]:
    """Every target whose runs are in `runs` (a smaller grid checks fewer)."""
    out: list[Check] = []
    for path in (NATIVE, TRITON):
        name = PATH_NAMES[path]
        run, base, echo = (find(runs, p, REFERENCE, STREAMS) for p in (path, BASELINE, ECHO))
        if run and base:
            out.append(Check(f"{REFERENCE} x{STREAMS}, {name} / baseline chunks/s", _ratio(run, base), 3.0))
        if run and echo:
            out.append(Check(f"{REFERENCE} x{STREAMS}, {name} / echo chunks/s", _ratio(run, echo), 0.5))
            bound = 2 * echo.num("p99_ms") + run.batched_run_ms
            out.append(Check(f"{REFERENCE} x{STREAMS}, {name} p99 ms (bound: 2 x echo p99 {echo.num('p99_ms'):.2f} "
                             f"+ one batched run {run.batched_run_ms:.2f})", run.num("p99_ms"), bound, at_most=True))
    for path in (NATIVE, TRITON):
        run, echo = find(runs, path, SMALL, STREAMS), find(runs, ECHO, SMALL, STREAMS)
        if run and echo:
            out.append(Check(f"{SMALL} x{STREAMS}, {PATH_NAMES[path]} / echo chunks/s", _ratio(run, echo), 0.75))
    for path in (NATIVE, TRITON):
        run, base = find(runs, path, SMALL, 1), find(runs, BASELINE, SMALL, 1)
        if run and base:
            out.append(Check(f"{SMALL} x1, {PATH_NAMES[path]} p50 ms (bound: 1.1 x baseline p50 "
                             f"{base.num('p50_ms'):.2f})", run.num("p50_ms"), 1.1 * base.num("p50_ms"), at_most=True))
    for model in (SMALL, REFERENCE):
        mux, native = find(runs, TRITON_MUX, model, STREAMS), find(runs, NATIVE, model, STREAMS)
        if mux and native:
            out.append(Check(f"{model} x{STREAMS}, Triton multiplexed mean batch (bound: 0.8 x native mean batch "
                             f"{native.mean_batch:.1f})", mux.mean_batch, 0.8 * native.mean_batch))
    return out


def lines(runs: list[Run], reliable: bool) -> list[str]:
    found = checks(runs)
    if not found:
        return []
    return [f"Targets (issue 9; chunk {runs[0].report.get('chunk', 10)}, client on the same cores):", "",
            *(c.line(reliable) for c in found), ""]
