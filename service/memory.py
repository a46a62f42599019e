"""The C allocator under churn: fewer glibc malloc arenas, and free heap pages handed back to the OS now and then.

Under churning clients the free space malloc keeps inside its arenas grows (fragmentation: gRPC core, protobuf and
numpy allocate and free from a dozen threads, and glibc gives each thread contending for a lock an arena of its own,
up to 8 per core); the server's Python objects stay flat, and so do malloc's bytes in use, except for ~100 bytes
per cancelled stream that grpcio's asyncio layer never frees (its bug, not ours). Two glibc knobs for the first
(measurements in docs/internals.md, "Memory under churn"):

- `limit_arenas(n)`: `mallopt(M_ARENA_MAX, n)`, before any thread starts (the arenas are made lazily);
- `trim_forever(interval)`: `malloc_trim(0)` every `interval` seconds, which returns the free whole pages of every
  arena to the OS (`madvise`), keeping the mappings.

And one for Python's collector: `freeze_startup_heap()` (`gc.freeze`) once serving starts, so that the objects
made while starting (modules, models, manifests: some 70,000) are never walked again by the full collections that
serving triggers (its futures and messages are short-lived, but 64 requests in flight survive the young
collections, and each full one walked the whole heap: 13 in 7 s at 64 Triton streams, 43 ms each).

The glibc knobs are no-ops where the C library is not glibc (musl, macOS): `glibc()` is None there.
`MallocCollector` shows malloc's own account on `/metrics` (`seqserve_malloc_bytes`: in use, free inside the
arenas, mmapped chunks), so a growing RSS can be told apart: bytes in use growing is a leak, free bytes growing is
fragmentation.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc >= 2.33): every field a size_t, summed over all arenas."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has `mallopt` and `malloc_trim`), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
            libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    return libc


def heap() -> dict[str, int] | None:
    """malloc's bytes `in_use`, `free` (inside its arenas) and `mmapped` (chunks of their own); None off glibc."""
    libc = glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    info = libc.mallinfo2()
    return {"in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


class MallocCollector(Collector):
    """`seqserve_malloc_bytes{kind}` at scrape time, from `heap()` (nothing off glibc)."""

    def collect(self) -> Iterator[Metric]:
        account = heap()
        if account is None:
            return
        family = GaugeMetricFamily("seqserve_malloc_bytes", "The C allocator's bytes: in use, free inside its "
                                   "arenas, and in mmapped chunks (glibc's mallinfo2)", labels=["kind"])
        for kind, value in account.items():
            family.add_metric([kind], value)
        yield family


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas (0: glibc's default); whether it was applied. Call before threads start."""
    libc = glibc()
    if arenas <= 0 or libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Hand the free whole pages of every malloc arena back to the OS; whether glibc released any."""
    libc = glibc()
    return libc is not None and bool(libc.malloc_trim(0))


async def trim_forever(interval: float, trim_once: Callable[[], object] = trim) -> None:
    """`trim_once()` every `interval` seconds, until cancelled. In a thread: a trim walks every arena's free chunks
    (milliseconds on a fragmented heap), and the loop meanwhile runs whatever needs no malloc lock (pymalloc)."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim_once)


def freeze_startup_heap() -> int:
    """Collect what starting left behind, then move every object alive to the permanent generation; how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def start_trimming(interval: float) -> asyncio.Task[None] | None:
    """The periodic trim as a task on the running loop (None: `interval` 0, or not glibc)."""
    if interval <= 0 or glibc() is None:
        return None
    return asyncio.get_running_loop().create_task(trim_forever(interval), name="malloc-trim")
