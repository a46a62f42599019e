"""Run a load: in this process, or split over several client processes that start sending together."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from service.loadtest.config import WEB, LoadConfig
from service.loadtest.driver import CHANNEL_OPTIONS, Counter, Driver, fetch_inputs
from service.loadtest.report import Report, build_report
from service.loadtest.stats import Tally, merge_all
from service.loadtest.triton import TritonDriver
from service.loadtest.web import WebDriver, fetch_features_http

START_TIMEOUT_S = 120.0
PROGRESS_EVERY_S = 1.0


class _LocalCounter:
    def __init__(self) -> None:
        self.value = 0


class Progress:
    """A progress line on stderr while the load runs: answered chunks and the rate so far."""

    def __init__(self, counters: Sequence[Counter], enabled: bool) -> None:
        self._counters = counters
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._began = time.monotonic()

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()
            sys.stderr.write("\n")

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY_S):
            done = sum(c.value for c in self._counters)
            elapsed = time.monotonic() - self._began
            sys.stderr.write(f"\r[loadtest] {elapsed:6.1f} s  {done:9d} replies  {done / elapsed:9.1f} /s")
            sys.stderr.flush()


async def _described(config: LoadConfig) -> LoadConfig:
    """`config` with the model's inputs from `GetModel` (its width from them unless `--features` set it)."""
    if config.features is not None:
        return config
    if config.protocol in WEB:
        return replace(config, features=await fetch_features_http(config))
    async with config.security.aio_channel(config.target, CHANNEL_OPTIONS) as channel:
        inputs = await fetch_inputs(channel, config)
    return replace(config, features=inputs[0].features, inputs=inputs)


def make_driver(config: LoadConfig, progress: Counter) -> Driver | TritonDriver | WebDriver:
    if config.protocol in WEB:
        return WebDriver(config, progress)
    return TritonDriver(config, progress) if config.protocol == "triton" else Driver(config, progress)


async def _no_wait() -> None:
    return None


def _worker(config: LoadConfig, counter: Synchronized[int], barrier: Any, results: Any) -> None:
    """A client process: drive its share of the streams, put its encoded tally on `results`."""

    async def wait_for_start() -> None:
        await asyncio.to_thread(barrier.wait, START_TIMEOUT_S)

    try:
        tally = asyncio.run(make_driver(config, counter).run(wait_for_start))
        results.put(tally.encode())
    except BaseException as exc:
        barrier.abort()
        results.put(repr(exc).encode())
        raise


def _run_processes(parts: list[LoadConfig]) -> Tally:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(parts))
    results = ctx.Queue()
    counters: list[Synchronized[int]] = [ctx.Value("q", 0, lock=False) for _ in parts]  # type: ignore[misc]
    procs = [
        ctx.Process(target=_worker, args=(part, counter, barrier, results), daemon=True)
        for part, counter in zip(parts, counters, strict=True)
    ]
    for proc in procs:
        proc.start()
    with Progress(counters, parts[0].progress):
        encoded = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    failures = [e.decode() for e in encoded if not e.startswith(b"{")]
    if failures:
        raise RuntimeError(f"client process failed: {failures[0]}")
    return merge_all([Tally.decode(e) for e in encoded])


def run_load(config: LoadConfig) -> Report:
    """Drive the load described by `config` and return its report."""
    config = asyncio.run(_described(config))
    if config.processes > 1 and config.streams > 1:
        tally = _run_processes(config.split())
    else:
        counter = _LocalCounter()
        with Progress([counter], config.progress):
            tally = asyncio.run(make_driver(config, counter).run(_no_wait))
    return build_report(config, tally)
