"""The result of one load run: a flat, JSON-ready record and a human table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from service.loadtest.config import LoadConfig
from service.loadtest.stats import Tally, max_ms, percentile_ms


@dataclass(frozen=True)
class Report:
    target: str
    model: str
    mode: str  # "closed" | "open"
    streams: int
    chunk: int
    processes: int
    rate: float | None  # offered chunks/s in open loop
    elapsed_s: float
    chunks: int  # answered chunks
    steps: int
    throughput_chunks_per_s: float
    throughput_steps_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    errors: dict[str, int]  # status code name -> count
    protocol: str = "native"  # "native" | "triton" | "triton-multiplexed" | "websocket" | "rest"

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def table(self) -> str:
        errors = ", ".join(f"{code}={n}" for code, n in sorted(self.errors.items())) or "none"
        offered = f", offered {self.rate:.0f} chunks/s" if self.rate is not None else ""
        rows = [
            ("target", f"{self.target} model={self.model}"),
            ("load", f"{self.mode} loop, {self.streams} streams x chunk {self.chunk}, "
                     f"{self.processes} client process(es){offered}, {self.protocol}"),
            ("answered", f"{self.chunks} chunks, {self.steps} steps in {self.elapsed_s:.2f} s"),
            ("throughput", f"{self.throughput_chunks_per_s:.1f} chunks/s, {self.throughput_steps_per_s:.1f} steps/s"),
            ("latency ms", f"p50 {self.p50_ms:.3f}  p90 {self.p90_ms:.3f}  p99 {self.p99_ms:.3f}  "
                           f"p99.9 {self.p999_ms:.3f}  max {self.max_ms:.3f}  mean {self.mean_ms:.3f}"),
            ("errors", errors),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_report(config: LoadConfig, tally: Tally) -> Report:
    h = tally.histogram
    elapsed = tally.elapsed_s
    chunks = tally.chunks
    return Report(
        target=config.target,
        model=config.model,
        mode=config.mode,
        streams=config.streams,
        chunk=config.chunk,
        processes=min(config.processes, config.streams),
        rate=config.rate,
        elapsed_s=elapsed,
        chunks=chunks,
        steps=tally.steps,
        throughput_chunks_per_s=chunks / elapsed if elapsed > 0 else 0.0,
        throughput_steps_per_s=tally.steps / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile_ms(h, 50.0),
        p90_ms=percentile_ms(h, 90.0),
        p99_ms=percentile_ms(h, 99.0),
        p999_ms=percentile_ms(h, 99.9),
        max_ms=max_ms(h),
        mean_ms=float(h.get_mean_value()) / 1000.0 if chunks else 0.0,
        errors=dict(tally.errors),
        protocol=config.protocol + ("-multiplexed" if config.multiplex else ""),
    )
