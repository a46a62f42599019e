"""`python -m bench.fairness`: can stateless requests starve a stream? Measured live through the real server.

One native stream steps 10-step chunks of `--model` one after the other and records each chunk's latency, in
three phases of `--duration` seconds each, side by side in one run:

- `alone`: nothing else runs;
- `flood`: `--flooders` threads send stateless `Infer` requests of `--max-request-batch` sequences (the largest a
  request may hold) of 50 steps back to back, on the same model;
- `long`: one thread sends stateless `Infer` requests of one sequence of `--max-request-steps` steps (the longest
  a request may hold), back to back.

Reported per phase: the stream's chunks, p50 / p99 / max latency, its errors by code, and the stateless requests
answered and refused. Stateless rows may hold at most half of a model's queue and a waiting stream step leads
the batch after one that held stateless rows; long sequences run in segments of `--max-run-steps`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from bench import procs
from modelrepo import Manifest, latest_versions
from seqserve_client import Client, ServerError
from service.settings import Settings

CHUNK = 10
FLOOD_STEPS = 50


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    stream_errors: Counter[str] = field(default_factory=Counter)
    stateless: Counter[str] = field(default_factory=Counter)

    def row(self) -> str:
        ms = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        p50, p99 = np.percentile(ms, [50, 99])
        return (f"| {self.name} | {len(self.latencies_ms)} | {p50:.2f} | {p99:.2f} | {ms.max():.2f} | "
                f"{dict(self.stream_errors) or 'none'} | {dict(self.stateless) or '-'} |")


def _code(exc: Exception) -> str:
    if isinstance(exc, ServerError):
        return exc.code.name
    return exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__  # type: ignore[attr-defined]


def _stateless(target: str, model: str, x: np.ndarray, until: float, phase: Phase, lock: threading.Lock) -> None:
    with Client(target) as client:
        while time.monotonic() < until:
            try:
                client.infer(model, x)
                outcome = "OK"
            except (ServerError, grpc.RpcError) as exc:
                outcome = _code(exc)
            with lock:
                phase.stateless[outcome] += 1


def _stream(target: str, model: str, features: int, until: float, phase: Phase) -> None:
    chunk = np.random.default_rng(0).standard_normal((CHUNK, features)).astype(np.float32)
    with Client(target) as client, client.stream(model) as stream:
        while time.monotonic() < until:
            began = time.perf_counter()
            try:
                stream.send(chunk)
            except (ServerError, grpc.RpcError) as exc:
                phase.stream_errors[_code(exc)] += 1
                return
            phase.latencies_ms.append((time.perf_counter() - began) * 1e3)


def run_phase(target: str, model: str, features: int, phase: Phase, duration: float,
              loads: Sequence[Callable[[float, Phase, threading.Lock], None]]) -> Phase:
    until = time.monotonic() + duration
    lock = threading.Lock()
    threads = [threading.Thread(target=load, args=(until, phase, lock)) for load in loads]
    for thread in threads:
        thread.start()
    _stream(target, model, features, until, phase)
    for thread in threads:
        thread.join()
    return phase


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--model", default="forecast_sunspots")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    p.add_argument("--flooders", type=int, default=3)
    a = p.parse_args(argv)
    defaults = Settings.model_fields
    batch, steps = int(defaults["max_request_batch"].default), int(defaults["max_request_steps"].default)
    features = Manifest.load(latest_versions(a.models)[a.model].manifest_path).input.features
    rng = np.random.default_rng(1)
    flood = rng.standard_normal((batch, FLOOD_STEPS, features)).astype(np.float32)
    long = rng.standard_normal((1, steps, features)).astype(np.float32)
    phases = []
    with procs.real_server(a.models) as server:
        def sender(x: np.ndarray) -> Callable[[float, Phase, threading.Lock], None]:
            return lambda until, phase, lock: _stateless(server.target, a.model, x, until, phase, lock)

        for name, loads in (("alone", []), ("flood", [sender(flood)] * a.flooders), ("long", [sender(long)])):
            phases.append(run_phase(server.target, a.model, features, Phase(name), a.duration, loads))
            print(f"measured {name}", file=sys.stderr)
    print(f"{a.model}: one native stream of {CHUNK}-step chunks; flood: {a.flooders} threads of {batch} x "
          f"{FLOOD_STEPS}-step Infer requests; long: one thread of 1 x {steps}-step Infer requests\n")
    print("| phase | stream chunks | p50 ms | p99 ms | max ms | stream errors | stateless requests |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for phase in phases:
        print(phase.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
