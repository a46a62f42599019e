"""`--workers N`: N server processes on one gRPC port (SO_REUSEPORT), one metrics endpoint that adds them up.

The parent checks that its metrics port is free, starts N `python -m service` children with the same flags plus
`--reuse-port` and a plain metrics endpoint of their own on loopback, forwards their log lines, and once every child
serves logs the port and serves its own metrics endpoint (on `--metrics-host`, with TLS when the server has it, as
a single process does), whose every scrape reads the children's and sums equal samples (counters, gauges,
histogram buckets); per worker it adds `seqserve_worker_requests_total{worker}`. SIGTERM / SIGINT go to every
child; when one child exits, the others are stopped too and the parent exits with the first non-zero code. A
child dies with its parent however the parent ends (SIGKILL included): it asks the kernel for SIGTERM when its
parent goes (`prctl(PR_SET_PDEATHSIG)`, `die_with_parent`), so no orphan keeps serving on the port. The
kernel spreads new connections over the children, so a session lives in one child: with `--session-store memory`,
a Triton sequence is only correct on one connection (say so at start-up); with Redis, any child serves any
sequence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from service.grpc.tls import metrics_context
from service.metrics_http import MetricsServer
from service.recycling import DRAIN_MARGIN_S, Recycler
from service.settings import Settings
from service.startup import check_port_free
from service.tokens import WORKER_METRICS_TOKEN, metrics_tokens

log = logging.getLogger("service.workers")
READY = "gRPC serving on"
PARENT_ENV = "SEQSERVE_WORKER_PARENT"  # set for a worker: its parent's pid (see `die_with_parent`)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
SCRAPE_TIMEOUT_S = 5.0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host != "0.0.0.0" else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """One child process, its log forwarded to ours; `ready` is set once it serves (or when it ends)."""

    def __init__(self, index: int, argv: list[str], metrics_token: str, url: str = "") -> None:
        self.index = index
        self.url = url  # its own /metrics
        self.ready = threading.Event()
        self.exited = threading.Event()  # reaped after being sent away (see service/recycling.py)
        self.served = False
        env = {**os.environ, PARENT_ENV: str(os.getpid()), WORKER_METRICS_TOKEN: metrics_token}
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._forward, daemon=True, name=f"worker-{index}-log").start()

    def _forward(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            sys.stderr.write(f"[worker {self.index}] {line}")
            if READY in line:
                self.served = True
                self.ready.set()
        self.ready.set()


def die_with_parent() -> None:
    """In a worker (`PARENT_ENV` set): SIGTERM when the parent dies (a drain, as for any SIGTERM), and exit at once
    if it is already gone. Linux only (prctl); elsewhere nothing happens."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("cannot ask to die with the parent process (no prctl): stop the workers yourself")
        return
    if os.getppid() != int(parent):  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class SumOfWorkers:
    """A Prometheus collector: every scrape reads each worker's /metrics and sums samples of equal name and labels."""

    def __init__(self, urls: list[str], token: str) -> None:
        self._urls = urls
        self._token = token  # the parent's own: with authentication on, a worker's /metrics needs a token

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        per_worker = Metric("seqserve_worker_requests", "requests answered by each worker process", "counter")
        for index, url in enumerate(self._urls):
            try:
                scrape = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}"})
                with urllib.request.urlopen(scrape, timeout=SCRAPE_TIMEOUT_S) as reply:
                    text = reply.read().decode()
            except OSError:
                continue  # a worker stopping: its numbers are left out of this scrape
            served = 0.0
            for family in text_string_to_metric_families(text):
                families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                samples = sums.setdefault(family.name, {})
                for sample in family.samples:
                    if sample.name.endswith("_created"):  # a timestamp, not a quantity: no sum of it means anything
                        continue
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    samples[key] = samples.get(key, 0.0) + sample.value
                    if sample.name == "seqserve_requests_total":
                        served += sample.value
            per_worker.add_sample("seqserve_worker_requests_total", {"worker": str(index)}, served)
        for name, metric in families.items():
            for (sample_name, labels), value in sums[name].items():
                metric.add_sample(sample_name, dict(labels), value)
            yield metric
        yield per_worker


