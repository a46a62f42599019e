"""What one load run does: the target, the model, how many streams, how much, closed or open loop."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace

from seqserve_client.security import PLAIN, Security, add_arguments, from_arguments
from service.loadtest.protocol import InputSpec

DEFAULT_TARGET = "127.0.0.1:8001"
# native `Stream` | Triton `ModelStreamInfer` (triton.py) | over the HTTP port: WebSocket `Stream`, REST (web.py)
PROTOCOLS = ("native", "triton", "websocket", "rest")
WEB = ("websocket", "rest")


@dataclass(frozen=True)
class LoadConfig:
    target: str = DEFAULT_TARGET
    model: str = "vowels_lstm"
    version: int | None = None
    streams: int = 1
    chunk: int = 10  # steps per chunk
    duration_s: float | None = None  # stop sending after this long ...
    chunks: int | None = None  # ... or after this many chunks per stream (the default bound when neither is set)
    warmup_s: float = 0.0  # answers to chunks sent in the first seconds are not measured
    rate: float | None = None  # open loop: total chunks/s over all streams (Poisson); None = closed loop
    processes: int = 1
    features: int | None = None  # chunk width; None = ask the server (GetModel)
    inputs: tuple[InputSpec, ...] = ()  # every data input (GetModel); () = one float32 input of `features`
    seed: int = 0
    progress: bool = True
    protocol: str = "native"
    multiplex: bool = False  # triton: every sequence of a client process on one ModelStreamInfer call
    security: Security = PLAIN  # TLS / mTLS / bearer token (`--tls-ca`, `--tls-cert`, `--token`, ...)

    def __post_init__(self) -> None:
        if self.streams < 1 or self.chunk < 1 or self.processes < 1:
            raise ValueError("streams, chunk and processes must be >= 1")
        if self.duration_s is None and self.chunks is None:
            object.__setattr__(self, "chunks", 100)
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be > 0")
        if self.chunks is not None and self.chunks < 1:
            raise ValueError("chunks must be >= 1")
        if self.warmup_s < 0:
            raise ValueError("warmup must be >= 0")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        if self.protocol != "triton" and self.multiplex:
            raise ValueError("multiplex needs --protocol triton")
        if self.protocol != "native" and self.rate is not None:
            raise ValueError(f"the {self.protocol} protocol runs closed loop only (no --rate)")

    @property
    def mode(self) -> str:
        return "closed" if self.rate is None else "open"

    def split(self) -> list[LoadConfig]:
        """One config per client process: streams (and the open-loop rate) divided as evenly as possible."""
        n = min(self.processes, self.streams)
        parts = []
        for i in range(n):
            streams = self.streams // n + (1 if i < self.streams % n else 0)
            rate = None if self.rate is None else self.rate * streams / self.streams
            parts.append(replace(self, streams=streams, rate=rate, processes=1, seed=self.seed * 1000 + i))
        return parts


def parse_args(argv: Sequence[str] | None = None) -> tuple[LoadConfig, str | None]:
    """The CLI flags -> (config, path of the JSON report or None)."""
    p = argparse.ArgumentParser(prog="python -m service.loadtest", description="Load generator for seqserve")
    p.add_argument("--target", default=DEFAULT_TARGET,
                   help="HOST:PORT of the gRPC server (of its HTTP port for --protocol websocket or rest)")
    p.add_argument("--model", default="vowels_lstm")
    p.add_argument("--version", type=int, default=None, help="model version (default: newest)")
    p.add_argument("--streams", type=int, default=1, help="concurrent sessions")
    p.add_argument("--chunk", type=int, default=10, help="steps per chunk")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, default=None, help="seconds of sending")
    bound.add_argument("--chunks", type=int, default=None, help="chunks per stream (default 100)")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds sent but not measured (duration adds them)")
    p.add_argument("--rate", type=float, default=None, help="open loop: total chunks/s, Poisson arrivals")
    p.add_argument("--processes", type=int, default=1, help="client processes sharing the streams")
    p.add_argument("--features", type=int, default=None, help="chunk width (default: from GetModel)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", choices=PROTOCOLS, default="native",
                   help="native Stream, Triton ModelStreamInfer (one sequence per load stream), or over the HTTP port "
                        "a WebSocket Stream per load stream, or a Triton sequence over KServe REST")
    p.add_argument("--multiplex", action="store_true",
                   help="triton: all sequences of a client process on one ModelStreamInfer stream")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        config = LoadConfig(
            target=a.target, model=a.model, version=a.version, streams=a.streams, chunk=a.chunk,
            duration_s=a.duration, chunks=a.chunks, warmup_s=a.warmup, rate=a.rate, processes=a.processes,
            features=a.features, seed=a.seed, progress=not a.no_progress, protocol=a.protocol,
            multiplex=a.multiplex, security=from_arguments(a),
        )
    except ValueError as exc:
        p.error(str(exc))
    return config, a.json
