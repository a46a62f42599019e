"""Server processes under test: the real server, the echo server and the hand-written baseline, started as
subprocesses and stopped cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

READY_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parent.parent
# What `python -m service` logs once it serves, for a `LogWatcher`: its gRPC port (logged after every model is warm
# and health says SERVING) and its metrics port.
SERVER_PORTS = {"port": r"gRPC serving on \S+:(\d+)", "metrics": r"metrics on https?://\S+:(\d+)/metrics",
                "http": r"HTTP serving on \S+:(\d+)"}


class LogWatcher(threading.Thread):
    """Follows a child's output: keeps every line, resolves one future per pattern with its first match's group 1.

    Servers started on port 0 log the ports they bound, so nothing guesses a port and nothing polls: a caller
    waits on `found[name]`, which fails with the output's tail if the process ends without logging the line.
    """

    def __init__(self, stream: IO[str], patterns: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._patterns = {name: re.compile(p) for name, p in patterns.items()}
        self.found: dict[str, Future[str]] = {name: Future() for name in patterns}
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self._stream:
            self.lines.append(line)
            for name, pattern in self._patterns.items():
                match = pattern.search(line)
                if match and not self.found[name].done():
                    self.found[name].set_result(match.group(1))
        for future in self.found.values():
            if not future.done():
                future.set_exception(RuntimeError("process ended before logging it:\n" + "".join(self.lines[-30:])))


@dataclass(frozen=True)
class Running:
    pid: int
    target: str  # HOST:PORT of the gRPC server
    metrics_url: str | None  # the real server's /metrics
    http_target: str | None = None  # HOST:PORT of the real server's HTTP port (REST, WebSocket)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextmanager
def _process(argv: Sequence[str], patterns: dict[str, str], root: Path = ROOT
             ) -> Iterator[tuple[int, dict[str, str]]]:
    """Start `argv` in `root` (a source tree: this one, or another revision's for a comparison), wait for each
    pattern's line in its output; yields (pid, {name: group 1}); stops it at exit."""
    path = os.pathsep.join([str(root), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}  # the caller's path too (gpu_check.sh's site)
    proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watcher = LogWatcher(proc.stdout, patterns)  # type: ignore[arg-type]
    watcher.start()
    try:
        yield proc.pid, {name: future.result(READY_TIMEOUT_S) for name, future in watcher.found.items()}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        watcher.join(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


@contextmanager
def real_server(models: Path, extra: Sequence[str] = (), device: str = "cpu", root: Path = ROOT) -> Iterator[Running]:
    """`python -m service` on ports it picks itself, on `device`, with the flags in `extra` (e.g. `--max-batch-size 1`).

    Ready once it has logged its gRPC port (after every model is warm and health says SERVING) and its metrics port.
    """
    argv = [sys.executable, "-m", "service", "--models", str(models), "--host", "127.0.0.1", "--port", "0",
            "--http-port", "0", "--metrics-port", "0", "--device", device, "--log-level", "INFO", *extra]
    with _process(argv, SERVER_PORTS, root) as (pid, found):
        yield Running(pid, f"127.0.0.1:{found['port']}", f"http://127.0.0.1:{found['metrics']}/metrics",
                      f"127.0.0.1:{found['http']}")


@contextmanager
def echo_server(models: Path, model: str, chunk: int) -> Iterator[Running]:
    argv = [sys.executable, "-m", "service.loadtest.echo", "--models", str(models), "--model", model,
            "--chunk", str(chunk), "--port", "0"]
    with _process(argv, {"port": r"echo listening on (\d+)"}) as (pid, found):
        yield Running(pid, f"127.0.0.1:{found['port']}", None)


@contextmanager
def _simple_server(module: str, models: Path, model: str, threads: int) -> Iterator[Running]:
    """`python -m bench.<module>` serving `model`; it logs `<module> listening on PORT` once serving."""
    argv = [sys.executable, "-m", f"bench.{module}", "--models", str(models), "--model", model, "--port", "0",
            "--threads", str(threads)]
    with _process(argv, {"port": module + r" listening on (\d+)"}) as (pid, found):
        yield Running(pid, f"127.0.0.1:{found['port']}", None)


def baseline_server(models: Path, model: str, threads: int = 1) -> AbstractContextManager[Running]:
    """The hand-written unbatched baseline (`bench/baseline.py`, native protocol) serving `model`."""
    return _simple_server("baseline", models, model, threads)


def batched_server(models: Path, model: str, threads: int = 0) -> AbstractContextManager[Running]:
    """The minimal batched server (`bench/batched.py`, Triton protocol) serving `model`."""
    return _simple_server("batched", models, model, threads)