def run_workers(settings: Settings, argv: Sequence[str]) -> int:
    """Serve with `settings.workers` processes; returns the exit code."""
    if settings.session_store == "memory":
        log.warning("--workers %d with --session-store memory: each connection lands in one worker, so a Triton "
                    "sequence is only correct when all its requests use one connection; use --session-store "
                    "redis://... to let any worker serve any sequence", settings.workers)
    metrics_host = settings.metrics_bind_host
    check_port_free(metrics_host, settings.metrics_port, "metrics")  # before any worker starts: fail fast, no orphans
    port = settings.port or free_port(settings.host)
    token = secrets.token_urlsafe(24)  # lets this process read its workers' /metrics when authentication is on

    def spawn(index: int) -> Worker:  # (the last of a repeated flag wins: these override the caller's)
        metrics_port = free_port("127.0.0.1")
        return Worker(index, [sys.executable, "-m", "service", *argv, "--workers", "1", "--reuse-port", "--port",
                              str(port), "--metrics-host", "127.0.0.1", "--no-metrics-tls", "--metrics-port",
                              str(metrics_port)], token, f"http://127.0.0.1:{metrics_port}/metrics")

    workers = [spawn(i) for i in range(settings.workers)]
    urls = [w.url for w in workers]  # replaced in place as workers are recycled
    recycler = Recycler(workers, urls, spawn, token, settings.recycle_after, settings.recycle_rss_mib,
                        settings.shutdown_grace)
    signalled: set[int] = set()

    def forward(signum: int, _frame: object) -> None:
        recycler.stop()
        with recycler.lock:
            every = [*workers, *recycler.retiring.values()]
        for worker in every:  # once each: a second SIGTERM could land after a worker restored the default action
            if worker.process.pid not in signalled and worker.process.poll() is None:
                signalled.add(worker.process.pid)
                worker.process.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for worker in workers:
        worker.ready.wait()
    metrics = _SumServer(settings, urls, token)
    try:
        if all(w.served for w in workers):
            metrics_port, scheme = metrics.start(metrics_host)
            log.info("%s %s:%d by %d workers (SO_REUSEPORT)", READY, settings.host, port, settings.workers)
            log.info("metrics on %s://%s:%d/metrics (the sum of every worker's)", scheme, metrics_host, metrics_port)
            recycler.start()
        while True:  # the first worker to end (a signal forwarded, or a failure) ends them all; recycled ones not
            pid, status = os.wait()
            if not recycler.reaped(pid, os.waitstatus_to_exitcode(status)):
                break
    finally:
        forward(signal.SIGTERM, None)
        metrics.stop()
    codes = [os.waitstatus_to_exitcode(status) if w.process.pid == pid else w.process.wait() for w in workers]
    with recycler.lock:
        draining = [w for p, w in recycler.retiring.items() if p != pid]
    for worker in draining:  # sent away, still draining: they end before the parent does
        try:
            worker.process.wait(settings.shutdown_grace + DRAIN_MARGIN_S)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    return next((code for code in codes if code), 0)


class _SumServer:
    """The parent's /metrics: the same asyncio server as a single process's (bounded connections, TLS when the
    server has it), on an event loop of its own in a thread, its every scrape summing the workers'."""

    def __init__(self, settings: Settings, urls: list[str], token: str) -> None:
        self._settings = settings
        registry = CollectorRegistry()
        registry.register(SumOfWorkers(urls, token))  # type: ignore[arg-type]
        self._server = MetricsServer(registry, settings.metrics_max_connections,
                                     settings.metrics_max_connections_per_peer, metrics_tokens(settings))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="metrics")

    def start(self, host: str) -> tuple[int, str]:
        """Serve on `host`; the port bound and the scheme."""
        context = metrics_context(self._settings)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._server.start(host, self._settings.metrics_port, context),
                                                   self._loop)
        return started.result(), "http" if context is None else "https"

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()
