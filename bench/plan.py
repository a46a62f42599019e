"""The benchmark matrix, side by side in one run: every model x stream count over every path, the same client.

Paths: seqserve over the native `Stream` (`native`), over Triton `ModelStreamInfer` with one stream per sequence
(`triton`) and with every sequence of a client process on one stream (`triton-mux`), the hand-written baseline
(`baseline`, bench/baseline.py), seqserve with `--max-batch-size 1` (`unbatched`, at 64 streams only) and the echo
server (`echo`, the transport ceiling). For seqserve's paths, the batch sizes it formed (ModelStatistics) and the
compute ceiling at those sizes. The echo ceiling is measured first and once more last (`echo-end`) for the drift.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import procs, serverstats
from bench.compute import ModelTimer, ceiling_chunks_per_s
from modelrepo import Manifest, latest_versions
from service.loadtest import LoadConfig, Report, run_load

NATIVE, TRITON, TRITON_MUX, BASELINE, UNBATCHED, ECHO, ECHO_END = (
    "native", "triton", "triton-mux", "baseline", "unbatched", "echo", "echo-end")
SERVER_PATHS = (NATIVE, TRITON, TRITON_MUX)
DRIFT_MODEL_STREAMS = 64  # the echo point measured at the start and again at the end
UNBATCHED_STREAMS = (64,)


@dataclass(frozen=True)
class Plan:
    models_root: Path
    models: list[str]
    streams: tuple[int, ...] = (1, 64, 256)
    chunk: int = 10
    duration_s: float = 4.0
    warmup_s: float = 1.0
    processes: int = 1
    intra_op_threads: int = 0  # 0: the server decides (self-tuning), the baseline takes onnxruntime's default


@dataclass
class Run:
    """One load run of one path."""

    path: str
    model: str
    streams: int
    report: dict[str, object]
    batch_sizes: dict[int, int] = field(default_factory=dict)
    mean_batch: float = 0.0
    server_model_run_ms: float = 0.0
    server_queue_wait_ms: float = 0.0
    compute_chunks_per_s: float = 0.0
    batched_run_ms: float = 0.0  # one in-process model run at the mean batch size the server formed

    def num(self, key: str) -> float:
        return float(self.report.get(key, 0.0))  # type: ignore[arg-type]

    @property
    def chunks_per_s(self) -> float:
        return self.num("throughput_chunks_per_s")

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _load(plan: Plan, target: str, model: str, streams: int, features: int, path: str) -> Report:
    config = LoadConfig(target=target, model=model, streams=streams, chunk=plan.chunk, duration_s=plan.duration_s,
                        warmup_s=plan.warmup_s, processes=plan.processes, features=features, progress=False,
                        protocol="triton" if path in (TRITON, TRITON_MUX) else "native", multiplex=path == TRITON_MUX)
    report = run_load(config)
    _log(f"{path:<10} {model} x{streams}: {report.throughput_chunks_per_s:.0f} chunks/s, p50 {report.p50_ms:.2f} ms, "
         f"p99 {report.p99_ms:.2f} ms, errors {report.errors or 'none'}")
    return report


def _manifest(plan: Plan, model: str) -> Manifest:
    return Manifest.load(latest_versions(plan.models_root)[model].manifest_path)


def run_seqserve(plan: Plan, runs: list[Run]) -> None:
    """The real server (default batching) over the native and both Triton paths; batch sizes and compute ceiling."""
    with procs.real_server(plan.models_root, ["--intra-op-threads", str(plan.intra_op_threads)]) as server:
        for model in plan.models:
            features = _manifest(plan, model).input.features
            threads = plan.intra_op_threads or serverstats.intra_op_threads(server.target, model)
            _log(f"server runs {model} on {threads} intra-op thread(s)")
            timer = ModelTimer(latest_versions(plan.models_root)[model].path, plan.chunk, threads)
            for streams in plan.streams:
                for path in SERVER_PATHS:
                    if path == TRITON_MUX and streams == 1:
                        continue  # one sequence on one stream: the `triton` path
                    before = serverstats.snapshot(server.target, model)
                    report = _load(plan, server.target, model, streams, features, path)
                    view = serverstats.server_view(before, serverstats.snapshot(server.target, model))
                    runs.append(Run(path, model, streams, report.to_json(), view.batch_sizes, view.mean_batch,
                                    view.mean_model_run_ms, view.mean_queue_wait_ms,
                                    ceiling_chunks_per_s(timer, serverstats.representative(view.batch_sizes)),
                                    timer.seconds_per_run(max(1, round(view.mean_batch))) * 1e3))


def _simple(plan: Plan, runs: list[Run], path: str, server: Callable[[str], AbstractContextManager[procs.Running]],
            streams: tuple[int, ...]) -> None:
    for model in plan.models:
        features = _manifest(plan, model).input.features
        with server(model) as running:
            for n in streams:
                runs.append(Run(path, model, n, _load(plan, running.target, model, n, features, path).to_json()))


def run_baseline(plan: Plan, runs: list[Run]) -> None:
    _simple(plan, runs, BASELINE, lambda m: procs.baseline_server(plan.models_root, m, plan.intra_op_threads),
            plan.streams)


def run_unbatched(plan: Plan, runs: list[Run]) -> None:
    extra = ["--intra-op-threads", str(plan.intra_op_threads), "--max-batch-size", "1"]
    streams = tuple(s for s in plan.streams if s in UNBATCHED_STREAMS)
    if streams:
        with procs.real_server(plan.models_root, extra) as server:
            _simple(plan, runs, UNBATCHED, lambda _: nullcontext(server), streams)


def _shapes(plan: Plan) -> Iterator[tuple[int, list[str]]]:
    """(features, models) for each distinct message shape (features, outputs): models sharing one share the echo."""
    by_shape: dict[tuple[object, ...], list[str]] = {}
    for model in plan.models:
        m = _manifest(plan, model)
        by_shape.setdefault((m.input.features, tuple((o.name, o.size) for o in m.outputs)), []).append(model)
    for (features, _), models in by_shape.items():
        yield int(features), models  # type: ignore[call-overload]


def run_echo(plan: Plan, runs: list[Run], streams: tuple[int, ...], path: str = ECHO) -> None:
    for features, models in _shapes(plan):
        with procs.echo_server(plan.models_root, models[0], plan.chunk) as echo:
            for n in streams:
                report = _load(plan, echo.target, models[0], n, features, path).to_json()
                runs.extend(Run(path, model, n, report) for model in models)


def drift_streams(plan: Plan) -> int:
    return DRIFT_MODEL_STREAMS if DRIFT_MODEL_STREAMS in plan.streams else plan.streams[-1]


def run_matrix(plan: Plan) -> list[Run]:
    """Echo first, then every path, then the echo point again: the runs in that order."""
    runs: list[Run] = []
    run_echo(plan, runs, plan.streams)
    run_seqserve(plan, runs)
    run_baseline(plan, runs)
    run_unbatched(plan, runs)
    run_echo(plan, runs, (drift_streams(plan),), ECHO_END)
    return runs


def find(runs: list[Run], path: str, model: str, streams: int) -> Run | None:
    return next((r for r in runs if (r.path, r.model, r.streams) == (path, model, streams)), None)
