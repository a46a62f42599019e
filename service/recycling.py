"""`--recycle-after REQUESTS` / `--recycle-rss-mib MIB` with `--workers N` (N >= 2): a worker that has answered that
many requests, or grown that large, is replaced, one worker at a time, so that a slow leak (grpcio's cancelled
streams, upstream) is shed without losing a session.

The parent checks every `CHECK_S` seconds. A worker due is replaced in this order: a new worker starts on the same
port and serves; only then is the old one sent SIGTERM, and it drains as for any SIGTERM (with a shared session
store it hands every session off at once: its native streams end with UNAVAILABLE and the resume token, which the
SDK follows to another worker, and its Triton sequences continue on the others; with the memory store it serves
its open sessions until they end, up to `--shutdown-grace`). The next replacement waits until the old worker has
exited; one still draining `DRAIN_MARGIN_S` past the grace is SIGKILLed (a safety net: a drain used to hang when
its cut streams left only cancelled steps queued in a batcher).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.workers import Worker

log = logging.getLogger("service.workers")
CHECK_S = 1.0  # how often the workers' request counts and RSS are read
DRAIN_MARGIN_S = 10.0  # past --shutdown-grace, a worker still draining is SIGKILLed (its streams were cut already)
SCRAPE_TIMEOUT_S = 5.0
_REQUESTS = re.compile(r"^seqserve_requests_total\{[^}]*\} (\S+)$", re.MULTILINE)


def requests_served(url: str, token: str) -> float:
    """A worker's answered requests, from its own /metrics."""
    scrape = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(scrape, timeout=SCRAPE_TIMEOUT_S) as reply:
        return sum(float(value) for value in _REQUESTS.findall(reply.read().decode()))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        found = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


class Recycler:
    """Replaces the workers of `workers` (and their /metrics URLs in `urls`, in place) as they come due."""

    def __init__(self, workers: list[Worker], urls: list[str], spawn: Callable[[int], Worker], token: str,
                 after_requests: int, rss_limit_mib: int, grace_s: float = 10.0) -> None:
        self._grace = grace_s  # --shutdown-grace: how long a drain may take, plus DRAIN_MARGIN_S
        self._workers = workers
        self._urls = urls
        self._spawn = spawn
        self._token = token
        self._after = after_requests
        self._rss = rss_limit_mib
        self.lock = threading.Lock()
        self.retiring: dict[int, Worker] = {}  # pid -> a worker sent away (or a new one that failed to serve)
        self.recycled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="recycler")

    @property
    def on(self) -> bool:
        return self._after > 0 or self._rss > 0

    def start(self) -> None:
        if self.on:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reaped(self, pid: int, code: int) -> bool:
        """The parent reaped `pid`: True if it was a worker sent away (expected), which is then forgotten."""
        with self.lock:
            worker = self.retiring.pop(pid, None)
        if worker is None:
            return False
        worker.process.returncode = code
        worker.exited.set()
        return True

    def _loop(self) -> None:
        # This thread must outlive the workers it started: each asked the kernel for SIGTERM when the thread that
        # started it ends (PR_SET_PDEATHSIG follows the thread), so nothing but `stop` (the shutdown) may end it.
        while not self._stop.wait(CHECK_S):
            for slot in range(len(self._workers)):
                try:
                    if not self._stop.is_set() and self._due(slot):
                        self._replace(slot)
                except Exception:
                    log.exception("recycling worker %d failed; it goes on serving", slot)

    def _due(self, slot: int) -> bool:
        worker = self._workers[slot]
        try:
            if self._after and requests_served(self._urls[slot], self._token) >= self._after:
                return True
            return bool(self._rss) and rss_mib(worker.process.pid) >= self._rss
        except OSError:  # a worker starting or stopping: looked at again next time
            return False

    def _replace(self, slot: int) -> None:
        old = self._workers[slot]
        new = self._spawn(old.index)
        new.ready.wait()
        if not new.served or self._stop.is_set():
            log.error("a replacement for worker %d did not start; worker %d goes on", old.index, old.index)
            self._send_away(new)
            return
        with self.lock:
            self._workers[slot], self._urls[slot] = new, new.url
        self.recycled += 1
        log.info("worker %d replaced (pid %d -> %d); the old one drains", old.index, old.process.pid, new.process.pid)
        self._send_away(old)
        if not old.exited.wait(self._grace + DRAIN_MARGIN_S):  # one worker at a time
            log.warning("worker %d (pid %d) did not end its drain in %g s; killed", old.index, old.process.pid,
                        self._grace + DRAIN_MARGIN_S)
            old.process.kill()
            old.exited.wait()

    def _send_away(self, worker: Worker) -> None:
        with self.lock:
            self.retiring[worker.process.pid] = worker
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
