"""The C allocator under churn: fewer glibc malloc arenas, and free heap pages handed back to the OS now and then.

Under churning clients the free space malloc keeps inside its arenas grows (fragmentation: gRPC core, protobuf and
numpy allocate and free from a dozen threads, and glibc gives each thread contending for a lock an arena of its own,
up to 8 per core); the server's Python objects stay flat, and so do malloc's bytes in use, except for ~100 bytes
per cancelled stream that grpcio's asyncio layer never frees (its bug, not ours). Two glibc knobs for the first
(measurements in docs/internals.md, "Memory under churn"):

- `limit_arenas(n)`: `mallopt(M_ARENA_MAX, n)`, before any thread starts (the arenas are made lazily);
- `trim_forever(interval)`: `malloc_trim(0)` every `interval` seconds, which returns the free whole pages of every
  arena to the OS (`madvise`), keeping the mappings.

And two for Python's collector, once the modules are imported (`tune_collector()`; measured with `gc.callbacks`
over one 7 s run at 64 Triton streams, docs/performance.md):

- `gc.freeze()`: the objects made by the imports (some 71,000 of the serving process's 74,000) are never walked
  again by the full collections that serving triggers (64 requests in flight survive the young collections, and
  each full one walked the whole heap: 13 of them at 43 ms each, 460-640 ms a run; frozen, 73-92 ms). Frozen
  before the models load: a frozen object in a reference cycle is never freed, and an unloaded model must be;
- a young-generation threshold of `YOUNG_THRESHOLD` allocations instead of 700: serving's objects (futures,
  messages, arrays' wrappers) die by reference count long before that many pile up, so the young collections that
  ran 1,800 times a run (220 ms) run about 12 times.

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

YOUNG_THRESHOLD = 10_000  # net new container objects between young collections (CPython's default: 700)
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


def tune_collector() -> int:
    """Collect what starting left behind, move every object alive to the permanent generation and raise the young
    generation's threshold; how many objects were frozen."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()


def start_trimming(interval: float) -> asyncio.Task[None] | None:
    """The periodic trim as a task on the running loop (None: `interval` 0, or not glibc)."""
    if interval <= 0 or glibc() is None:
        return None
    return asyncio.get_running_loop().create_task(trim_forever(interval), name="malloc-trim")
