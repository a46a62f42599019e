"""The compute ceiling: the model run in-process by onnxruntime (`service/engine/runtime.py`, same thread settings
as the server) at the batch sizes the server actually formed, back to back, with nothing else in the way.

ceiling (chunks/s) = sum(runs_b * size_b) / sum(runs_b * time_of_one_run(size_b))

Beside the wall time of a run, its CPU time (`time.process_time()`, every thread of this process: onnxruntime's
intra-op threads included, spinning or not): the model's own CPU per chunk, the compute part of the physical limit.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from modelrepo import Manifest
from service.engine.runtime import Runtime

MIN_RUNS = 5
MIN_SECONDS = 0.3


class ModelTimer:
    """Times one model at a given batch size and chunk length; results are cached per batch size."""

    def __init__(self, model_dir: Path, chunk: int, intra_op_threads: int) -> None:
        self.manifest = Manifest.load(model_dir / "manifest.json")
        pairs = {s.input: s.output for s in self.manifest.state}
        self._runtime = Runtime(model_dir / "model.onnx", "cpu", intra_op_threads, self.manifest.name, pairs)
        self._chunk = chunk
        self._cache: dict[int, tuple[float, float]] = {}

    def seconds_per_run(self, batch: int) -> float:
        return self._timed(batch)[0]

    def cpu_seconds_per_run(self, batch: int) -> float:
        return self._timed(batch)[1]

    def cpu_us_per_chunk(self, batch_sizes: dict[int, int]) -> float:
        """The model's own CPU per chunk (us) at the batch sizes formed (size -> runs)."""
        chunks = sum(size * runs for size, runs in batch_sizes.items())
        cpu = sum(self.cpu_seconds_per_run(size) * runs for size, runs in batch_sizes.items())
        return cpu / chunks * 1e6 if chunks else 0.0

    def _timed(self, batch: int) -> tuple[float, float]:
        if batch not in self._cache:
            self._cache[batch] = self._measure(batch)
        return self._cache[batch]

    def _measure(self, batch: int) -> tuple[float, float]:
        m = self.manifest
        rng = np.random.default_rng(batch)
        x = rng.standard_normal((batch, self._chunk, m.input.features)).astype(np.float32)
        state = {s.input: np.full((batch, *s.shape), s.initial, np.float32) for s in m.state}
        inputs = {m.input.name: x}
        self._runtime.run(inputs, state)  # warm-up: first-run allocations
        runs, began, cpu = 0, time.perf_counter(), time.process_time()
        while runs < MIN_RUNS or time.perf_counter() - began < MIN_SECONDS:
            _, state = self._runtime.run(inputs, state)  # type: ignore[assignment]
            runs += 1
        return (time.perf_counter() - began) / runs, (time.process_time() - cpu) / runs


def ceiling_chunks_per_s(timer: ModelTimer, batch_sizes: dict[int, int]) -> float:
    """Chunks/s if the server did nothing but run the model at the batch sizes it formed."""
    chunks = sum(size * runs for size, runs in batch_sizes.items())
    seconds = sum(timer.seconds_per_run(size) * runs for size, runs in batch_sizes.items())
    return chunks / seconds if seconds else 0.0
