"""The benchmark matrix, side by side in one run: every model x stream count over every path, the same client.

Paths: seqserve over the native `Stream` (`native`), over Triton `ModelStreamInfer` with one stream per sequence
(`triton`) and with every sequence of a client process on one stream (`triton-mux`); the minimal batched server
(`batched`, bench/batched.py, Triton protocol), the hand-written unbatched server (`baseline`, bench/baseline.py,
native protocol), seqserve's HTTP port with one WebSocket `Stream` per sequence (`websocket`) and one Triton
sequence over KServe REST per sequence (`rest`; both at 64 streams unless `web_streams` says otherwise), seqserve
with `--max-batch-size 1` (`unbatched`, 64 streams, only when asked) and the echo server (`echo`, the transport
alone). Every server is started once, one after the other (seqserve first, so its load-time
tuning runs on a quiet machine), and they all stay up: the matrix is run `repeats` times, each time in the same
order of cells (model, streams) with the paths of a cell rotated, so every configuration sees the same drift.
The echo point of the drift check is measured first and once more last (`echo-end`). Every run records the
server's and the load generator's CPU per answered chunk (bench/measure.py) and, for seqserve, the batch sizes it
formed (ModelStatistics); the model's own CPU at those sizes is timed in-process after the servers stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import procs, serverstats
from bench.compute import ModelTimer
from bench.measure import measured_load
from modelrepo import Manifest, latest_versions
from service.loadtest import LoadConfig

NATIVE, TRITON, TRITON_MUX, BATCHED, BASELINE, UNBATCHED, ECHO, ECHO_END = (
    "native", "triton", "triton-mux", "batched", "baseline", "unbatched", "echo", "echo-end")
WEBSOCKET, REST = "websocket", "rest"  # seqserve's HTTP port (service.loadtest --protocol websocket|rest)
WEB_PATHS = (WEBSOCKET, REST)
SEQSERVE_PATHS = (NATIVE, TRITON, TRITON_MUX, *WEB_PATHS)  # one seqserve process serves them all
SERVER_PATHS = (*SEQSERVE_PATHS, UNBATCHED)  # seqserve itself: it reports its batches
TRITON_CLIENT = (TRITON, TRITON_MUX, BATCHED)
# The web paths run at 64 streams only by default: at every cell they add 3 models x 3 cells x 2 paths x 2 repeats
# x 2.5 s = 90 s to a full `make bench` that already takes about 12 minutes; at 64 streams 30 s.
WEB_STREAMS: tuple[int, ...] = (64,)
DEFAULT_PATHS = (NATIVE, TRITON, TRITON_MUX, *WEB_PATHS, BATCHED, BASELINE, ECHO)
ALL_PATHS = (*DEFAULT_PATHS, UNBATCHED)
DRIFT_MODEL_STREAMS = 64  # the echo point measured at the start and again at the end
UNBATCHED_STREAMS = (64,)
TIMER_THREADS = 1  # the in-process model CPU: one intra-op thread, the least CPU per run


@dataclass(frozen=True)
class Plan:
    models_root: Path
    models: list[str]
    streams: tuple[int, ...] = (1, 64, 256)
    chunk: int = 10
    duration_s: float = 2.0
    warmup_s: float = 0.5
    processes: int = 1
    intra_op_threads: int = 0  # 0: the server decides (self-tuning), the simple servers take onnxruntime's default
    repeats: int = 2
    paths: tuple[str, ...] = DEFAULT_PATHS
    web_streams: tuple[int, ...] | None = WEB_STREAMS  # the cells the web paths run at; None: every cell


@dataclass
class Run:
    """One load run of one path (or, once aggregated, the median of its repeats)."""

    path: str
    model: str
    streams: int
    report: dict[str, object]
    batch_sizes: dict[int, int] = field(default_factory=dict)
    mean_batch: float = 0.0
    server_model_run_ms: float = 0.0
    server_queue_wait_ms: float = 0.0
    compute_chunks_per_s: float = 0.0  # the model run alone, in-process, at the batch sizes formed (wall time)
    batched_run_ms: float = 0.0  # one in-process model run at the mean batch size the server formed
    repeat: int = 0
    server_cpu_us: float = 0.0  # server CPU (utime + stime) per answered chunk
    client_cpu_us: float = 0.0  # the load generator's CPU per answered chunk
    model_cpu_us: float = 0.0  # the model's own CPU per chunk at the batch sizes formed (in-process)
    limit_chunks_per_s: float = 0.0  # the physical limit of its cell (bench/limits.py), once aggregated
    samples: list[float] = field(default_factory=list)  # chunks/s of every repeat, once aggregated

    def num(self, key: str) -> float:
        return float(self.report.get(key, 0.0))  # type: ignore[arg-type]

    @property
    def chunks_per_s(self) -> float:
        return self.num("throughput_chunks_per_s")

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _features(plan: Plan, model: str) -> int:
    return Manifest.load(latest_versions(plan.models_root)[model].manifest_path).input.features


Servers = dict[tuple[str, str], procs.Running]  # (path, model) -> the server that serves it


def start_servers(plan: Plan, stack: ExitStack) -> Servers:
    """Every server the plan's paths need, started one after the other, all left running."""
    root, threads = plan.models_root, ["--intra-op-threads", str(plan.intra_op_threads)]
    servers: Servers = {}
    if set(plan.paths) & set(SEQSERVE_PATHS):
        seqserve = stack.enter_context(procs.real_server(root, threads))
        for model in plan.models:
            _log(f"seqserve runs {model} on {serverstats.intra_op_threads(seqserve.target, model)} intra-op thread(s)")
            servers.update(((p, model), seqserve) for p in SEQSERVE_PATHS)
    if UNBATCHED in plan.paths:
        unbatched = stack.enter_context(procs.real_server(root, [*threads, "--max-batch-size", "1"]))
        servers.update(((UNBATCHED, m), unbatched) for m in plan.models)
    per_model: dict[str, Callable[[str], AbstractContextManager[procs.Running]]] = {
        BATCHED: lambda m: procs.batched_server(root, m, plan.intra_op_threads),
        BASELINE: lambda m: procs.baseline_server(root, m, plan.intra_op_threads),
        ECHO: lambda m: procs.echo_server(root, m, plan.chunk),
    }
    for path, start in per_model.items():
        if path in plan.paths:
            for model in plan.models:
                servers[(path, model)] = stack.enter_context(start(model))
    for model in plan.models:
        if (ECHO, model) in servers:
            servers[(ECHO_END, model)] = servers[(ECHO, model)]
    return servers


