"""Issue 22's targets, computed from one run's rows (medians of the repeats; chunk 10, the client on the same cores):

- 64 streams, the reference LSTM 2x256 and `forecast_sunspots`: each front (native, Triton) >= 1.0x the minimal
  batched server's chunks/s and >= 0.85x the physical limit; its server CPU per chunk <= the batched server's;
- 1 stream, `forecast_sunspots`: p50 <= 1.1x the hand-written unbatched server's p50, on both fronts;
- Triton multiplexed (all sequences on one stream), 64 streams: mean batch >= 0.8x the native mean batch;
- issue 24: at 64 streams the WebSocket front within 20 % of the native gRPC front's chunks/s (>= 0.8x), per model.

Every line says by how much it holds or misses. A run that is not reliable (bench/reliability.py) prints every
check as NOT JUDGED, with its numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.models import REFERENCE, SUNSPOTS
from bench.plan import BASELINE, BATCHED, NATIVE, TRITON, TRITON_MUX, WEBSOCKET, Run, find

STREAMS = 64
WEB_SHARE = 0.8  # the WebSocket front's chunks/s within 20 % of the native front's
FRONTS = {NATIVE: "native Stream", TRITON: "Triton ModelStreamInfer"}


@dataclass(frozen=True)
class Check:
    text: str
    value: float
    limit: float
    at_most: bool = False  # value <= limit holds (else value >= limit)

    @property
    def holds(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    @property
    def margin(self) -> float:
        """How far past the limit, as a share of it: > 0 holds by that much, < 0 misses by that much."""
        if not self.limit:
            return 0.0
        return (self.limit - self.value) / self.limit if self.at_most else (self.value - self.limit) / self.limit

    def line(self, reliable: bool) -> str:
        verdict = ("HOLDS" if self.holds else "MISSED") if reliable else "NOT JUDGED (unreliable run)"
        by = f"{'holds' if self.holds else 'misses'} by {100 * abs(self.margin):.0f} %"
        return f"- {verdict}: {self.text}: {self.value:.2f} vs {'<=' if self.at_most else '>='} {self.limit:.2f} ({by})"

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "holds": self.holds, "margin": self.margin}


def checks(rows: list[Run]) -> list[Check]:
    """Every target whose rows are present (a smaller grid checks fewer)."""
    out: list[Check] = []
    for model in (REFERENCE, SUNSPOTS):
        batched = find(rows, BATCHED, model, STREAMS)
        for path, name in FRONTS.items():
            run = find(rows, path, model, STREAMS)
            if run is None:
                continue
            if batched and batched.chunks_per_s:
                out.append(Check(f"{model} x{STREAMS}, {name} / minimal batched chunks/s", run.chunks_per_s /
                                 batched.chunks_per_s, 1.0))
                out.append(Check(f"{model} x{STREAMS}, {name} server CPU us/chunk (bound: the minimal batched "
                                 "server's)", run.server_cpu_us, batched.server_cpu_us, at_most=True))
            if run.limit_chunks_per_s:
                out.append(Check(f"{model} x{STREAMS}, {name} / physical limit {run.limit_chunks_per_s:.0f} chunks/s",
                                 run.chunks_per_s / run.limit_chunks_per_s, 0.85))
    base = find(rows, BASELINE, SUNSPOTS, 1)
    for path, name in FRONTS.items():
        run = find(rows, path, SUNSPOTS, 1)
        if run and base:
            out.append(Check(f"{SUNSPOTS} x1, {name} p50 ms (bound: 1.1 x unbatched server p50 "
                             f"{base.num('p50_ms'):.2f})", run.num("p50_ms"), 1.1 * base.num("p50_ms"), at_most=True))
    for model in dict.fromkeys(r.model for r in rows):
        mux, native = find(rows, TRITON_MUX, model, STREAMS), find(rows, NATIVE, model, STREAMS)
        if mux and native:
            out.append(Check(f"{model} x{STREAMS}, Triton multiplexed mean batch (bound: 0.8 x native mean batch "
                             f"{native.mean_batch:.1f})", mux.mean_batch, 0.8 * native.mean_batch))
        web = find(rows, WEBSOCKET, model, STREAMS)
        if web and native and native.chunks_per_s:
            out.append(Check(f"{model} x{STREAMS}, WebSocket / native gRPC Stream chunks/s (bound: within 20 % of "
                             f"native {native.chunks_per_s:.0f})", web.chunks_per_s / native.chunks_per_s, WEB_SHARE))
    return out


def lines(rows: list[Run], reliable: bool) -> list[str]:
    found = checks(rows)
    if not found:
        return []
    return [f"Targets (issues 22 and 24; chunk {rows[0].report.get('chunk', 10)}, client on the same cores, medians of "
            "the repeats):", "", *(c.line(reliable) for c in found), ""]