def applies(path: str, streams: int, web_streams: tuple[int, ...] | None = WEB_STREAMS) -> bool:
    if path in WEB_PATHS:
        return web_streams is None or streams in web_streams
    if path == TRITON_MUX:
        return streams > 1  # one sequence on one stream: the `triton` path
    return streams in UNBATCHED_STREAMS if path == UNBATCHED else path != ECHO_END


def measure(plan: Plan, servers: Servers, path: str, model: str, streams: int, repeat: int) -> Run:
    running = servers[(path, model)]
    web = path in WEB_PATHS
    target = running.http_target if web else running.target
    if target is None:
        raise RuntimeError(f"the {path} path needs seqserve's HTTP port")
    config = LoadConfig(target=target, model=model, streams=streams,
                        chunk=plan.chunk, duration_s=plan.duration_s, warmup_s=plan.warmup_s, processes=plan.processes,
                        features=_features(plan, model), progress=False,
                        protocol=path if web else "triton" if path in TRITON_CLIENT else "native",
                        multiplex=path == TRITON_MUX)
    seqserve = path in SERVER_PATHS
    before = serverstats.snapshot(running.target, model) if seqserve else None
    m = measured_load(config, running.pid)
    r = m.report
    run = Run(path, model, streams, r.to_json(), repeat=repeat, server_cpu_us=m.server_us, client_cpu_us=m.client_us)
    if before is not None:
        view = serverstats.server_view(before, serverstats.snapshot(running.target, model))
        run.batch_sizes, run.mean_batch = view.batch_sizes, view.mean_batch
        run.server_model_run_ms, run.server_queue_wait_ms = view.mean_model_run_ms, view.mean_queue_wait_ms
    _log(f"{path:<10} {model} x{streams} #{repeat}: {r.throughput_chunks_per_s:.0f} chunks/s, p50 {r.p50_ms:.2f} ms, "
         f"p99 {r.p99_ms:.2f} ms, server {m.server_us:.0f} us/chunk, client {m.client_us:.0f} us/chunk"
         f"{f', mean batch {run.mean_batch:.1f}' if seqserve else ''}, errors {r.errors or 'none'}")
    return run


def drift_streams(plan: Plan) -> int:
    return DRIFT_MODEL_STREAMS if DRIFT_MODEL_STREAMS in plan.streams else plan.streams[-1]


def order(plan: Plan) -> Iterator[tuple[str, str, int, int]]:
    """(path, model, streams, repeat) in run order: cells in a fixed order, each cell's paths rotated per repeat."""
    for repeat in range(plan.repeats):
        for model in plan.models:
            for streams in plan.streams:
                paths = [p for p in plan.paths if applies(p, streams, plan.web_streams)]
                k = repeat % len(paths) if paths else 0
                yield from ((p, model, streams, repeat) for p in paths[k:] + paths[:k])


def run_matrix(plan: Plan) -> tuple[list[Run], dict[str, ModelTimer]]:
    """Echo point, the interleaved matrix, the echo point again; then the model timers (servers stopped)."""
    runs: list[Run] = []
    drift = (plan.models[0], drift_streams(plan)) if ECHO in plan.paths else None
    with ExitStack() as stack:
        servers = start_servers(plan, stack)
        if drift:
            runs.append(measure(plan, servers, ECHO, *drift, -1))
        runs.extend(measure(plan, servers, *cell) for cell in order(plan))
        if drift:
            runs.append(measure(plan, servers, ECHO_END, *drift, plan.repeats))
    timers = {m: ModelTimer(latest_versions(plan.models_root)[m].path, plan.chunk, TIMER_THREADS) for m in plan.models}
    for run in runs:
        if run.batch_sizes:
            timer = timers[run.model]
            sizes = serverstats.representative(run.batch_sizes)
            run.model_cpu_us = timer.cpu_us_per_chunk(sizes)
            run.batched_run_ms = timer.seconds_per_run(max(1, round(run.mean_batch))) * 1e3
            seconds = sum(timer.seconds_per_run(s) * n for s, n in sizes.items())
            run.compute_chunks_per_s = sum(s * n for s, n in sizes.items()) / seconds if seconds else 0.0
    return runs, timers


def find(runs: list[Run], path: str, model: str, streams: int) -> Run | None:
    return next((r for r in runs if (r.path, r.model, r.streams) == (path, model, streams)), None)
